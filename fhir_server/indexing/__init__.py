"""Write side of search: the index rows of a resource, written in its own transaction.

https://hl7.org/fhir/R4/search.html

`write_index` is the hook storage calls inside every create, update, patch and delete: it
replaces all index rows of the resource's `rid` with the rows of the new version (none on
delete), so the index is exact at every commit.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, bindparam, delete, insert, select

from fhir_server.storage.index_schema import INDEX_TABLES, idx_fulltext

__all__ = ["delete_index", "write_index"]

_ALL_TABLES = (*INDEX_TABLES.values(), idx_fulltext)
# Built once: statement construction costs more than executing these on SQLite.
_DELETES = tuple(delete(t).where(t.c.rid == bindparam("rid")) for t in _ALL_TABLES)
_INSERTS = {kind: insert(t) for kind, t in INDEX_TABLES.items()}
_INDEXED = select(idx_fulltext.c.rid).where(idx_fulltext.c.rid == bindparam("rid"))


def delete_index(conn: Connection, rid: int) -> None:
    # Every indexed resource has its full-text row: without one there is nothing to delete
    # (a create), which saves nine DELETEs on the write path.
    if conn.execute(_INDEXED, {"rid": rid}).first() is None:
        return
    for stmt in _DELETES:
        conn.execute(stmt, {"rid": rid})


def write_index(conn: Connection, rid: int, res_type: str, resource: dict[str, Any] | None) -> None:
    """Replace the index rows of `rid` by those of `resource` (None: the resource was deleted)."""
    # Imported here: the search package imports this one's extractors (no import cycle).
    from fhir_server.indexing.rows import resource_rows
    from fhir_server.search.compile.fulltext import fulltext_row
    from fhir_server.search.registry import registry

    delete_index(conn, rid)
    if resource is None:
        return
    for kind, rows in resource_rows(registry(), res_type, resource).items():
        # executemany needs one key set; composite rows differ by their second component.
        keys = {k for row in rows for k in row}
        full = [{**dict.fromkeys(keys), **row, "rid": rid, "res_type": res_type} for row in rows]
        conn.execute(_INSERTS[kind], full)
    row = fulltext_row(resource, conn.dialect.name)
    conn.execute(insert(idx_fulltext).values(rid=rid, res_type=res_type, **row))
