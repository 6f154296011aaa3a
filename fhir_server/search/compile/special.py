"""Parameters on the resource row itself: `_id` and `_lastUpdated`.

https://hl7.org/fhir/R4/search.html#id and https://hl7.org/fhir/R4/search.html#lastUpdated

Neither has index rows: `_id` compares `resource.res_id`, `_lastUpdated` compares the
`last_updated` microseconds, an instant `[t, t + 1 µs)` under the date prefix rules.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, not_

from fhir_server.search.ast import Param
from fhir_server.search.compile.common import Ctx, any_of, missing_flag, unsupported_modifier
from fhir_server.search.compile.date import parse_value, range_condition
from fhir_server.search.registry import SearchParamImpl

__all__ = ["id_predicate", "last_updated_predicate"]


def id_predicate(p: Param, impl: SearchParamImpl, r: Any, ctx: Ctx) -> ColumnElement[bool]:
    ids = [v.text for v in p.values]
    cond: ColumnElement[bool] = r.c.res_id == ids[0] if len(ids) == 1 else r.c.res_id.in_(ids)
    match p.modifier:
        case None:
            return cond
        case "not":
            return not_(cond)
        case "missing":
            return _always_present(p, r.c.res_id)
    raise unsupported_modifier(p, impl)


def _always_present(p: Param, col: Any) -> ColumnElement[bool]:
    """`:missing` on a value every resource has: `true` finds nothing, `false` everything."""
    return any_of([]) if missing_flag(p) else col.is_not(None)


def last_updated_predicate(p: Param, impl: SearchParamImpl, r: Any, ctx: Ctx) -> ColumnElement[bool]:
    if p.modifier == "missing":
        return _always_present(p, r.c.last_updated)
    if p.modifier is not None:
        raise unsupported_modifier(p, impl)
    col = r.c.last_updated
    conds = []
    for v in p.values:
        slo, shi = parse_value(p, v)
        conds.append(range_condition(v.prefix or "eq", slo, shi, col, col + 1, ctx.now_us))
    return any_of(conds)
