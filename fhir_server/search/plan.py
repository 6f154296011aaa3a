"""The search planner: parsed query (+ compartment, + access policy) -> the SELECT of one page.

https://hl7.org/fhir/R4/search.html

One entry point for every caller: type, system and compartment searches, conditional
interactions and (through `policy`) the access policy. The pipeline reads top-down:
scope the tree (compartment, policy), compile it to one condition, add the sort keys and the
keyset condition, and select `count + 1` rows.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import BinaryExpression, ColumnElement, Select, and_, func, select
from sqlalchemy.sql import operators
from sqlalchemy.sql.selectable import ScalarSelect

from fhir_server.errors import invalid
from fhir_server.search.access import Access
from fhir_server.search.ast import Compartment, Node, Policy, Query, SortKey, conj
from fhir_server.search.cache import WhereCache, cacheable
from fhir_server.search.compile.common import Ctx, alias
from fhir_server.search.compile.tree import compile_where, live, ordered_drive
from fhir_server.search.paging import Cursor, SortExpr, decode, keyset_condition, order_by
from fhir_server.search.sorting import index_sort, sort_column
from fhir_server.storage.index_schema import INDEX_TABLES
from fhir_server.storage.schema import resource

__all__ = ["WHERE_CACHE", "Plan", "plan", "scope"]

WHERE_CACHE = WhereCache()


@dataclass(frozen=True)
class Plan:
    query: Query
    page: Select[Any] | None  # None when only a count is wanted
    fill: Select[Any] | None  # index-driven sort: the resources without a sort value, after `page`
    count: Select[Any] | None
    sort_exprs: list[SortExpr]
    cursor: Cursor | None
    signature: str
    filter: ColumnElement[bool]  # the whole WHERE without keyset, reused by counts
    r: Any


def scope(query: Query, compartment: Compartment | None, access: Access) -> Query:
    """The rewrite passes: compartment scoping, then the access policy, as extra AND terms."""
    where = conj(query.where, compartment, Policy(access) if access.restricts(query.types) else None)
    return query if where is query.where else _replace_where(query, where)


def _replace_where(query: Query, where: Node | None) -> Query:
    from dataclasses import replace

    return replace(query, where=where)


def _type_condition(r: Any, types: tuple[str, ...]) -> list[ColumnElement[bool]]:
    if not types:
        return [live(r, "*")]
    if len(types) == 1:
        return [live(r, types[0])]
    return [live(r, "*"), r.c.res_type.in_(types)]


def _sort_expr(key: SortKey, types: tuple[str, ...], r: Any, ctx: Ctx) -> SortExpr:
    if key.code == "_id":
        return r.c.res_id, key.descending
    if key.code == "_lastUpdated":
        return r.c.last_updated, key.descending
    impl = ctx.registry.get(types[0] if types else "*", key.code)
    if impl is None or not impl.indexed or impl.strategy in ("composite", "near"):
        raise invalid(f"Cannot sort on '{key.code}'", expression="_sort")
    table = INDEX_TABLES[impl.strategy]
    col = table.c[sort_column(impl.strategy, key.descending)]
    agg = func.max(col) if key.descending else func.min(col)
    sub = select(agg).where(table.c.rid == r.c.rid, table.c.param == key.code).correlate(r)
    return sub.scalar_subquery(), key.descending


def _where(node: Node, res_type: str, r: Any, ctx: Ctx) -> tuple[ColumnElement[bool], bool]:
    """`compile_where`, remembered per filter (see `search.cache`)."""
    if not cacheable(node):
        return compile_where(node, res_type, r, ctx)
    key = (node, res_type, r, ctx.dialect, ctx.base_url, ctx.counting, ctx.access)
    found: tuple[ColumnElement[bool], bool] | None = WHERE_CACHE.get(key, ctx.registry)
    if found is None:
        found = compile_where(node, res_type, r, ctx)
        WHERE_CACHE.put(key, ctx.registry, found)
    return found


def _index_count(cond: ColumnElement[bool], r: Any) -> Select[Any] | None:
    """A filter that is one `rid IN (SELECT rid FROM idx_x ...)` of a single type is counted
    on that index alone: index rows exist only for current resources of that type (deleting
    a resource deletes them), so the resource rows need not be visited one by one."""
    if not (isinstance(cond, BinaryExpression) and cond.operator is operators.in_op
            and isinstance(cond.right, ScalarSelect) and cond.left is r.c.rid):
        return None
    sub = cond.right.element
    if not isinstance(sub, Select) or len(sub.get_final_froms()) != 1:
        return None
    return select(func.count()).select_from(sub.distinct().subquery("matched"))


def plan(query: Query, ctx: Ctx, compartment: Compartment | None = None) -> Plan:
    """Compile `query` (scoped to `compartment`, filtered by `ctx.access`) into the page SELECT."""
    query = scope(query, compartment, ctx.access)
    if query.cursor is not None or not cacheable(query.where):
        return _build(query, ctx)
    # A first page depends on nothing else: the same statement objects are reused, so
    # SQLAlchemy's own cache key and compiled form are computed once too.
    key = ("plan", query.types, query.where, query.sort, query.count, query.total, query.summary,
           ctx.dialect, ctx.base_url, ctx.access)
    found: Plan | None = WHERE_CACHE.get(key, ctx.registry)
    if found is None:
        found = _build(query, ctx)
        WHERE_CACHE.put(key, ctx.registry, found)
    return found if found.query is query else replace(found, query=query)


def _build(query: Query, ctx: Ctx) -> Plan:
    r = alias(resource, "r")
    conds = _type_condition(r, query.types)
    selective = False
    if query.where is not None:
        cond, selective = _where(query.where, query.types[0] if len(query.types) == 1 else "*", r, ctx)
        conds.append(cond)
    where = and_(*conds)
    sort_exprs = [_sort_expr(k, query.types, r, ctx) for k in query.sort]
    signature = ",".join(str(k) for k in query.sort)
    cursor = decode(query.cursor, signature) if query.cursor else None
    wants_count = query.total in ("accurate", "estimate") or query.summary == "count" or query.count == 0
    count_stmt: Select[Any] = select(func.count()).select_from(r).where(where)
    if wants_count and query.where is not None:
        counting = replace(ctx, counting=True)
        type_ = query.types[0] if len(query.types) == 1 else "*"
        cond = _where(query.where, type_, r, counting)[0]
        on_index = _index_count(cond, r) if len(query.types) == 1 else None
        count_stmt = on_index if on_index is not None else (
            select(func.count()).select_from(r).where(and_(*conds[:-1], cond)))
    if query.summary == "count" or query.count == 0:
        return Plan(query, None, None, count_stmt, sort_exprs, cursor, signature, where, r)
    count = count_stmt if wants_count else None
    # A selective filter drives the query and the few matches are sorted; otherwise the sort
    # parameter's index drives and the filter is checked along the way.
    driven = None if selective else index_sort(query, ctx, r, where, cursor)
    if driven is not None:
        return Plan(query, driven[0], driven[1], count, sort_exprs, cursor, signature, where, r)
    if not selective and not query.sort and query.where is not None and len(query.types) == 1:
        page = _ordered_page(query, ctx, r, cursor)
        if page is not None:
            return Plan(query, page, None, count, sort_exprs, cursor, signature, where, r)
    keys = (e.label(f"k{i}") for i, (e, _) in enumerate(sort_exprs))
    page = select(r.c.rid, r.c.res_type, r.c.res_id, r.c.body, *keys)
    page = page.where(where)
    if cursor is not None:
        page = page.where(keyset_condition(sort_exprs, r.c.rid, cursor))
    reverse = cursor is not None and not cursor.forward
    page = page.order_by(*order_by(sort_exprs, r.c.rid, reverse)).limit(query.count + 1)
    return Plan(query, page, None, count, sort_exprs, cursor, signature, where, r)


def _ordered_page(query: Query, ctx: Ctx, r: Any, cursor: Cursor | None) -> Select[Any] | None:
    """The page read along an equality term's index in rid order (see `tree.ordered_drive`)."""
    assert query.where is not None
    drive = ordered_drive(query.where, query.types[0], r, ctx)
    if drive is None:
        return None
    d = drive.d
    page = (
        select(r.c.rid, r.c.res_type, r.c.res_id, r.c.body)
        .select_from(d.join(r, r.c.rid == d.c.rid))
        .where(drive.cond, *drive.rest, live(r, query.types[0]))
    )
    if cursor is not None:
        page = page.where(keyset_condition([], d.c.rid, cursor))
    reverse = cursor is not None and not cursor.forward
    # One resource can have several index rows for the value (the same code in two codings):
    # grouping by the index's rid keeps one, and follows the index order without a sort.
    # PostgreSQL also wants the resource's key grouped to select its columns.
    group = (d.c.rid,) if ctx.dialect == "sqlite" else (d.c.rid, r.c.rid)
    return page.group_by(*group).order_by(*order_by([], d.c.rid, reverse)).limit(query.count + 1)
