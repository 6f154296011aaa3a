"""Date search: every value is a `[lo, hi)` instant range, compared per the R4 prefix rules.

https://hl7.org/fhir/R4/search.html#date and https://hl7.org/fhir/R4/search.html#prefix

A date, dateTime or instant covers its whole precision (`2020-03` is the month); a Period
covers start to end (an open end is unbounded); a Timing covers each event and its bounds.
The search value is a range too, so `eq` means "contained in", `gt` "extends after", and so on.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, and_, not_, or_

from fhir_server.indexing.extract import Node
from fhir_server.indexing.normalize import MAX_US, MIN_US, date_range
from fhir_server.search.ast import Param, Value
from fhir_server.search.compile.common import Ctx, Row, any_of, bad_value, in_index, missing, unsupported_modifier
from fhir_server.search.registry import SearchParamImpl
from fhir_server.storage.index_schema import idx_date

__all__ = ["index_rows", "predicate", "range_condition", "ranges_of"]

_DAY = 86_400_000_000


def ranges_of(value: Any) -> list[tuple[int, int]]:
    if isinstance(value, str):
        rng = date_range(value)
        return [rng] if rng else []
    if not isinstance(value, dict):
        return []
    if "start" in value or "end" in value:
        start = date_range(value["start"]) if isinstance(value.get("start"), str) else None
        end = date_range(value["end"]) if isinstance(value.get("end"), str) else None
        return [(start[0] if start else MIN_US, end[1] if end else MAX_US)]
    out: list[tuple[int, int]] = []
    for event in value.get("event", []) or []:
        out.extend(ranges_of(event))
    bounds = (value.get("repeat") or {}).get("boundsPeriod")
    if isinstance(bounds, dict):
        out.extend(ranges_of(bounds))
    return out


def index_rows(nodes: list[Node], impl: SearchParamImpl) -> list[Row]:
    return [("date", {"lo": lo, "hi": hi}) for value, _h in nodes for lo, hi in ranges_of(value)]


def range_condition(
    prefix: str, slo: int, shi: int, lo: ColumnElement[Any], hi: ColumnElement[Any], now_us: int
) -> ColumnElement[bool]:
    """Target range `[lo, hi)` against search range `[slo, shi)` under `prefix`."""
    # `lo < hi` always, so `eq` implies `lo < shi` and `ge` implies `hi > slo`: the extra bound
    # is redundant logically but gives the index a range to scan.
    eq = and_(lo >= slo, lo < shi, hi <= shi)
    match prefix:
        case "eq":
            return eq
        case "ne":
            return not_(eq)
        case "gt":
            return hi > shi
        case "lt":
            return lo < slo
        case "ge":
            return and_(hi > slo, or_(hi > shi, eq))
        case "le":
            return and_(lo < shi, or_(lo < slo, eq))
        case "sa":
            return lo >= shi
        case "eb":
            return hi <= slo
        case "ap":
            # Approximately: within 10% of the distance to now, and never less than a day.
            gap = max(_DAY, abs(now_us - slo) // 10)
            return and_(lo < shi + gap, hi > slo - gap)
    raise AssertionError(prefix)


def parse_value(p: Param, v: Value) -> tuple[int, int]:
    rng = date_range(v.text)
    if rng is None:
        raise bad_value(p, v, "not a FHIR date, dateTime or instant")
    return rng


def predicate(p: Param, impl: SearchParamImpl, r: Any, ctx: Ctx) -> ColumnElement[bool]:
    t, rt = idx_date, impl.res_type
    if p.modifier == "missing":
        return missing(t, r, rt, p)
    if p.modifier is not None:
        raise unsupported_modifier(p, impl)
    conds = []
    for v in p.values:
        slo, shi = parse_value(p, v)
        conds.append(range_condition(v.prefix or "eq", slo, shi, t.c.lo, t.c.hi, ctx.now_us))
    return in_index(t, r, rt, p.code, any_of(conds))
