"""Reference search: `Type/id`, bare id, absolute URL, canonical `url|version`, `:Type`, `:identifier`.

https://hl7.org/fhir/R4/search.html#reference

Rows keep the target's type and id (for relative and absolute references alike, so a
server's own absolute URLs match `Type/id`), the URL as written for absolute and canonical
references, and a canonical's version. References to contained resources (`#x`) are not
indexed: they name nothing a search could find. `Reference.identifier` becomes token rows
under `code:identifier`, for the `:identifier` modifier.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, and_

from fhir_server.errors import not_supported
from fhir_server.indexing.extract import Node
from fhir_server.indexing.normalize import clip
from fhir_server.search.ast import Param, Value
from fhir_server.search.compile import token
from fhir_server.search.compile.common import Ctx, Row, any_of, bad_value, in_index, missing
from fhir_server.search.registry import SearchParamImpl, resource_types
from fhir_server.storage.index_schema import idx_reference, idx_token

__all__ = ["index_rows", "parse_reference", "predicate"]


def parse_reference(ref: str) -> tuple[str | None, str | None, str | None, str | None]:
    """(type, id, url, version) of a reference string; contained `#x` gives all None."""
    if not ref or ref.startswith("#"):
        return None, None, None, None
    if ref.startswith(("urn:", "http://", "https://")) or "://" in ref:
        url, _, version = ref.partition("|")
        parts = url.split("/_history/")[0].rstrip("/").split("/")
        if len(parts) >= 2 and parts[-2] in _types():
            return parts[-2], parts[-1][:64], clip(url), version[:64] or None
        return None, None, clip(url), version[:64] or None
    parts = ref.split("/_history/")[0].split("/")
    if len(parts) == 2 and parts[0] in _types():
        return parts[0], parts[1][:64], None, None
    return None, None, clip(ref), None


_TYPES: frozenset[str] = frozenset()


def _types() -> frozenset[str]:
    global _TYPES
    if not _TYPES:
        _TYPES = frozenset(resource_types())
    return _TYPES


def index_rows(nodes: list[Node], impl: SearchParamImpl) -> list[Row]:
    rows: list[Row] = []
    for value, _hint in nodes:
        if isinstance(value, str):  # canonical or uri
            ref, explicit_type = value, None
        elif isinstance(value, dict):
            ident = value.get("identifier")
            if isinstance(ident, dict):
                rows.extend(token.identifier_rows(ident, suffix=":identifier"))
            ref_, explicit_type = value.get("reference"), value.get("type")
            if not isinstance(ref_, str):
                continue
            ref = ref_
        else:
            continue
        type_, id_, url, version = parse_reference(ref)
        if type_ is None and id_ is None and url is None:
            continue
        if explicit_type and type_ is None and url is None:
            type_ = explicit_type
        rows.append(("reference", {"target_type": type_, "target_id": id_, "url": url, "version": version}))
    return rows


def _value_condition(p: Param, v: Value, target: str | None, ctx: Ctx) -> ColumnElement[bool]:
    t = idx_reference
    text = v.text
    if ctx.base_url and text.startswith(ctx.base_url.rstrip("/") + "/"):
        text = text[len(ctx.base_url.rstrip("/")) + 1 :]
    if text and "/" not in text and ":" not in text:  # a bare id, of any (or the modifier's) type
        cond = t.c.target_id == text[:64]
        return and_(cond, t.c.target_type == target) if target else cond
    type_, id_, url, version = parse_reference(text)
    if url is not None and "://" not in text and not text.startswith("urn:"):
        raise bad_value(p, v, "expected Type/id, an id or an absolute URL")
    if url is not None:
        conds = [t.c.url == url]
        if version:
            conds.append(t.c.version == version)
        return and_(*conds)
    if type_ is not None:
        if target and target != type_:
            raise bad_value(p, v, f"the modifier ':{target}' contradicts the type {type_}")
        return and_(t.c.target_id == id_, t.c.target_type == type_)
    raise bad_value(p, v, "expected Type/id, an id or an absolute URL")


def predicate(p: Param, impl: SearchParamImpl, r: Any, ctx: Ctx) -> ColumnElement[bool]:
    rt = impl.res_type
    match p.modifier:
        case "missing":
            return missing(idx_reference, r, rt, p)
        case "identifier":
            t = idx_token
            cond = token.match_values(p.values, t.c.h_full, t.c.h_code, t.c.system)
            return in_index(t, r, rt, p.code + ":identifier", cond)
        case None:
            target = None
        case m if m in _types():
            target = m
        case _:
            raise not_supported(f"Modifier ':{p.modifier}' is not supported on reference parameter '{p.code}'")
    conds = [_value_condition(p, v, target, ctx) for v in p.values]
    return in_index(idx_reference, r, rt, p.code, any_of(conds))
