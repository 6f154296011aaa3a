"""Point reads and history as a restricted caller sees them: the access clause in their SQL.

https://hl7.org/fhir/R4/http.html#read

An unrestricted caller reads through the storage's point-read fast path; anyone else through
these statements, which add `visible(...)` to the primary-key lookup, so a hidden resource is
simply not found (404: its existence does not leak).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from sqlalchemy import ColumnElement, Connection, bindparam, select

from fhir_server.search.access import Access
from fhir_server.search.compile.common import Ctx
from fhir_server.search.compile.tree import visible
from fhir_server.search.registry import registry
from fhir_server.storage.backend import HistoryEntry, StoredResource, current_row, version_row
from fhir_server.storage.schema import resource, resource_history

__all__ = ["history_filter", "read_statement", "read_visible", "vread_statement", "vread_visible"]


def _ctx(conn: Connection, access: Access) -> Ctx:
    return Ctx(registry=registry(), dialect=conn.dialect.name, access=access)


# Statements are built once per (access, type, dialect, registry state): building and hashing
# the policy's SQL costs far more than running it by primary key.
@lru_cache(maxsize=4096)
def _read_stmt(access: Access, type_: str, dialect: str, generation: int) -> Any:
    r = resource
    ctx = Ctx(registry=registry(), dialect=dialect, access=access)
    return select(r.c.rid, r.c.res_type, r.c.res_id, r.c.version, r.c.last_updated, r.c.deleted, r.c.body).where(
        r.c.res_type == type_, r.c.res_id == bindparam("i", value=""), visible(access, type_, r, ctx, point=True)
    )


@lru_cache(maxsize=4096)
def _vread_stmt(access: Access, type_: str, dialect: str, generation: int) -> Any:
    h = resource_history
    ctx = Ctx(registry=registry(), dialect=dialect, access=access)
    return select(
        h.c.seq, h.c.res_type, h.c.res_id, h.c.version, h.c.last_updated, h.c.deleted, h.c.method, h.c.body
    ).where(
        h.c.res_type == type_,
        h.c.res_id == bindparam("i", value=""),
        h.c.version == bindparam("v", value=0),
        visible(access, type_, h, ctx, point=True),
    )


def read_statement(access: Access, type_: str, dialect: str) -> Any:
    """The read-by-id SELECT under `access` (parameter `i`: the id), built once per key."""
    return _read_stmt(access, type_, dialect, registry().generation)


def vread_statement(access: Access, type_: str, dialect: str) -> Any:
    """The vread SELECT under `access` (parameters `i`, `v`), built once per key."""
    return _vread_stmt(access, type_, dialect, registry().generation)


def read_visible(conn: Connection, access: Access, type_: str, id_: str) -> StoredResource | None:
    stmt = _read_stmt(access, type_, conn.dialect.name, registry().generation)
    return current_row(conn.execute(stmt, {"i": id_}).first())


def vread_visible(conn: Connection, access: Access, type_: str, id_: str, version: int) -> HistoryEntry | None:
    stmt = _vread_stmt(access, type_, conn.dialect.name, registry().generation)
    return version_row(conn.execute(stmt, {"i": id_, "v": version}).first())


def history_filter(conn: Connection, access: Access, type_: str | None) -> ColumnElement[bool] | None:
    """The condition on `resource_history` rows a caller may see (None: every row).

    Visibility is decided on the resource's current index rows (they exist for current
    resources only), so a restricted caller sees no history of a deleted patient-linked
    resource: hidden rather than leaked.
    """
    if access.unrestricted:
        return None
    cond: Any = visible(access, type_ or "*", resource_history, _ctx(conn, access))
    return cond  # type: ignore[no-any-return]
