"""Token search: codes, Codings, CodeableConcepts, Identifiers, ContactPoints, booleans.

https://hl7.org/fhir/R4/search.html#token

Rows carry `system`, `code`, two hashes and the folded display text. `system|code` and
`|code` look up `h_full`, a bare `code` looks up `h_code`, so an OR-list of codes becomes one
`IN` on a hash column (Medplum #7623, HAPI #8247 show what per-value ORs cost). `:of-type`
rows (Identifier.type + value) and `:identifier` rows of references are stored under the
parameter code suffixed with the modifier.

`:in` / `:not-in` match the members of a ValueSet and `:above` / `:below` a code's ancestors or
descendants, both worked out by the terminology engine over the ValueSets and CodeSystems this
database holds (`search.valuesets`), then matched as one `IN` on the hashes like an OR-list.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, bindparam

from fhir_server.errors import FhirError, invalid, not_supported
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
from fhir_server.search.valuesets import Members
from fhir_server.storage.index_schema import idx_token

__all__ = ["identifier_rows", "index_rows", "match_keys", "match_values", "predicate", "split_token"]

_CONTACT_SYSTEMS = frozenset({"phone", "fax", "email", "pager", "url", "sms", "other"})
# Longer hash lists are written into the SQL: PostgreSQL takes at most 65,535 bound parameters,
# and a ValueSet expansion can list more codes than that. Hashes are integers, so this is safe.
_INLINE_OVER = 1000


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


def _one_of(col: Any, hashes: list[int] | tuple[int, ...]) -> ColumnElement[bool]:
    if len(hashes) == 1:
        return col == hashes[0]  # type: ignore[no-any-return]
    if len(hashes) > _INLINE_OVER:
        listed: Any = bindparam(None, sorted(set(hashes)), expanding=True, literal_execute=True)
        return col.in_(listed)  # type: ignore[no-any-return]
    return col.in_(hashes)  # type: ignore[no-any-return]


def match_keys(keys: Members, h_full: Any, h_code: Any, system_col: Any) -> ColumnElement[bool]:
    conds = []
    if keys.full:
        conds.append(_one_of(h_full, keys.full))
    if keys.codes:
        conds.append(_one_of(h_code, keys.codes))
    if keys.systems:
        if system_col is None:
            raise invalid("A 'system|' value cannot be used here: give a code too")
        conds.append(system_col.in_(keys.systems))
    return any_of(conds)


def match_values(values: tuple[Value, ...], h_full: Any, h_code: Any, system_col: Any) -> ColumnElement[bool]:
    looked_up = [value_condition(v) for v in values]
    keys = Members(
        full=tuple(h for kind, h in looked_up if kind == "full"),
        codes=tuple(h for kind, h in looked_up if kind == "code"),
        systems=tuple(s for kind, s in looked_up if kind == "system"),
    )
    return match_keys(keys, h_full, h_code, system_col)


def _with_param(p: Param, v: Value, exc: FhirError) -> FhirError:
    """The terminology's refusal, saying which search value it is about."""
    code = exc.issues[0].get("code", "invalid") if exc.issues else "invalid"
    return FhirError(400, f"Search parameter '{p.code}:{p.modifier}={v.text}': {exc}", code, p.code)


def _valueset_keys(p: Param, ctx: Ctx) -> Members:
    # Ctx.valueset is the search's StoredTerminology, which remembers the keys of an expansion.
    members = getattr(ctx.valueset, "members", None)
    parts: list[Members] = []
    for v in p.values:
        try:
            found = members(v.text) if members else _plain(ctx.valueset(v.text))
        except FhirError as exc:
            raise _with_param(p, v, exc) from None
        if found is None:
            raise bad_value(p, v, "no ValueSet with this URL on the server")
        parts.append(found)
    return Members.union(parts)


def _plain(pairs: list[tuple[str | None, str]] | None) -> Members | None:
    return None if pairs is None else Members.of(pairs)


def _subsumed_keys(p: Param, ctx: Ctx) -> Members:
    """`:below`: each code and its descendants; `:above`: each code and its ancestors."""
    subsumed = getattr(ctx.valueset, "subsumed", None)
    parts: list[Members] = []
    for v in p.values:
        system, code, _given = split_token(v.text)
        if not system or not code:
            raise bad_value(p, v, f"':{p.modifier}' needs system|code: a code is above or below "
                                  "another only within one code system")
        if subsumed is None:
            raise not_supported(f"':{p.modifier}' on token parameter '{p.code}': no terminology here")
        try:
            parts.append(subsumed(system, code, p.modifier))
        except FhirError as exc:
            raise _with_param(p, v, exc) from None
    return Members.union(parts)


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
            cond = match_keys(_valueset_keys(p, ctx), t.c.h_full, t.c.h_code, t.c.system)
            return in_index(t, r, rt, p.code, cond, negate=p.modifier == "not-in")
        case "missing":
            return missing(t, r, rt, p)
        case "above" | "below":
            cond = match_keys(_subsumed_keys(p, ctx), t.c.h_full, t.c.h_code, t.c.system)
            return in_index(t, r, rt, p.code, cond)
        case _:
            raise unsupported_modifier(p, impl)
