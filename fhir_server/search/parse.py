"""Query string -> `Query`: parameters, modifiers, prefixes, chains, `_has` and result controls.

https://hl7.org/fhir/R4/search.html

Comma-separated values are alternatives (one `Param` with several values); a repeated
parameter is a conjunction (several `Param`s under `And`). Under `handling=strict` an unknown
parameter or modifier is a 400; under `lenient` it is skipped and listed in `Query.ignored`,
which the Bundle reports. Malformed values are a 400 in both modes: a value the client meant
but that cannot be understood must not silently widen the result.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from fhir_server.errors import invalid
from fhir_server.search.ast import Chain, Has, Include, Node, Or, Param, Query, SortKey, TypeSwitch, Value, conj
from fhir_server.search.registry import ANY_TYPE, CONTROL, Registry, SearchParamImpl, resource_types

__all__ = ["Limits", "parse_query", "split_prefix", "split_values"]

PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
_PREFIXED = frozenset({"number", "date", "quantity", "lastUpdated"})
_MODIFIERS = {
    "token": {"missing", "not", "text", "of-type", "in", "not-in", "above", "below"},
    "string": {"missing", "exact", "contains"},
    "uri": {"missing", "above", "below"},
    "reference": {"missing", "identifier"},
    "date": {"missing"},
    "number": {"missing"},
    "quantity": {"missing"},
    "composite": {"missing"},
    "near": {"missing"},
    "id": {"not", "missing"},
    "lastUpdated": {"missing"},
    "fulltext": set(),
}
_SUMMARY = {"true", "false", "text", "data", "count"}
_TOTAL = {"none", "estimate", "accurate"}
_TOTAL_METHOD = {"count": "accurate", "estimate": "estimate", "ignore": "none"}
_UNESCAPED_COMMA = re.compile(r"(?<!\\),")
_RESOURCE_LEVEL = ("http://hl7.org/fhir/SearchParameter/Resource-", "http://hl7.org/fhir/SearchParameter/DomainResource-")


@dataclass(frozen=True)
class Limits:
    default_count: int = 20
    max_count: int = 1000


class _Ignored(Exception):
    """A parameter lenient mode skips (unknown name or modifier)."""


def split_values(raw: str) -> list[str]:
    return [v.replace("\\,", ",") for v in _UNESCAPED_COMMA.split(raw)]


def split_prefix(text: str) -> tuple[str | None, str]:
    if len(text) > 2 and text[:2] in PREFIXES and (text[2].isdigit() or text[2] in "-+."):
        return text[:2], text[2:]
    return None, text


def _impl(reg: Registry, res_type: str, code: str) -> SearchParamImpl:
    impl = reg.get(res_type, code)
    if res_type == ANY_TYPE and impl is not None and not impl.url.startswith(_RESOURCE_LEVEL):
        impl = None
    if impl is None:
        raise _Ignored(f"Unknown search parameter '{code}' for resource type {res_type}")
    if impl.strategy == "unsupported":
        raise _Ignored(f"Search parameter '{code}' of type {impl.type} is not supported on {res_type}")
    if impl.status != "active":
        raise invalid(
            f"Search parameter '{code}' on {res_type} is not indexed yet (status {impl.status}): "
            "run $reindex and wait for it to finish",
            code="not-supported",
        )
    return impl


def _param(reg: Registry, res_type: str, name: str, raw: str) -> Node:
    """One `name=value` on `res_type`, where `name` may carry a modifier or a chain."""
    if name.startswith("_has:"):
        return _has(reg, res_type, name, raw)
    if name == "_list":  # the resources a List names in its entries: `_has:List:item:_id`
        if any(v.startswith("$") for v in split_values(raw)):
            raise _Ignored(f"Functional list '{raw}' is not supported: name a List by its id")
        return Has("List", "item", _param(reg, "List", "_id", raw))
    head, dot, rest = name.partition(".")
    code, _, modifier = head.partition(":")
    impl = _impl(reg, res_type, code)
    if dot:
        return _chain(reg, impl, modifier or None, rest, raw)
    mod = modifier or None
    allowed = _MODIFIERS.get(impl.strategy, set())
    if mod is not None and mod not in allowed and not (impl.strategy == "reference" and mod in resource_types()):
        raise _Ignored(f"Modifier ':{mod}' is not supported on {impl.type} parameter '{code}'")
    texts = split_values(raw)
    if mod == "missing" or impl.strategy not in _PREFIXED:
        values = tuple(Value(t) for t in texts)
    else:
        values = tuple(Value(t, p) for p, t in map(split_prefix, texts))
    if any(not v.text for v in values):
        raise invalid(f"Empty value for search parameter '{name}'", expression=name)
    return Param(impl.strategy, code, values, mod)


def _chain(reg: Registry, impl: SearchParamImpl, target: str | None, rest: str, raw: str) -> Node:
    if impl.strategy != "reference":
        raise invalid(f"'{impl.code}' is not a reference parameter and cannot be chained", expression=impl.code)
    inner_code = rest.partition(".")[0].partition(":")[0]
    targets = [target] if target else [t for t in impl.targets if reg.get(t, inner_code) is not None]
    if not targets:
        raise _Ignored(f"No target of '{impl.code}' has a search parameter '{inner_code}'")
    chains = [Chain(impl.code, t, _param(reg, t, rest, raw)) for t in targets]
    return chains[0] if len(chains) == 1 else Or(tuple(chains))


def _has(reg: Registry, res_type: str, name: str, raw: str) -> Node:
    parts = name.split(":", 3)
    if len(parts) != 4 or not parts[3]:
        raise invalid(f"'{name}': expected _has:Type:reference:parameter", expression=name)
    _, source, ref_code, rest = parts
    if source not in resource_types():
        raise invalid(f"'{name}': unknown resource type {source}", expression=name)
    ref = _impl(reg, source, ref_code)
    if ref.strategy != "reference":
        raise invalid(f"'{name}': '{ref_code}' is not a reference parameter of {source}", expression=name)
    return Has(source, ref_code, _param(reg, source, rest, raw))


def _include(reg: Registry, name: str, raw: str, types: tuple[str, ...]) -> Include:
    reverse = name.startswith("_revinclude")
    iterate = name.endswith((":iterate", ":recurse"))
    if raw == "*":
        # Every reference parameter of every type: `_revinclude=*` is not limited to the searched type.
        return Include("*", "*", None, reverse, iterate)
    parts = raw.split(":")
    if len(parts) not in (2, 3) or parts[0] not in resource_types():
        raise invalid(f"{name}={raw}: expected Type:parameter[:targetType]", expression=name)
    source, code = parts[0], parts[1]
    if code != "*":
        impl = reg.get(source, code)
        if impl is None or impl.strategy != "reference":
            raise invalid(f"{name}={raw}: {source} has no reference parameter '{code}'", expression=name)
    target = parts[2] if len(parts) == 3 else None
    return Include(source, code, target, reverse, iterate)


def _sort(reg: Registry, raw: str, types: tuple[str, ...]) -> tuple[SortKey, ...]:
    keys = []
    for item in split_values(raw):
        desc = item.startswith("-")
        code = item[1:] if desc else item
        for t in types:
            if reg.get(t, code) is None:
                raise _Ignored(f"Cannot sort on unknown parameter '{code}' of {t}")
        keys.append(SortKey(code, desc))
    return tuple(keys)


def _count(raw: str, limits: Limits) -> int:
    if not raw.isdigit():
        raise invalid(f"_count must be a non-negative integer, not {raw!r}", expression="_count")
    return min(int(raw), limits.max_count)


def _choice(name: str, raw: str, allowed: set[str]) -> str:
    if raw not in allowed:
        raise invalid(f"{name} must be one of {', '.join(sorted(allowed))}, not {raw!r}", expression=name)
    return raw


def parse_query(
    reg: Registry,
    types: tuple[str, ...],
    params: list[tuple[str, str]],
    strict: bool = True,
    limits: Limits | None = None,
) -> Query:
    """Parse `params` for a search over `types` (one type, or several for a system search)."""
    limits = limits or Limits()
    fields: dict[str, object] = {"count": limits.default_count}
    includes: list[Include] = []
    nodes: list[Node] = []
    ignored: list[str] = []
    echo: list[tuple[str, str]] = []
    for name, raw in params:
        try:
            if _control(reg, name, raw, types, limits, fields, includes):
                if name not in ("_cursor", "_format", "_pretty"):
                    echo.append((name, raw))
                continue
            if not types:
                node: Node = _param(reg, ANY_TYPE, name, raw)
            elif len(types) > 1:
                node = TypeSwitch(tuple((t, _param(reg, t, name, raw)) for t in types))
            else:
                node = _param(reg, types[0], name, raw)
            nodes.append(node)
            echo.append((name, raw))
        except _Ignored as exc:
            if strict:
                raise invalid(str(exc), expression=name) from None
            ignored.append(str(exc))
    return Query(
        types=types, where=conj(*nodes), includes=tuple(includes), ignored=tuple(ignored),
        echo=tuple(echo), **fields,  # type: ignore[arg-type]
    )


def _control(
    reg: Registry, name: str, raw: str, types: tuple[str, ...], limits: Limits,
    fields: dict[str, object], includes: list[Include],
) -> bool:
    base = name.split(":", 1)[0]
    if base not in CONTROL or base == "_has":
        return False
    match base:
        case "_count":
            fields["count"] = _count(raw, limits)
        case "_sort":
            fields["sort"] = _sort(reg, raw, types)
        case "_include" | "_revinclude":
            includes.extend(_include(reg, name, v, types) for v in split_values(raw))
        case "_summary":
            fields["summary"] = _choice("_summary", raw, _SUMMARY)
        case "_elements":
            fields["elements"] = tuple(e.strip() for e in raw.split(",") if e.strip())
        case "_total":
            fields["total"] = _choice("_total", raw, _TOTAL)
        case "_totalMethod":
            # Aidbox's spelling, which fhirpy's `count()` sends: count|estimate|ignore
            fields.setdefault("total", _TOTAL_METHOD[_choice("_totalMethod", raw, set(_TOTAL_METHOD))])
        case "_cursor":
            fields["cursor"] = raw
        case "_explain":
            fields["explain"] = raw.lower() in ("true", "1", "")
        case "_format" | "_pretty" | "_type":
            pass
        case _:
            raise _Ignored(f"Search control '{name}' is not supported")
    return True
