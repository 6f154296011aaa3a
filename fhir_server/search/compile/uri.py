"""URI search: exact match, `:below` (the value is a prefix), `:above` (a prefix of the value).

https://hl7.org/fhir/R4/search.html#uri
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement

from fhir_server.indexing.extract import Node
from fhir_server.indexing.normalize import clip
from fhir_server.search.ast import Param
from fhir_server.search.compile.common import Ctx, Row, any_of, in_index, missing, starts_with, unsupported_modifier
from fhir_server.search.registry import SearchParamImpl
from fhir_server.storage.index_schema import idx_uri

__all__ = ["index_rows", "predicate"]


def index_rows(nodes: list[Node], impl: SearchParamImpl) -> list[Row]:
    rows: list[Row] = []
    for value, _hint in nodes:
        if isinstance(value, str) and value:
            rows.append(("uri", {"value": clip(value)}))
        elif isinstance(value, dict) and isinstance(value.get("reference"), str):
            rows.append(("uri", {"value": clip(value["reference"])}))
    return rows


def _ancestors(uri: str) -> list[str]:
    """`http://a/b/c` -> itself and every shorter path it lies under (`http://a/b`, `http://a`)."""
    out = [uri]
    scheme_end = uri.find("://") + 3 if "://" in uri else 0
    cut = uri.rstrip("/")
    while True:
        i = cut.rfind("/")
        if i < scheme_end or i <= 0:
            break
        cut = cut[:i]
        out += [cut, cut + "/"]
    return out


def predicate(p: Param, impl: SearchParamImpl, r: Any, ctx: Ctx) -> ColumnElement[bool]:
    t, rt = idx_uri, impl.res_type
    match p.modifier:
        case None:
            texts = [clip(v.text) for v in p.values]
            cond = t.c.value == texts[0] if len(texts) == 1 else t.c.value.in_(texts)
        case "below":
            cond = any_of([starts_with(t.c.value, clip(v.text)) for v in p.values])
        case "above":
            cond = t.c.value.in_([a for v in p.values for a in _ancestors(clip(v.text))])
        case "missing":
            return missing(t, r, rt, p)
        case _:
            raise unsupported_modifier(p, impl)
    return in_index(t, r, rt, p.code, cond)
