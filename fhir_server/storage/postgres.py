"""PostgreSQL backend: a connection pool, one transaction per write, locks for decisions.

https://www.postgresql.org/docs/15/explicit-locking.html

Writes run on worker threads, each in its own READ COMMITTED transaction. A version check
locks the current row (`SELECT ... FOR UPDATE`), so two updates with the same `If-Match`
cannot both pass; conditional interactions take a transaction-scoped advisory lock on a
hash of their search key, so 32 identical conditional creates make one resource (the race
IBM FHIR #2050 describes). Two creates of the same new id collide on the unique key: the loser
is retried once the winner has committed, and then sees the resource.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from psycopg_pool import AsyncConnectionPool
from sqlalchemy import Connection, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError

from fhir_server.storage.backend import (
    HistoryEntry,
    Storage,
    StoredResource,
    WriteTx,
    compiled,
    current_row,
    point_read_sql,
    version_row,
)

__all__ = ["PostgresStorage"]

T = TypeVar("T")
_READ_SQL, _VREAD_SQL = point_read_sql("%s")
_RETRIES = 5
# deadlock_detected, serialization_failure
_RETRY_SQLSTATES = {"40P01", "40001"}


def _advisory_lock(conn: Connection, key: str) -> None:
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": int.from_bytes(digest, "big", signed=True)})


class PostgresStorage(Storage):
    dialect = "postgresql"

    def __init__(self, url: str, pool_size: int = 10) -> None:
        # No pre-ping (a round trip per checkout): stale connections are recycled and retried instead.
        engine = create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_recycle=1800)
        super().__init__(engine, pool_size)
        self._writers = ThreadPoolExecutor(max_workers=pool_size, thread_name_prefix="fhir-write")
        conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        # Point reads: an asyncio pool on the event loop, autocommit, prepared statements.
        self._points = AsyncConnectionPool(
            conninfo,
            min_size=1,
            max_size=pool_size,
            open=False,
            kwargs={"autocommit": True, "prepare_threshold": 0},
        )
        self._opened = False

    async def start(self) -> None:
        if not self._opened:
            await self._points.open(wait=True, timeout=30)
            self._opened = True

    async def close(self) -> None:
        if self._opened:
            await self._points.close()
            self._opened = False
        self._writers.shutdown(wait=True)
        await super().close()

    async def read(self, type_: str, id_: str) -> StoredResource | None:
        async with self._points.connection() as conn:
            cur = await conn.execute(_READ_SQL, (type_, id_), prepare=True)
            return current_row(await cur.fetchone())

    async def point_select(self, stmt: Any, params: dict[str, Any]) -> Any:
        sql, _names, bound = compiled(stmt, self.read_engine.dialect)
        async with self._points.connection() as conn:
            cur = await conn.execute(sql, {**bound, **params}, prepare=True)
            return await cur.fetchone()

    async def vread(self, type_: str, id_: str, version: int) -> HistoryEntry | None:
        async with self._points.connection() as conn:
            cur = await conn.execute(_VREAD_SQL, (type_, id_, version), prepare=True)
            return version_row(await cur.fetchone())

    async def _write(self, fn: Callable[[WriteTx], T], ctx: Any) -> tuple[T, WriteTx]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._writers, self._write_sync, fn, ctx)

    def _write_sync(self, fn: Callable[[WriteTx], T], ctx: Any) -> tuple[T, WriteTx]:
        for attempt in range(_RETRIES):
            try:
                with self.read_engine.begin() as conn:
                    tx = self.new_tx(conn, _advisory_lock, True, ctx)
                    return fn(tx), tx
            except IntegrityError as exc:
                if attempt == _RETRIES - 1 or getattr(exc.orig, "sqlstate", None) != "23505":
                    raise
            except DBAPIError as exc:
                if attempt == _RETRIES - 1 or getattr(exc.orig, "sqlstate", None) not in _RETRY_SQLSTATES:
                    raise
        raise AssertionError("unreachable")
