"""`_include` and `_revinclude` (with `:iterate` and `*`): the resources a page references or
is referenced by, fetched by key, never re-searched.

https://hl7.org/fhir/R4/search.html#include

Non-iterating includes apply to the page's matches; iterating ones also to what earlier rounds
included, up to `MAX_DEPTH` rounds. The access policy filters included resources too.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, select, tuple_

from fhir_server.search.ast import Include
from fhir_server.search.compile.common import Ctx, alias
from fhir_server.search.compile.tree import live, visible
from fhir_server.search.execute import Match
from fhir_server.search.registry import Registry
from fhir_server.storage.index_schema import idx_reference
from fhir_server.storage.schema import resource

__all__ = ["MAX_DEPTH", "MAX_INCLUDED", "resolve_includes"]

MAX_DEPTH = 5
MAX_INCLUDED = 1000


def _codes(reg: Registry, inc: Include) -> list[str]:
    if inc.code != "*":
        return [inc.code]
    return [i.code for i in reg.params(inc.source) if i.strategy == "reference"]


def _forward(conn: Connection, inc: Include, src: list[Match], ctx: Ctx) -> list[Match]:
    rids = [m.rid for m in src if m.type == inc.source or inc.source == "*"]
    if not rids:
        return []
    ref = idx_reference
    keys = select(ref.c.target_type, ref.c.target_id).where(
        ref.c.rid.in_(rids), ref.c.target_type.is_not(None), ref.c.target_id.is_not(None)
    ).distinct()
    if inc.code != "*":
        keys = keys.where(ref.c.param == inc.code)
    if inc.target:
        keys = keys.where(ref.c.target_type == inc.target)
    pairs = [tuple(row) for row in conn.execute(keys)]
    if not pairs:
        return []
    r = alias(resource, "r")
    stmt = select(r.c.rid, r.c.res_type, r.c.res_id, r.c.body).where(
        live(r, "*"), tuple_(r.c.res_type, r.c.res_id).in_(pairs)
    )
    return _fetch(conn, stmt, r, ctx)


def _reverse(conn: Connection, inc: Include, src: list[Match], ctx: Ctx) -> list[Match]:
    pairs = [(m.type, m.id) for m in src]
    if not pairs:
        return []
    ref = idx_reference
    sub = select(ref.c.rid).where(tuple_(ref.c.target_type, ref.c.target_id).in_(pairs))
    if inc.source != "*":
        sub = sub.where(ref.c.res_type == inc.source, ref.c.param.in_(_codes(ctx.registry, inc)))
    if inc.target:
        sub = sub.where(ref.c.target_type == inc.target)
    r = alias(resource, "r")
    stmt = select(r.c.rid, r.c.res_type, r.c.res_id, r.c.body).where(live(r, inc.source), r.c.rid.in_(sub))
    return _fetch(conn, stmt, r, ctx)


def _fetch(conn: Connection, stmt: Any, r: Any, ctx: Ctx) -> list[Match]:
    if not ctx.access.unrestricted:
        stmt = stmt.where(visible(ctx.access, "*", r, ctx))
    stmt = stmt.order_by(r.c.rid).limit(MAX_INCLUDED)
    return [Match(int(row[0]), row[1], row[2], bytes(row[3])) for row in conn.execute(stmt)]


def resolve_includes(
    conn: Connection, includes: tuple[Include, ...], matches: list[Match], ctx: Ctx
) -> list[Match]:
    """Included resources not already among `matches`, in a stable order."""
    seen = {m.rid for m in matches}
    out: list[Match] = []
    frontier = matches
    for depth in range(MAX_DEPTH):
        found: list[Match] = []
        for inc in includes:
            if depth > 0 and not inc.iterate:
                continue
            fn = _reverse if inc.reverse else _forward
            for m in fn(conn, inc, frontier, ctx):
                if m.rid not in seen:
                    seen.add(m.rid)
                    found.append(m)
        out.extend(found)
        if not found or len(out) >= MAX_INCLUDED or not any(i.iterate for i in includes):
            break
        frontier = found
    return out


