"""Composite search (`code$value` pairs): a token first component and a token, string,
quantity, number or date second component, matched within one element.

https://hl7.org/fhir/R4/search.html#composite

Each element the composite expression selects gives one row per combination of its
components' values, so `code-value-quantity=loinc|8480-6$gt140` only matches an Observation
(or component) whose own code is 8480-6 and whose own value is above 140.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, and_

from fhir_server.errors import not_supported
from fhir_server.indexing.extract import Node, compile_expression
from fhir_server.indexing.normalize import fold, hash64
from fhir_server.search.ast import Param, Value
from fhir_server.search.compile import date, quantity, string, token
from fhir_server.search.compile.common import Ctx, Row, any_of, bad_value, in_index, missing, unsupported_modifier
from fhir_server.search.compile.number import as_float, number_condition, parse_number
from fhir_server.search.registry import SearchParamImpl
from fhir_server.storage.index_schema import idx_composite

__all__ = ["index_rows", "predicate"]


def _second_rows(kind: str, nodes: list[Node], impl: SearchParamImpl) -> list[dict[str, Any]]:
    match kind:
        case "token":
            return [{"h2_full": r["h_full"], "h2_code": r["h_code"]}
                    for _k, r in token.index_rows(nodes, impl) if r["h_full"] is not None]
        case "string":
            return [{"h2_full": hash64(fold(s)), "h2_code": hash64(fold(s))}
                    for v, _h in nodes for s in string.strings_of(v)]
        case "quantity":
            return [{"num": q["value"], "q_system": q["system"], "q_code": q["code"]}
                    for v, _h in nodes if (q := quantity.quantity_of(v))]
        case "number":
            return [{"num": f} for v, _h in nodes if (f := as_float(v)) is not None]
        case "date":
            return [{"lo": lo, "hi": hi} for v, _h in nodes for lo, hi in date.ranges_of(v)]
    return []


def index_rows(nodes: list[Node], impl: SearchParamImpl) -> list[Row]:
    first, second = impl.components
    rows: list[Row] = []
    for element, _hint in nodes:
        if not isinstance(element, dict):
            continue
        firsts = token.index_rows(compile_expression(first.expression)(element), impl)
        seconds = _second_rows(second.type, compile_expression(second.expression)(element), impl)
        for _k, f in firsts:
            if f["h_full"] is None:
                continue
            for s in seconds:
                rows.append(("composite", {"h1_full": f["h_full"], "h1_code": f["h_code"], **s}))
    return rows


def _second_condition(p: Param, kind: str, v: Value) -> ColumnElement[bool]:
    t = idx_composite
    match kind:
        case "token":
            return token.match_values((v,), t.c.h2_full, t.c.h2_code, None)
        case "string":
            return t.c.h2_code == hash64(fold(v.text))
        case "quantity":
            return quantity.quantity_condition(p, v, t.c.num, t.c.q_system, t.c.q_code)
        case "number":
            return number_condition(v.prefix or "eq", parse_number(p, v), t.c.num)
        case "date":
            slo, shi = date.parse_value(p, v)
            return date.range_condition(v.prefix or "eq", slo, shi, t.c.lo, t.c.hi, 0)
    raise not_supported(f"Composite parameter '{p.code}' has a {kind} component this server cannot search")


def predicate(p: Param, impl: SearchParamImpl, r: Any, ctx: Ctx) -> ColumnElement[bool]:
    from fhir_server.search.parse import split_prefix

    t, rt = idx_composite, impl.res_type
    if p.modifier == "missing":
        return missing(t, r, rt, p)
    if p.modifier is not None:
        raise unsupported_modifier(p, impl)
    kind = impl.components[1].type
    conds = []
    for v in p.values:
        if v.text.count("$") != 1:
            raise bad_value(p, v, "a composite value is two parts joined by '$'")
        a, b = v.text.split("$")
        second = Value(b)
        if kind in ("quantity", "number", "date"):
            prefix, rest = split_prefix(b)
            second = Value(rest, prefix)
        first = token.match_values((Value(a),), t.c.h1_full, t.c.h1_code, None)
        conds.append(and_(first, _second_condition(p, kind, second)))
    return in_index(t, r, rt, p.code, any_of(conds))
