"""String search: starts-with by default, `:exact`, `:contains`; HumanName and Address parts.

https://hl7.org/fhir/R4/search.html#string

`value` holds the folded text (lower case, accents removed) so the default match is a prefix
range on a btree; `exact` holds the text as written for `:exact`.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, and_

from fhir_server.indexing.extract import Node
from fhir_server.indexing.normalize import clip, fold
from fhir_server.search.ast import Param
from fhir_server.search.compile.common import Ctx, Row, any_of, in_index, missing, starts_with, unsupported_modifier
from fhir_server.search.registry import SearchParamImpl
from fhir_server.storage.index_schema import idx_string

__all__ = ["index_rows", "predicate", "strings_of"]

_NAME_PARTS = ("text", "family", "given", "prefix", "suffix")
_ADDRESS_PARTS = ("text", "line", "city", "district", "state", "postalCode", "country")


def strings_of(value: Any) -> list[str]:
    """The searchable strings in a value: itself, or the parts of a HumanName / Address."""
    if isinstance(value, str):
        return [value]
    if not isinstance(value, dict):
        return []
    parts = _ADDRESS_PARTS if any(k in value for k in _ADDRESS_PARTS[1:]) else _NAME_PARTS
    out: list[str] = []
    for key in parts:
        item = value.get(key)
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, list):
            out.extend(i for i in item if isinstance(i, str))
    if not out and isinstance(value.get("display"), str):  # Reference.display, Coding.display
        out.append(value["display"])
    return out


def index_rows(nodes: list[Node], impl: SearchParamImpl) -> list[Row]:
    rows: list[Row] = []
    for value, _hint in nodes:
        for s in strings_of(value):
            if s.strip():
                rows.append(("string", {"value": fold(s), "exact": clip(s)}))
    return rows


def predicate(p: Param, impl: SearchParamImpl, r: Any, ctx: Ctx) -> ColumnElement[bool]:
    t, rt = idx_string, impl.res_type
    match p.modifier:
        case None:
            cond = any_of([starts_with(t.c.value, fold(v.text)) for v in p.values])
        case "exact":
            # `value` is indexed; `exact` only refines what the folded value found.
            cond = any_of([and_(t.c.value == fold(v.text), t.c.exact == clip(v.text)) for v in p.values])
        case "contains":
            cond = any_of([t.c.value.contains(fold(v.text), autoescape=True) for v in p.values])
        case "missing":
            return missing(t, r, rt, p)
        case _:
            raise unsupported_modifier(p, impl)
    return in_index(t, r, rt, p.code, cond)
