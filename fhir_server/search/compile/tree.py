"""AST -> SQL condition on a resource row: dispatch on node kind, then on parameter strategy.

https://hl7.org/fhir/R4/search.html#chaining and https://hl7.org/fhir/R4/search.html#has

Every condition is about the resource alias `r` and the type it is being evaluated as.
Chains and `_has` become nested `IN` subqueries through `idx_reference`; the planner of each
database unnests them into semi-joins.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import ColumnElement, and_, false, not_, or_, select

from fhir_server.errors import invalid
from fhir_server.search.ast import And, Chain, Compartment, Has, Node, Not, Or, Param, Policy, TypeSwitch
from fhir_server.search.compile import (
    composite,
    date,
    fulltext,
    number,
    quantity,
    reference,
    special,
    string,
    token,
    uri,
)
from fhir_server.search.compile.common import Ctx, in_index
from fhir_server.search.registry import SearchParamImpl
from fhir_server.storage.index_schema import idx_reference
from fhir_server.storage.schema import resource

__all__ = ["PREDICATES", "compile_node", "live"]

Predicate = Callable[[Param, SearchParamImpl, Any, Ctx], ColumnElement[bool]]
PREDICATES: dict[str, Predicate] = {
    "token": token.predicate,
    "string": string.predicate,
    "date": date.predicate,
    "number": number.predicate,
    "quantity": quantity.predicate,
    "reference": reference.predicate,
    "uri": uri.predicate,
    "composite": composite.predicate,
    "id": special.id_predicate,
    "lastUpdated": special.last_updated_predicate,
    "fulltext": fulltext.predicate,
}


def live(r: Any, res_type: str) -> ColumnElement[bool]:
    cond = r.c.deleted == false()
    return cond if res_type == "*" else and_(r.c.res_type == res_type, cond)


def compile_node(node: Node, res_type: str, r: Any, ctx: Ctx) -> ColumnElement[bool]:
    match node:
        case Param():
            impl = ctx.registry.get(res_type, node.code)
            if impl is None:
                raise invalid(f"Unknown search parameter '{node.code}' for resource type {res_type}")
            return PREDICATES[impl.strategy](node, impl, r, ctx)
        case And(items):
            return and_(*(compile_node(i, res_type, r, ctx) for i in items))
        case Or(items):
            return or_(*(compile_node(i, res_type, r, ctx) for i in items))
        case Not(item):
            return not_(compile_node(item, res_type, r, ctx))
        case Chain():
            return _chain(node, res_type, r, ctx)
        case Has():
            return _has(node, res_type, r, ctx)
        case Compartment():
            return _compartment(node, res_type, r)
        case Policy():
            return node.clause(r, res_type)  # type: ignore[no-any-return]
        case TypeSwitch(cases):
            return or_(*(and_(r.c.res_type == t, compile_node(n, t, r, ctx)) for t, n in cases))
    raise AssertionError(node)


def _chain(node: Chain, res_type: str, r: Any, ctx: Ctx) -> ColumnElement[bool]:
    ref, target = idx_reference, resource.alias()
    targets = (
        select(target.c.res_id)
        .where(live(target, node.target), compile_node(node.node, node.target, target, ctx))
        .correlate(None)
    )
    cond = and_(ref.c.target_type == node.target, ref.c.target_id.in_(targets))
    return in_index(ref, r, res_type, node.code, cond)


def _has(node: Has, res_type: str, r: Any, ctx: Ctx) -> ColumnElement[bool]:
    ref, source = idx_reference.alias(), resource.alias()
    sources = (
        select(source.c.rid)
        .where(live(source, node.source), compile_node(node.node, node.source, source, ctx))
        .correlate(None)
    )
    ids = (
        select(ref.c.target_id)
        .where(ref.c.res_type == node.source, ref.c.param == node.code, ref.c.rid.in_(sources))
        .correlate(None)
    )
    if res_type != "*":
        ids = ids.where(ref.c.target_type == res_type)
    return r.c.res_id.in_(ids)


def _compartment(node: Compartment, res_type: str, r: Any) -> ColumnElement[bool]:
    ref = idx_reference
    sub = (
        select(ref.c.rid)
        .where(
            ref.c.res_type == res_type,
            ref.c.param.in_(node.codes),
            ref.c.target_id == node.comp_id,
            ref.c.target_type == node.comp_type,
        )
        .correlate(None)
    )
    cond = r.c.rid.in_(sub)
    if res_type == node.comp_type:  # the compartment's own resource belongs to it
        cond = or_(cond, r.c.res_id == node.comp_id)
    return cond
