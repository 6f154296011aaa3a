"""Write side of search: the index rows of a resource, written in its own transaction.

https://hl7.org/fhir/R4/search.html

`write_index` is the hook storage calls inside every create, update, patch and delete: it
replaces all index rows of the resource's `rid` with the rows of the new version (none on
delete), so the index is exact at every commit.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, delete, insert

from fhir_server.storage.index_schema import INDEX_TABLES, idx_fulltext

__all__ = ["delete_index", "write_index"]

_ALL_TABLES = (*INDEX_TABLES.values(), idx_fulltext)


def delete_index(conn: Connection, rid: int) -> None:
    for table in _ALL_TABLES:
        conn.execute(delete(table).where(table.c.rid == rid))


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
        table = INDEX_TABLES[kind]
        # executemany needs one key set; composite rows differ by their second component.
        keys = {k for row in rows for k in row}
        full = [{**dict.fromkeys(keys), **row, "rid": rid, "res_type": res_type} for row in rows]
        conn.execute(insert(table), full)
    row = fulltext_row(resource, conn.dialect.name)
    conn.execute(insert(idx_fulltext).values(rid=rid, res_type=res_type, **row))
