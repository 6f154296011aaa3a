"""Number search, and the prefix rules shared with quantity: implicit precision ranges.

https://hl7.org/fhir/R4/search.html#number

`100` means [99.5, 100.5) and `100.00` means [99.995, 100.005): `eq` asks the target to fall
in that range, the comparison prefixes compare with the value itself, `ap` allows 10%.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import ColumnElement, and_, not_

from fhir_server.indexing.extract import Node
from fhir_server.search.ast import Param, Value
from fhir_server.search.compile.common import Ctx, Row, any_of, bad_value, in_index, missing, unsupported_modifier
from fhir_server.search.registry import SearchParamImpl
from fhir_server.storage.index_schema import idx_number

__all__ = ["as_float", "index_rows", "number_condition", "parse_number", "predicate"]


def as_float(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float, Decimal)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(Decimal(value))
        except InvalidOperation:
            return None
    return None


def index_rows(nodes: list[Node], impl: SearchParamImpl) -> list[Row]:
    rows: list[Row] = []
    for value, _hint in nodes:
        if isinstance(value, dict):
            value = value.get("value")
        f = as_float(value)
        if f is not None:
            rows.append(("number", {"value": f}))
    return rows


def parse_number(p: Param, v: Value, text: str | None = None) -> Decimal:
    try:
        d = Decimal(text if text is not None else v.text)
    except InvalidOperation:
        raise bad_value(p, v, "not a number") from None
    if not d.is_finite():
        raise bad_value(p, v, "not a finite number")
    return d


def number_condition(
    prefix: str, d: Decimal, col: ColumnElement[Any], scale: Callable[[float], float] | None = None
) -> ColumnElement[bool]:
    """`col` against `d` under `prefix`; with `scale`, `col` holds values mapped by it (UCUM
    base units), the bounds are mapped the same way and compared with a relative tolerance of
    1e-9, since both sides went through floating-point conversions."""
    exp = d.as_tuple().exponent
    half = Decimal(5).scaleb(int(exp) - 1) if isinstance(exp, int) else Decimal(0)
    x = float(d)
    lo, hi, margin = float(d - half), float(d + half), abs(x) * 0.1
    tol = 0.0
    if scale is not None:
        lo, hi, x, below, above = scale(lo), scale(hi), scale(x), scale(x - margin), scale(x + margin)
        tol = 1e-9 * max(abs(lo), abs(hi))
    else:
        below, above = x - margin, x + margin
    eq = and_(col >= lo - tol, col < hi - tol)
    match prefix:
        case "eq":
            return eq
        case "ne":
            return not_(eq)
        case "gt" | "sa":
            return col > x + tol
        case "lt" | "eb":
            return col < x - tol
        case "ge":
            return col >= x - tol
        case "le":
            return col <= x + tol
        case "ap":
            return and_(col >= below - tol, col <= above + tol)
    raise AssertionError(prefix)


def predicate(p: Param, impl: SearchParamImpl, r: Any, ctx: Ctx) -> ColumnElement[bool]:
    t, rt = idx_number, impl.res_type
    if p.modifier == "missing":
        return missing(t, r, rt, p)
    if p.modifier is not None:
        raise unsupported_modifier(p, impl)
    conds = [number_condition(v.prefix or "eq", parse_number(p, v), t.c.value) for v in p.values]
    return in_index(t, r, rt, p.code, any_of(conds))
