"""Write side of search: the index rows of a resource, written in its own transaction.

https://hl7.org/fhir/R4/search.html

`write_index` is the hook storage calls inside every create, update, patch and delete: it
replaces all index rows of the resource's `rid` with the rows of the new version (none on
delete), so the index is exact at every commit.

The per-type modules in `search/compile/` turn expression results into rows (each module holds
both the rows and the SQL that reads them); this module runs the expressions (`indexing/`) and
tags rows with their parameter code. Rows are deduplicated: a code repeated in a
CodeableConcept is one row. (It lives in `search/`, above `indexing/`, because it needs the
registry and the compile modules: see the layers in docs/architecture.md.)
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from sqlalchemy import Connection, bindparam, delete, insert, select

from fhir_server.indexing.extract import Node, compile_expression
from fhir_server.search.compile import composite, date, near, number, quantity, reference, string, token, uri
from fhir_server.search.compile.fulltext import fulltext_row
from fhir_server.search.registry import Registry, SearchParamImpl, registry
from fhir_server.storage.index_schema import INDEX_TABLES, idx_fulltext

__all__ = ["MODULES", "delete_index", "param_rows", "resource_rows", "write_index", "write_indexes"]

MODULES: dict[str, ModuleType] = {
    "token": token,
    "string": string,
    "date": date,
    "number": number,
    "quantity": quantity,
    "reference": reference,
    "uri": uri,
    "composite": composite,
    "near": near,
}


def _nodes(impl: SearchParamImpl, resource: dict[str, Any]) -> list[Node]:
    if len(impl.expressions) == 1:
        return compile_expression(impl.expressions[0])(resource)
    out: list[Node] = []
    for expr in impl.expressions:
        out.extend(compile_expression(expr)(resource))
    return out


def param_rows(impl: SearchParamImpl, resource: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Rows of one parameter, by index kind, with `param` set (modifier suffix included)."""
    nodes = _nodes(impl, resource)
    if not nodes:
        return {}
    out: dict[str, list[dict[str, Any]]] = {}
    seen: set[tuple[str, tuple[Any, ...]]] = set()
    # Composite components may read the resource itself (`%resource.x`), not only the element.
    found = (composite.index_rows(nodes, impl, resource) if impl.strategy == "composite"
             else MODULES[impl.strategy].index_rows(nodes, impl))
    for kind, row in found:
        suffix = row.pop("param_suffix", "")
        key = (kind, (suffix, *row.values()))
        if key in seen:
            continue
        seen.add(key)
        row["param"] = impl.code + suffix
        out.setdefault(kind, []).append(row)
    return out


def resource_rows(
    reg: Registry, res_type: str, resource: dict[str, Any], only: set[str] | None = None
) -> dict[str, list[dict[str, Any]]]:
    """All index rows of a resource by index kind (`only`: restrict to these codes)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for impl in reg.indexed_params(res_type):
        if only is not None and impl.code not in only:
            continue
        for kind, rows in param_rows(impl, resource).items():
            out.setdefault(kind, []).extend(rows)
    return out


_ALL_TABLES = (*INDEX_TABLES.values(), idx_fulltext)
# Built once: statement construction costs more than executing these on SQLite.
_DELETES = tuple(delete(t).where(t.c.rid == bindparam("rid")) for t in _ALL_TABLES)
_INSERTS = {kind: insert(t) for kind, t in INDEX_TABLES.items()}
_INDEXED = select(idx_fulltext.c.rid).where(idx_fulltext.c.rid == bindparam("rid"))
_INSERT_TEXT = insert(idx_fulltext)


def delete_index(conn: Connection, rid: int) -> None:
    # Every indexed resource has its full-text row: without one there is nothing to delete
    # (a create), which saves nine DELETEs on the write path.
    if conn.execute(_INDEXED, {"rid": rid}).first() is None:
        return
    for stmt in _DELETES:
        conn.execute(stmt, {"rid": rid})


def write_index(conn: Connection, rid: int, res_type: str, resource: dict[str, Any] | None) -> None:
    """Replace the index rows of `rid` by those of `resource` (None: the resource was deleted)."""
    write_indexes(conn, [(rid, res_type, resource, False)])


def write_indexes(conn: Connection, items: list[tuple[int, str, dict[str, Any] | None, bool]]) -> None:
    """`write_index` for several resources, (rid, type, resource, fresh) each, in one statement
    per index table: a `fresh` rid (just inserted) has no rows to delete first."""
    by_kind: dict[str, list[dict[str, Any]]] = {}
    texts: list[dict[str, Any]] = []
    for rid, res_type, resource, fresh in items:
        if not fresh:
            delete_index(conn, rid)
        if resource is None:
            continue
        for kind, rows in resource_rows(registry(), res_type, resource).items():
            by_kind.setdefault(kind, []).extend({**row, "rid": rid, "res_type": res_type} for row in rows)
        texts.append({"rid": rid, "res_type": res_type, **fulltext_row(resource, conn.dialect.name)})
    for kind, rows in by_kind.items():
        # executemany needs one key set; composite rows differ by their second component.
        keys = {k for row in rows for k in row}
        conn.execute(_INSERTS[kind], [{**dict.fromkeys(keys), **row} for row in rows])
    if texts and conn.dialect.name == "sqlite":
        conn.execute(_INSERT_TEXT, texts)
    else:  # PostgreSQL's rows hold to_tsvector(...) expressions: one INSERT each
        for text in texts:
            conn.execute(insert(idx_fulltext).values(**text))
