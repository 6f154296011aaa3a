"""The storage seam: what interactions may ask of a database, and the SQL both backends share.

https://hl7.org/fhir/R4/http.html

Interactions never see SQLAlchemy: they get `StoredResource` values back from reads, and they
write by handing `Storage.write` a function of a `WriteTx`. The SQLite backend runs those
functions on its single writer thread (group commit); the PostgreSQL backend runs each in its
own transaction from a pool.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, and_, bindparam, insert, select, update

from fhir_server import clock
from fhir_server.storage.schema import resource, resource_history

__all__ = ["HistoryEntry", "Storage", "StoredResource", "WriteHooks", "WriteTx"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class StoredResource:
    """One version of a resource as stored: `body` is the JSON served to clients."""

    rid: int
    type: str
    id: str
    version: int
    last_updated: int  # microseconds since the epoch, UTC
    deleted: bool
    body: bytes | None


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    seq: int
    type: str
    id: str
    version: int
    last_updated: int
    deleted: bool
    method: str
    body: bytes | None


_CURRENT_COLUMNS = (
    resource.c.rid,
    resource.c.res_type,
    resource.c.res_id,
    resource.c.version,
    resource.c.last_updated,
    resource.c.deleted,
    resource.c.body,
)
_HISTORY_COLUMNS = (
    resource_history.c.seq,
    resource_history.c.res_type,
    resource_history.c.res_id,
    resource_history.c.version,
    resource_history.c.last_updated,
    resource_history.c.deleted,
    resource_history.c.method,
    resource_history.c.body,
)


# Write statements, built once (statement construction costs more than executing them on SQLite).
_INSERT_CURRENT = insert(resource).returning(resource.c.rid)
_INSERT_CURRENT_MANY = insert(resource).returning(resource.c.rid, sort_by_parameter_order=True)
_UPDATE_CURRENT = update(resource).where(resource.c.rid == bindparam("r"))
_INSERT_HISTORY = insert(resource_history)


def now_micros() -> int:
    return clock.now_micros()


@dataclass
class WriteHooks:
    """What runs around every stored version, whichever interaction wrote it.

    `in_tx` hooks run inside the write transaction, right after a version is stored (an
    AuditEvent or a Provenance written with it is all or nothing with it); `after_commit`
    hooks run once the transaction has committed, with every version it stored, in order.
    """

    in_tx: list[Callable[[WriteTx, StoredResource], None]] = field(default_factory=list)
    after_commit: list[Callable[[Any, list[StoredResource]], None]] = field(default_factory=list)


class WriteTx:
    """What a write function may do inside its transaction: one per request (or server task).

    `ctx` is the request's context (None for server tasks); `written` lists the versions
    stored so far, each recorded by `record`, the one place every stored version passes.
    """

    def __init__(
        self,
        conn: Connection,
        lock: Callable[[Connection, str], None],
        lock_rows: bool,
        ctx: Any = None,
        hooks: WriteHooks | None = None,
    ) -> None:
        self.conn = conn
        self._lock = lock
        self._lock_rows = lock_rows
        self.ctx = ctx
        self.hooks = hooks or WriteHooks()
        self.written: list[StoredResource] = []

    def record(self, stored: StoredResource) -> StoredResource:
        """Note a stored version and run the in-transaction hooks on it."""
        self.written.append(stored)
        for hook in self.hooks.in_tx:
            hook(self, stored)
        return stored

    def current(self, type_: str, id_: str) -> StoredResource | None:
        """The current version; on PostgreSQL the row stays locked until the transaction ends."""
        stmt = _READ_CURRENT_LOCKED if self._lock_rows else _READ_CURRENT
        return current_row(self.conn.execute(stmt, {"t": type_, "i": id_}).first())

    def lock(self, key: str) -> None:
        """Serialise writers that decide on the same key (conditional interactions)."""
        self._lock(self.conn, key)

    def put(
        self,
        previous: StoredResource | None,
        type_: str,
        id_: str,
        version: int,
        last_updated: int,
        method: str,
        body: bytes | None,
    ) -> int:
        """Store a new version (body None = deletion) and return the resource's rid."""
        values = {"version": version, "last_updated": last_updated, "deleted": body is None, "body": body}
        if previous is None:
            rid = self.conn.execute(_INSERT_CURRENT, {"res_type": type_, "res_id": id_, **values}).scalar_one()
        else:
            rid = previous.rid
            self.conn.execute(_UPDATE_CURRENT, {"r": rid, **values})
        self.conn.execute(_INSERT_HISTORY, {"rid": rid, "res_type": type_, "res_id": id_, "method": method, **values})
        return int(rid)


    def put_new(self, rows: list[tuple[str, str, int, str, bytes]]) -> list[int]:
        """Store first versions (type, id, last_updated, method, body) of new resources in one
        statement per table; their rids, in order."""
        values = [
            {"res_type": t, "res_id": i, "version": 1, "last_updated": lu, "deleted": False, "body": b}
            for t, i, lu, _m, b in rows
        ]
        found = self.conn.execute(_INSERT_CURRENT_MANY, values).all()
        rids = [int(r[0]) for r in found]
        history = [
            {**v, "rid": rid, "method": m} for v, rid, (_t, _i, _lu, m, _b) in zip(values, rids, rows, strict=True)
        ]
        self.conn.execute(_INSERT_HISTORY, history)
        return rids


class Storage(ABC):
    """Common read side; subclasses decide how writes are executed and serialised."""

    dialect: str = ""

    def __init__(self, read_engine: Engine, readers: int) -> None:
        self.read_engine = read_engine
        self._readers = ThreadPoolExecutor(max_workers=readers, thread_name_prefix="fhir-read")
        self.hooks = WriteHooks()

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self._readers.shutdown(wait=True)
        self.read_engine.dispose()

    # -- execution -------------------------------------------------------------------------
    async def run_read(self, fn: Callable[[Connection], T]) -> T:
        """Run `fn` with a read connection on a reader thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, self._with_read_conn, fn)

    def _with_read_conn(self, fn: Callable[[Connection], T]) -> T:
        with self.read_engine.connect() as conn:
            try:
                return fn(conn)
            finally:
                conn.rollback()

    async def write(self, fn: Callable[[WriteTx], T], ctx: Any = None) -> T:
        """Run `fn` in a write transaction for `ctx` (the request's context, None for a server
        task) and return its result once committed, after the after-commit hooks ran."""
        result, tx = await self._write(fn, ctx)
        for hook in self.hooks.after_commit:
            hook(ctx, tx.written)
        return result

    def new_tx(self, conn: Connection, lock: Callable[[Connection, str], None], lock_rows: bool, ctx: Any) -> WriteTx:
        return WriteTx(conn, lock, lock_rows, ctx, self.hooks)

    @abstractmethod
    async def _write(self, fn: Callable[[WriteTx], T], ctx: Any) -> tuple[T, WriteTx]:
        """Run `fn` in a new write transaction; (its result, the transaction) once committed."""

    # -- reads -----------------------------------------------------------------------------
    async def read(self, type_: str, id_: str) -> StoredResource | None:
        return await self.run_read(lambda conn: read_current(conn, type_, id_))

    async def vread(self, type_: str, id_: str, version: int) -> HistoryEntry | None:
        return await self.run_read(
            lambda conn: version_row(conn.execute(_READ_VERSION, {"t": type_, "i": id_, "v": version}).first())
        )

    async def point_select(self, stmt: Any, params: dict[str, Any]) -> Any:
        """The first row of a small keyed SELECT (a read by id under an access policy).

        Backends with a point-read connection run it there (no thread hop); `stmt` should be
        built once and reused, so its compiled form is cached (`_compiled`)."""
        return await self.run_read(lambda conn: conn.execute(stmt, params).first())

    async def current_bodies(self, type_: str) -> list[bytes]:
        """Bodies of every current, non-deleted resource of a type (small conformance sets)."""

        def run(conn: Connection) -> list[bytes]:
            stmt = select(resource.c.body).where(resource.c.res_type == type_, resource.c.deleted.is_(False))
            return [row[0] for row in conn.execute(stmt)]

        return await self.run_read(run)

    async def history(
        self,
        type_: str | None,
        id_: str | None,
        since: int | None,
        at: int | None,
        before_seq: int | None,
        limit: int,
        where: Callable[[Connection], Any] | None = None,
    ) -> list[HistoryEntry]:
        """Versions newest first, optionally below a seq cursor (keyset paging); `where`
        builds an extra condition on `resource_history` (the caller's access) per connection."""
        return await self.run_read(
            lambda conn: read_history(conn, type_, id_, since, at, before_seq, limit, where and where(conn))
        )


# Point reads are the hottest statements: built once, with bound parameters.
_READ_CURRENT = select(*_CURRENT_COLUMNS).where(
    resource.c.res_type == bindparam("t"), resource.c.res_id == bindparam("i")
)
_READ_CURRENT_LOCKED = _READ_CURRENT.with_for_update()
_READ_VERSION = select(*_HISTORY_COLUMNS).where(
    resource_history.c.res_type == bindparam("t"),
    resource_history.c.res_id == bindparam("i"),
    resource_history.c.version == bindparam("v"),
)
# The same as plain SQL text, for backends that read through their driver directly
# (`point_read_sql` fills in the driver's placeholder).
READ_CURRENT_SQL = (
    "SELECT rid, res_type, res_id, version, last_updated, deleted, body FROM resource "
    "WHERE res_type = {p} AND res_id = {p}"
)
READ_VERSION_SQL = (
    "SELECT seq, res_type, res_id, version, last_updated, deleted, method, body FROM resource_history "
    "WHERE res_type = {p} AND res_id = {p} AND version = {p}"
)


def point_read_sql(placeholder: str) -> tuple[str, str]:
    """(read, vread) SQL with the driver's parameter placeholder ('?' or '%s')."""
    return READ_CURRENT_SQL.format(p=placeholder), READ_VERSION_SQL.format(p=placeholder)


def current_row(row: Any) -> StoredResource | None:
    if row is None:
        return None
    rid, type_, id_, version, last_updated, deleted, body = row
    return StoredResource(int(rid), type_, id_, int(version), int(last_updated), bool(deleted), body and bytes(body))


def version_row(row: Any) -> HistoryEntry | None:
    if row is None:
        return None
    seq, type_, id_, version, last_updated, deleted, method, body = row
    return HistoryEntry(
        int(seq), type_, id_, int(version), int(last_updated), bool(deleted), method, body and bytes(body)
    )


def read_current(conn: Connection, type_: str, id_: str) -> StoredResource | None:
    return current_row(conn.execute(_READ_CURRENT, {"t": type_, "i": id_}).first())


def read_history(
    conn: Connection,
    type_: str | None,
    id_: str | None,
    since: int | None,
    at: int | None,
    before_seq: int | None,
    limit: int,
    extra: Any = None,
) -> list[HistoryEntry]:
    h = resource_history
    conds: list[Any] = [] if extra is None else [extra]
    if type_ is not None:
        conds.append(h.c.res_type == type_)
    if id_ is not None:
        conds.append(h.c.res_id == id_)
    if since is not None:
        conds.append(h.c.last_updated >= since)
    if before_seq is not None:
        conds.append(h.c.seq < before_seq)
    if at is not None:
        # _at: the version current at that instant, for each resource (R4 http.html#history).
        later = h.alias("later")
        conds.append(h.c.last_updated <= at)
        conds.append(
            ~select(later.c.seq)
            .where(
                and_(
                    later.c.rid == h.c.rid,
                    later.c.last_updated <= at,
                    later.c.version > h.c.version,
                )
            )
            .exists()
        )
    stmt = select(*_HISTORY_COLUMNS).where(*conds).order_by(h.c.seq.desc()).limit(limit)
    return [HistoryEntry(*row) for row in conn.execute(stmt)]


_COMPILED: dict[tuple[int, str], tuple[Any, str, tuple[str, ...], dict[str, Any]]] = {}


def compiled(stmt: Any, dialect: Any) -> tuple[str, tuple[str, ...], dict[str, Any]]:
    """(SQL text, positional parameter names, bound values) of a statement built once."""
    key = (id(stmt), dialect.name)
    found = _COMPILED.get(key)
    if found is None or found[0] is not stmt:
        # IN lists are constants of the statement: rendered into its text once
        c = stmt.compile(dialect=dialect, compile_kwargs={"render_postcompile": True})
        found = (stmt, str(c), tuple(c.positiontup or ()), dict(c.construct_params()))
        if len(_COMPILED) > 8192:
            _COMPILED.clear()
        _COMPILED[key] = found
    return found[1], found[2], found[3]
