"""Token search: codes, Codings, CodeableConcepts, Identifiers, ContactPoints, booleans.

https://hl7.org/fhir/R4/search.html#token

Rows carry `system`, `code`, two hashes and the folded display text. `system|code` and
`|code` look up `h_full`, a bare `code` looks up `h_code`, so an OR-list of codes becomes one
`IN` on a hash column (Medplum #7623, HAPI #8247 show what per-value ORs cost). `:of-type`
rows (Identifier.type + value) and `:identifier` rows of references are stored under the
parameter code suffixed with the modifier.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement

from fhir_server.errors import invalid, not_supported
from fhir_server.indexing.extract import Node
from fhir_server.indexing.normalize import clip, fold, hash64, token_hashes
from fhir_server.search.ast import Param, Value
from fhir_server.search.compile.common import (
    Ctx,
    Row,
    any_of,
    bad_value,
    in_index,
    missing,
    starts_with,
    unsupported_modifier,
)
from fhir_server.search.registry import SearchParamImpl
from fhir_server.storage.index_schema import idx_token

__all__ = ["identifier_rows", "index_rows", "predicate", "split_token"]

_CONTACT_SYSTEMS = frozenset({"phone", "fax", "email", "pager", "url", "sms", "other"})


def _row(system: str | None, code: str | None, text: str | None = None, suffix: str = "") -> Row:
    h_full, h_code = token_hashes(system, code)
    row = {
        "system": clip(system) if system else None,
        "code": clip(code) if code is not None else None,
        "h_full": h_full,
        "h_code": h_code,
        "text": fold(text) if text else None,
    }
    if suffix:
        row["param_suffix"] = suffix
    return "token", row


def identifier_rows(ident: dict[str, Any], suffix: str = "") -> list[Row]:
    value = ident.get("value")
    if not isinstance(value, str):
        return []
    type_: dict[str, Any] = ident["type"] if isinstance(ident.get("type"), dict) else {}
    rows = [_row(ident.get("system"), value, type_.get("text"), suffix)]
    if not suffix:
        for coding in type_.get("coding", []):
            key = f"{coding.get('system') or ''}|{coding.get('code') or ''}|{value}"
            h = hash64(key)
            rows.append(("token", {"system": None, "code": clip(key), "h_full": h, "h_code": h,
                                   "text": None, "param_suffix": ":of-type"}))
    return rows


def _dict_rows(value: dict[str, Any]) -> list[Row]:
    if "coding" in value or ("text" in value and "value" not in value and "code" not in value):
        rows = [_row(c.get("system"), c.get("code"), c.get("display")) for c in value.get("coding", [])]
        text = value.get("text")
        if text:
            rows.append(_row(None, None, text))
        return rows
    if "code" in value and "value" not in value:  # Coding (or Quantity-less code holders)
        return [_row(value.get("system"), value.get("code"), value.get("display"))]
    if "value" in value and not isinstance(value.get("value"), (int, float, Decimal)):
        if value.get("system") in _CONTACT_SYSTEMS or "rank" in value:
            return [_row(None, value.get("value"))]
        return identifier_rows(value)
    return []


def index_rows(nodes: list[Node], impl: SearchParamImpl) -> list[Row]:
    rows: list[Row] = []
    for value, _hint in nodes:
        if isinstance(value, bool):
            rows.append(_row(None, "true" if value else "false"))
        elif isinstance(value, str):
            rows.append(_row(None, value))
        elif isinstance(value, (int, Decimal)):
            rows.append(_row(None, str(value)))
        elif isinstance(value, dict):
            rows.extend(_dict_rows(value))
    return rows


def split_token(text: str) -> tuple[str | None, str | None, bool]:
    """(system, code, system_given): `s|c`, `|c` (system ''), `s|` (code None), `c`."""
    if "|" not in text:
        return None, text, False
    system, code = text.split("|", 1)
    return system, (code or None), True


def value_condition(v: Value) -> tuple[str, Any]:
    """How one token value is looked up: ('full'|'code', hash) or ('system', system)."""
    system, code, given = split_token(v.text)
    if not given:
        return "code", hash64(code or "")
    if code is None:
        return "system", system
    return "full", token_hashes(system, code)[0]


def match_values(values: tuple[Value, ...], h_full: Any, h_code: Any, system_col: Any) -> ColumnElement[bool]:
    full = [h for kind, h in map(value_condition, values) if kind == "full"]
    codes = [h for kind, h in map(value_condition, values) if kind == "code"]
    systems = [s for kind, s in map(value_condition, values) if kind == "system"]
    conds = []
    if full:
        conds.append(h_full == full[0] if len(full) == 1 else h_full.in_(full))
    if codes:
        conds.append(h_code == codes[0] if len(codes) == 1 else h_code.in_(codes))
    if systems:
        if system_col is None:
            raise invalid("A 'system|' value cannot be used here: give a code too")
        conds.append(system_col.in_(systems))
    return any_of(conds)


def _valueset_values(p: Param, ctx: Ctx) -> tuple[Value, ...]:
    out: list[Value] = []
    for v in p.values:
        pairs = ctx.valueset(v.text)
        if pairs is None:
            raise bad_value(p, v, "no ValueSet with this URL on the server (or it cannot be expanded here)")
        out.extend(Value(f"{s}|{c}" if s else c) for s, c in pairs)
    return tuple(out)


def predicate(p: Param, impl: SearchParamImpl, r: Any, ctx: Ctx) -> ColumnElement[bool]:
    t, rt = idx_token, impl.res_type
    match p.modifier:
        case None:
            return in_index(t, r, rt, p.code, match_values(p.values, t.c.h_full, t.c.h_code, t.c.system))
        case "not":
            return in_index(t, r, rt, p.code, match_values(p.values, t.c.h_full, t.c.h_code, t.c.system), True)
        case "text":
            return in_index(t, r, rt, p.code, any_of([starts_with(t.c.text, fold(v.text)) for v in p.values]))
        case "of-type":
            for v in p.values:
                if v.text.count("|") != 2:
                    raise bad_value(p, v, "':of-type' takes system|code|value")
            hashes = [hash64(v.text) for v in p.values]
            return in_index(t, r, rt, p.code + ":of-type", t.c.h_full.in_(hashes))
        case "in" | "not-in":
            values = _valueset_values(p, ctx)
            cond = match_values(values, t.c.h_full, t.c.h_code, t.c.system)
            return in_index(t, r, rt, p.code, cond, negate=p.modifier == "not-in")
        case "missing":
            return missing(t, r, rt, p)
        case "above" | "below":
            raise not_supported(f"':{p.modifier}' on token parameter '{p.code}' needs code system "
                                "hierarchies, which this server does not hold")
        case _:
            raise unsupported_modifier(p, impl)
