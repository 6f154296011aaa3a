"""Composite search (`a$b$c`): any number of components of any R4 type, matched within one element.

https://hl7.org/fhir/R4/search.html#composite

Components may be tokens, references, strings, uris, numbers, quantities or dates. Each
element the composite expression selects gives one row per combination of its
components' values, so `code-value-quantity=loinc|8480-6$gt140` only matches an Observation
(or component) whose own code is 8480-6 and whose own value is above 140.

A combination's first two components fill `idx_composite`'s two slots: the first one's hashes
(`h1_*`, when it is a token, reference, string or uri: every R4 composite) and the second one's
values (`h2_*` hashes, `num`/`q_*` or `lo`/`hi`). That is the whole story for every two-part
composite, searched from the `(res_type, param, h1, num)` indexes. Any other component (the
third and later ones, a first one of a range type) is a row of `idx_composite_part` tagged with
the combination's `combo` number and the component's position, checked by an `EXISTS` probe
from the matching `idx_composite` row. Component expressions starting with `%resource` read
the resource itself (MolecularSequence's variant coordinates pair the sequence's chromosome
with each variant). Per component type the values compare as the plain parameters do, except
that strings and uris are matched whole (folded for strings), through their hash.
"""

from __future__ import annotations

import itertools
import re
from typing import Any

from sqlalchemy import ColumnElement, and_, select

from fhir_server.errors import not_supported
from fhir_server.indexing.extract import Node, compile_expression
from fhir_server.indexing.normalize import clip, fold, hash64
from fhir_server.search.ast import Param, Value
from fhir_server.search.compile import date, quantity, string, token
from fhir_server.search.compile.common import Ctx, Row, any_of, bad_value, in_index, missing, unsupported_modifier
from fhir_server.search.compile.number import as_float, number_condition, parse_number
from fhir_server.search.compile.reference import parse_reference
from fhir_server.search.registry import Component, SearchParamImpl
from fhir_server.storage.index_schema import idx_composite, idx_composite_part

__all__ = ["index_rows", "placement", "predicate"]

HASHED = frozenset({"token", "reference", "string", "uri"})
_PREFIXED = frozenset({"number", "quantity", "date"})
_RESOURCE = "%resource."
_UNESCAPED_DOLLAR = re.compile(r"(?<!\\)\$")
# A slot's values by the part table's column names; idx_composite names its slots' hashes apart.
_H1 = {"h_full": "h1_full", "h_code": "h1_code"}
_H2 = {"h_full": "h2_full", "h_code": "h2_code"}


def placement(components: tuple[Component, ...]) -> tuple[str, ...]:
    """Where each component is stored: `h1` and `second` in idx_composite, else `part`."""
    first = "h1" if components[0].type in HASHED else "part"
    return (first, "second", *("part",) * (len(components) - 2))


# -- write side ------------------------------------------------------------------------------
def _reference_values(nodes: list[Node]) -> list[dict[str, Any]]:
    """`Type/id` (and the bare id) of relative and absolute references, and absolute URLs."""
    out: list[dict[str, Any]] = []
    for value, _hint in nodes:
        ref = value if isinstance(value, str) else value.get("reference") if isinstance(value, dict) else None
        if not isinstance(ref, str):
            continue
        type_, id_, url, _version = parse_reference(ref)
        if type_ is not None and id_ is not None:
            out.append({"h_full": hash64(f"{type_}/{id_}"), "h_code": hash64(id_)})
        if url is not None:
            out.append({"h_full": hash64(url), "h_code": None})
    return out


def _values(kind: str, nodes: list[Node], impl: SearchParamImpl) -> list[dict[str, Any]]:
    """One component's values in an element, each as the slot columns it fills."""
    match kind:
        case "token":
            return [{"h_full": r["h_full"], "h_code": r["h_code"]} for _k, r in token.index_rows(nodes, impl)
                    if r["h_full"] is not None and "param_suffix" not in r]
        case "string":
            hashes = [hash64(fold(s)) for v, _h in nodes for s in string.strings_of(v)]
            return [{"h_full": h, "h_code": h} for h in hashes]
        case "uri":
            return [{"h_full": hash64(clip(v)), "h_code": None} for v, _h in nodes if isinstance(v, str) and v]
        case "reference":
            return _reference_values(nodes)
        case "quantity":
            return [{"num": q["value"], "q_system": q["system"], "q_code": q["code"]}
                    for v, _h in nodes if (q := quantity.quantity_of(v))]
        case "number":
            return [{"num": f} for v, _h in nodes if (f := as_float(v)) is not None]
        case "date":
            return [{"lo": lo, "hi": hi} for v, _h in nodes for lo, hi in date.ranges_of(v)]
    return []


def _nodes(expression: str, element: dict[str, Any], resource: dict[str, Any] | None) -> list[Node]:
    if expression.startswith(_RESOURCE):
        return compile_expression(expression[len(_RESOURCE):])(resource) if resource is not None else []
    return compile_expression(expression)(element)


def index_rows(nodes: list[Node], impl: SearchParamImpl, resource: dict[str, Any] | None = None) -> list[Row]:
    """Rows of every combination of the components' values, element by element."""
    comps = impl.components
    where = placement(comps)
    rows: list[Row] = []
    combo = 0
    for element, _hint in nodes:
        if not isinstance(element, dict):
            continue
        values = [_values(c.type, _nodes(c.expression, element, resource), impl) for c in comps]
        for combination in itertools.product(*values):
            row: dict[str, Any] = {}
            parts: list[Row] = []
            for pos, (slot, vals) in enumerate(zip(where, combination, strict=True)):
                if slot == "part":
                    parts.append(("composite_part", {"combo": combo, "pos": pos, **vals}))
                else:
                    names = _H1 if slot == "h1" else _H2
                    row.update({names.get(k, k): v for k, v in vals.items()})
            if parts:
                row["combo"] = combo
                combo += 1
            rows.append(("composite", row))
            rows.extend(parts)
    return rows


# -- read side -------------------------------------------------------------------------------
def _reference_condition(p: Param, v: Value, cols: dict[str, Any], ctx: Ctx) -> ColumnElement[bool]:
    text = v.text
    base = ctx.base_url.rstrip("/")
    if base and text.startswith(base + "/"):
        text = text[len(base) + 1 :]
    if "/" not in text and ":" not in text:  # a bare id, of any type
        return cols["h_code"] == hash64(text[:64])  # type: ignore[no-any-return]
    type_, id_, url, _version = parse_reference(text)
    if url is not None and ("://" in text or text.startswith("urn:")):
        return cols["h_full"] == hash64(url)  # type: ignore[no-any-return]
    if type_ is not None and id_:
        return cols["h_full"] == hash64(f"{type_}/{id_}")  # type: ignore[no-any-return]
    raise bad_value(p, v, "a reference component is Type/id, an id or an absolute URL")


def _condition(p: Param, kind: str, v: Value, cols: dict[str, Any], ctx: Ctx) -> ColumnElement[bool]:
    match kind:
        case "token":
            return token.match_values((v,), cols["h_full"], cols["h_code"], None)
        case "string":
            return cols["h_code"] == hash64(fold(v.text))  # type: ignore[no-any-return]
        case "uri":
            return cols["h_full"] == hash64(clip(v.text))  # type: ignore[no-any-return]
        case "reference":
            return _reference_condition(p, v, cols, ctx)
        case "quantity":
            return quantity.quantity_condition(p, v, cols["num"], cols["q_system"], cols["q_code"])
        case "number":
            return number_condition(v.prefix or "eq", parse_number(p, v), cols["num"])
        case "date":
            slo, shi = date.parse_value(p, v)
            return date.range_condition(v.prefix or "eq", slo, shi, cols["lo"], cols["hi"], 0)
    raise not_supported(f"Composite parameter '{p.code}' has a {kind} component this server cannot search")


def _columns(slot: str, table: Any) -> dict[str, Any]:
    names = _H1 if slot == "h1" else _H2 if slot == "second" else {}
    return {k: table.c[names.get(k, k)] for k in ("h_full", "h_code", "num", "q_system", "q_code", "lo", "hi")
            if names.get(k, k) in table.c}


def _split(p: Param, v: Value, n: int) -> list[Value]:
    """`a$b$c` -> one Value per component (prefixes split off the range types' parts)."""
    texts = [t.replace("\\$", "$") for t in _UNESCAPED_DOLLAR.split(v.text)]
    if len(texts) != n:
        raise bad_value(p, v, f"a value of this composite is {n} parts joined by '$'")
    if not all(texts):
        raise bad_value(p, v, "a composite value has an empty part")
    return [Value(t) for t in texts]


def _value_condition(p: Param, impl: SearchParamImpl, v: Value, ctx: Ctx) -> ColumnElement[bool]:
    from fhir_server.search.parse import split_prefix  # parse imports the compile modules

    t = idx_composite
    conds: list[ColumnElement[bool]] = []
    for pos, (comp, slot, part) in enumerate(zip(impl.components, placement(impl.components),
                                                 _split(p, v, len(impl.components)), strict=True)):
        if comp.type in _PREFIXED:
            prefix, rest = split_prefix(part.text)
            part = Value(rest, prefix)
        if slot != "part":
            conds.append(_condition(p, comp.type, part, _columns(slot, t), ctx))
            continue
        x = idx_composite_part
        cond = _condition(p, comp.type, part, _columns(slot, x), ctx)
        probe = select(x.c.rid).where(x.c.rid == t.c.rid, x.c.param == p.code, x.c.combo == t.c.combo,
                                      x.c.pos == pos, cond)
        conds.append(probe.exists())
    return and_(*conds)


def predicate(p: Param, impl: SearchParamImpl, r: Any, ctx: Ctx) -> ColumnElement[bool]:
    t, rt = idx_composite, impl.res_type
    if p.modifier == "missing":
        return missing(t, r, rt, p)
    if p.modifier is not None:
        raise unsupported_modifier(p, impl)
    conds = [_value_condition(p, impl, v, ctx) for v in p.values]
    return in_index(t, r, rt, p.code, any_of(conds))
