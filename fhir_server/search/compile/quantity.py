"""Quantity search: `[prefix]number|system|code`, with the number rules and unit filters.

https://hl7.org/fhir/R4/search.html#quantity

The unit matches `Quantity.code` (or `unit` when there is no code). A search in UCUM units
(`5.4|http://unitsofmeasure.org|g/L`) is compared in base units: it finds 540 mg/dL too, as R4
allows ("the server may canonicalise"), through the `c_value`/`c_unit` columns filled at
indexing for every UCUM quantity whose code has a canonical form (`search/ucum.py`). Other
searches compare values in the unit they were written with.
"""

from __future__ import annotations

import math
from typing import Any

from sqlalchemy import ColumnElement, and_

from fhir_server.indexing.extract import Node
from fhir_server.indexing.normalize import clip
from fhir_server.search.ast import Param, Value
from fhir_server.search.compile.common import Ctx, Row, any_of, bad_value, in_index, missing, unsupported_modifier
from fhir_server.search.compile.number import as_float, number_condition, parse_number
from fhir_server.search.registry import SearchParamImpl
from fhir_server.search.ucum import UCUM, canonical
from fhir_server.storage.index_schema import idx_quantity

__all__ = ["index_rows", "predicate", "quantity_condition", "quantity_of"]


def quantity_of(value: Any) -> dict[str, Any] | None:
    if not isinstance(value, dict):
        return None
    f = as_float(value.get("value"))
    if f is None:
        return None
    code = value.get("code") or value.get("unit") or value.get("currency")
    return {"value": f, "system": clip(value["system"]) if value.get("system") else None,
            "code": clip(code) if code else None}


def index_rows(nodes: list[Node], impl: SearchParamImpl) -> list[Row]:
    rows: list[Row] = []
    for value, _hint in nodes:
        q = quantity_of(value)
        if q is not None:
            found = canonical(q["code"]) if q["system"] == UCUM and q["code"] else None
            if found is not None and math.isfinite(c := found.of(q["value"])):
                q |= {"c_value": c, "c_unit": found.dimension}
            rows.append(("quantity", q))
    return rows


def quantity_condition(
    p: Param, v: Value, num: Any, system: Any, code: Any, base: tuple[Any, Any] | None = None
) -> ColumnElement[bool]:
    """With `base` (the `c_value`, `c_unit` columns), a UCUM unit with a canonical form is
    compared in base units."""
    parts = v.text.split("|")
    if len(parts) not in (1, 3):
        raise bad_value(p, v, "expected number or number|system|code")
    d = parse_number(p, v, parts[0])
    if base is not None and len(parts) == 3 and parts[1] == UCUM and (found := canonical(parts[2])):
        return and_(base[1] == found.dimension, number_condition(v.prefix or "eq", d, base[0], found.of))
    conds = [number_condition(v.prefix or "eq", d, num)]
    if len(parts) == 3:
        if parts[1]:
            conds.append(system == parts[1])
        if parts[2]:
            conds.append(code == parts[2])
    return and_(*conds)


def predicate(p: Param, impl: SearchParamImpl, r: Any, ctx: Ctx) -> ColumnElement[bool]:
    t, rt = idx_quantity, impl.res_type
    if p.modifier == "missing":
        return missing(t, r, rt, p)
    if p.modifier is not None:
        raise unsupported_modifier(p, impl)
    conds = [quantity_condition(p, v, t.c.value, t.c.system, t.c.code, (t.c.c_value, t.c.c_unit)) for v in p.values]
    return in_index(t, r, rt, p.code, any_of(conds))
