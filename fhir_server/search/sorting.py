"""`_sort` on one search parameter, driven from that parameter's index in sort order.

https://hl7.org/fhir/R4/search.html#sort

The general plan computes every candidate's sort key with a correlated subquery and sorts
them all: fine for a filtered set, linear in the type's size otherwise. With a single sort
key this plan walks the `(res_type, param, value, rid)` index in order instead and stops at
the page size; a resource's key is its smallest value (largest when descending), so only the
row holding that value qualifies. Resources without a value sort last: they come from a
second query, in rid order, once the indexed ones run out. Ties are broken by rid in the
key's direction, as in the general plan. Backward pages use the general
plan: both give the same order, so their cursors are interchangeable.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Select, and_, null, or_, select

from fhir_server.search.ast import Query
from fhir_server.search.compile.common import Ctx, alias
from fhir_server.search.paging import Cursor
from fhir_server.storage.index_schema import INDEX_TABLES
from fhir_server.storage.schema import resource

__all__ = ["SORT_COLUMN", "index_sort"]

SORT_COLUMN = {
    "token": "code", "string": "value", "number": "value", "quantity": "value",
    "reference": "target_id", "uri": "value",
}


def sort_column(strategy: str, descending: bool) -> str:
    if strategy == "date":
        return "hi" if descending else "lo"
    return SORT_COLUMN[strategy]


def index_sort(
    query: Query, ctx: Ctx, r: Any, where: ColumnElement[bool], cursor: Cursor | None
) -> tuple[Select[Any] | None, Select[Any]] | None:
    """(page of resources with a value, page of those without) or None when not applicable."""
    if len(query.sort) != 1 or len(query.types) != 1 or (cursor is not None and not cursor.forward):
        return None
    key, res_type = query.sort[0], query.types[0]
    impl = ctx.registry.get(res_type, key.code)
    if impl is None or impl.strategy not in SORT_COLUMN and impl.strategy != "date":
        return None
    table, name, desc = INDEX_TABLES[impl.strategy], sort_column(impl.strategy, key.descending), key.descending
    n = query.count
    fill = select(r.c.rid, r.c.res_type, r.c.res_id, r.c.body, null().label("k0")).where(
        where, r.c.rid.not_in(select(table.c.rid).where(table.c.res_type == res_type, table.c.param == key.code))
    )
    rid_order = r.c.rid.desc() if desc else r.c.rid.asc()
    if cursor is not None and cursor.keys[0] is None:
        after = r.c.rid < cursor.rid if desc else r.c.rid > cursor.rid
        return None, fill.where(after).order_by(rid_order).limit(n + 1)
    fill = fill.order_by(rid_order).limit(n + 1)
    d, d2 = alias(table, "sk"), alias(table, "sk2")
    col, col2 = d.c[name], d2.c[name]
    better = col2 > col if desc else col2 < col
    guard = ~select(d2.c.rid).where(d2.c.rid == d.c.rid, d2.c.param == key.code, better).exists().correlate(d)
    # The resource's own conditions are a probe: the index table alone is in FROM, so the
    # database has to walk it in sort order (ties by rid, in the key's direction).
    matches = select(r.c.rid).where(r.c.rid == d.c.rid, where).exists().correlate(d)
    inner = select(d.c.rid.label("rid"), col.label("k0")).where(
        d.c.res_type == res_type, d.c.param == key.code, guard, matches
    )
    if cursor is not None:
        v = cursor.keys[0]
        after = d.c.rid < cursor.rid if desc else d.c.rid > cursor.rid
        inner = inner.where(or_(col < v if desc else col > v, and_(col == v, after)))
    order = (col.desc(), d.c.rid.desc()) if desc else (col.asc(), d.c.rid.asc())
    sub = inner.distinct().order_by(*order).limit(n + 1).subquery("sorted")
    r2 = alias(resource, "r2")
    outer_order = (sub.c.k0.desc(), sub.c.rid.desc()) if desc else (sub.c.k0.asc(), sub.c.rid.asc())
    page = (
        select(r2.c.rid, r2.c.res_type, r2.c.res_id, r2.c.body, sub.c.k0)
        .join_from(sub, r2, r2.c.rid == sub.c.rid)
        .order_by(*outer_order)
    )
    return page, fill
