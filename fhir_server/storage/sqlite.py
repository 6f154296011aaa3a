"""SQLite backend: WAL mode, concurrent readers, one writer thread with group commit.

https://www.sqlite.org/wal.html

Every write function is queued to a single writer thread. The writer takes all queued jobs
(up to `group_commit_max`), runs each inside its own SAVEPOINT of one transaction, and
commits once: many requests share one fsync, as Blaze does. A job that fails rolls back to
its savepoint alone; its caller gets the exception, the others still commit. Since one thread
decides every write, conditional interactions need no further locking.
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool, QueuePool

from fhir_server.errors import FhirError
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

__all__ = ["SqliteStorage"]

T = TypeVar("T")
_READ_SQL, _VREAD_SQL = point_read_sql("?")


@dataclass(eq=False)
class _Job:
    fn: Callable[[WriteTx], Any]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    ctx: Any = None
    result: Any = None
    error: BaseException | None = field(default=None)


def use_wal(cur: Any) -> None:
    """Put the database in WAL mode (persistent), unless it already is.

    Switching the mode takes a lock that SQLite may refuse at once (SQLITE_BUSY without calling
    the busy handler) while another connection works, so it is only asked for when needed, and
    retried for a while.
    """
    if str(cur.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal":
        return
    for attempt in range(50):
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError:
            if attempt == 49:
                raise
            time.sleep(0.1)


def _configure(engine: Engine, writer: bool, mmap_bytes: int = 0) -> None:
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (pysqlite's is wrong)
        cur = dbapi_conn.cursor()
        # The busy timeout first: the statements below may have to wait for another connection.
        cur.execute("PRAGMA busy_timeout=10000")
        use_wal(cur)
        # FULL: a commit is durable once answered; group commit pays the fsync once per batch.
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA cache_size=-65536")
        if mmap_bytes:
            # Readers share the operating system's page cache instead of each warming a private
            # one: on a 640 MB database with 8 readers, search p50 -7 %, p95 -20 %.
            cur.execute(f"PRAGMA mmap_size={int(mmap_bytes)}")
        cur.close()

    @event.listens_for(engine, "begin")
    def on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if writer else "BEGIN")


def _no_lock(_conn: Connection, _key: str) -> None:
    """The single writer already serialises every decision."""


class SqliteStorage(Storage):
    dialect = "sqlite"

    def __init__(self, url: str, readers: int = 4, group_commit_max: int = 256, mmap_bytes: int = 0) -> None:
        parsed = make_url(url)
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        connect_args = {"check_same_thread": False}
        read_engine = create_engine(
            url, poolclass=QueuePool, pool_size=readers, max_overflow=readers, connect_args=connect_args
        )
        _configure(read_engine, writer=False, mmap_bytes=mmap_bytes)
        super().__init__(read_engine, readers)
        self.write_engine = create_engine(url, poolclass=NullPool, connect_args=connect_args)
        _configure(self.write_engine, writer=True)
        self.group_commit_max = group_commit_max
        self._mmap_bytes = mmap_bytes
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self.commits = 0  # counted for tests and benchmarks: jobs / commits = group size
        self._path = parsed.database if parsed.database and parsed.database != ":memory:" else None
        self._point: sqlite3.Connection | None = None
        self._failure: BaseException | None = None  # set when the writer thread cannot run

    async def start(self) -> None:
        if self._point is None and self._path:
            # Point reads by primary key take microseconds: cheaper on the event loop than any thread
            # hop. Autocommit: each SELECT is its own WAL snapshot, no BEGIN/ROLLBACK round.
            self._point = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False, timeout=10)
            self._point.execute("PRAGMA query_only=1")
            if self._mmap_bytes:
                self._point.execute(f"PRAGMA mmap_size={int(self._mmap_bytes)}")
        if self._thread is None:
            self._thread = threading.Thread(target=self._writer_loop, name="fhir-sqlite-writer", daemon=True)
            self._thread.start()

    async def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            await asyncio.get_running_loop().run_in_executor(None, self._thread.join)
            self._thread = None
        self.write_engine.dispose()
        if self._point is not None:
            self._point.close()
            self._point = None
        await super().close()

    async def read(self, type_: str, id_: str) -> StoredResource | None:
        if self._point is None:
            return await super().read(type_, id_)
        return current_row(self._point.execute(_READ_SQL, (type_, id_)).fetchone())

    async def point_select(self, stmt: Any, params: dict[str, Any]) -> Any:
        if self._point is None:
            return await super().point_select(stmt, params)
        sql, names, bound = compiled(stmt, self.read_engine.dialect)
        values = {**bound, **params}
        return self._point.execute(sql, tuple(values[n] for n in names)).fetchone()

    async def vread(self, type_: str, id_: str, version: int) -> HistoryEntry | None:
        if self._point is None:
            return await super().vread(type_, id_, version)
        return version_row(self._point.execute(_VREAD_SQL, (type_, id_, version)).fetchone())

    async def _write(self, fn: Callable[[WriteTx], T], ctx: Any) -> tuple[T, WriteTx]:
        if self._thread is None:
            raise RuntimeError("storage not started")
        if self._failure is not None:
            raise FhirError(503, f"The database cannot be written: {self._failure}", "transient")
        loop = asyncio.get_running_loop()
        job = _Job(fn, loop, loop.create_future(), ctx)
        self._queue.put(job)
        result: tuple[T, WriteTx] = await job.future
        return result

    # -- writer thread ---------------------------------------------------------------------
    def _writer_loop(self) -> None:
        try:
            with self.write_engine.connect() as conn:
                self._serve(conn)
        except BaseException as exc:  # noqa: BLE001 - no writer: every write, queued or to come, fails
            self._failure = exc
            while True:
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    return
                if job is not None:
                    job.error = exc
                    job.loop.call_soon_threadsafe(_settle, job)

    def _serve(self, conn: Connection) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            stop = False
            while len(batch) < self.group_commit_max:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            self._run_batch(conn, batch)
            if stop:
                return

    def _run_batch(self, conn: Connection, batch: list[_Job]) -> None:
        try:
            with conn.begin():
                for job in batch:
                    savepoint = conn.begin_nested()
                    try:
                        tx = self.new_tx(conn, _no_lock, False, job.ctx)
                        job.result = (job.fn(tx), tx)
                        savepoint.commit()
                    except BaseException as exc:  # noqa: BLE001 - handed to the caller
                        savepoint.rollback()
                        job.error = exc
            self.commits += 1
        except BaseException as exc:  # noqa: BLE001 - the commit itself failed: nobody's write holds
            for job in batch:
                if job.error is None:
                    job.error = exc
        for job in batch:
            job.loop.call_soon_threadsafe(_settle, job)


def _settle(job: _Job) -> None:
    if job.future.done():  # the caller went away (request cancelled)
        return
    if job.error is not None:
        job.future.set_exception(job.error)
    else:
        job.future.set_result(job.result)
