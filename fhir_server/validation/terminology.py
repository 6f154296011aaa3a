"""Terminology over the loaded ValueSets, CodeSystems and ConceptMaps: $expand, $validate-code, $lookup, $translate.

https://hl7.org/fhir/R4/terminology-service.html

Everything is computed from what the `ConformanceRegistry` holds; nothing is fetched. A ValueSet
that draws on a code system we do not hold in full (SNOMED CT, LOINC, UCUM, BCP-47...) cannot be
expanded here: `expand` says so, and `value_set_membership` returns None so that the validator
reports the binding as not checked instead of guessing.
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from fhir_server.errors import invalid, not_found, not_supported

if TYPE_CHECKING:
    from fhir_server.validation.conformance import ConformanceRegistry

__all__ = ["Membership", "expand", "lookup", "translate", "validate_code", "value_set_membership"]

# A ValueSet or CodeSystem registered at run time may be malformed in ways these raise.
_MALFORMED = (TypeError, AttributeError, KeyError, ValueError, re.error)
_MAX_DEPTH = 10  # ValueSet imports nest; a cycle must not loop forever


class _NotLocal(Exception):
    """The value set draws on content this server does not hold."""


@dataclass(slots=True)
class _Concept:
    code: str
    display: str | None
    definition: str | None
    designations: list[dict[str, Any]]
    properties: list[dict[str, Any]]
    parents: list[str] = field(default_factory=list)
    children: list[str] = field(default_factory=list)


@dataclass(slots=True, frozen=True)
class Membership:
    """The codes of an expanded value set, for fast binding checks."""

    pairs: frozenset[tuple[str, str]]
    codes: frozenset[str]

    def contains(self, system: str | None, code: str) -> bool:
        return (system, code) in self.pairs if system else code in self.codes


# -- code systems --------------------------------------------------------------------------------
def _canonical(url: str, version: str | None) -> str:
    return f"{url}|{version}" if version else url


def _index(registry: ConformanceRegistry, cs: dict[str, Any]) -> dict[str, _Concept]:
    def make() -> dict[str, _Concept]:
        found: dict[str, _Concept] = {}

        def walk(concepts: list[dict[str, Any]], parent: str | None) -> None:
            for c in concepts:
                code = c.get("code")
                if not isinstance(code, str):
                    continue
                concept = found.setdefault(
                    code, _Concept(code, c.get("display"), c.get("definition"), c.get("designation") or [],
                                   c.get("property") or []))
                for prop in concept.properties:
                    if prop.get("code") in ("parent", "subsumedBy") and isinstance(prop.get("valueCode"), str):
                        concept.parents.append(prop["valueCode"])
                if parent:
                    concept.parents.append(parent)
                walk(c.get("concept") or [], code)

        walk(cs.get("concept") or [], None)
        for concept in found.values():
            for parent in concept.parents:
                if parent in found:
                    found[parent].children.append(concept.code)
        return found

    key = _canonical(cs.get("url", ""), cs.get("version")) + f"#{id(cs)}"
    return registry.cached("cs-index", key, make)  # type: ignore[no-any-return]


def _descendants(index: dict[str, _Concept], code: str) -> list[str]:
    out: list[str] = []
    stack = list(index[code].children) if code in index else []
    seen: set[str] = set()
    while stack:
        current = stack.pop()
        if current not in seen:
            seen.add(current)
            out.append(current)
            stack.extend(index[current].children if current in index else ())
    return out


def _local_code_system(registry: ConformanceRegistry, system: str, version: str | None) -> dict[str, Any]:
    cs = registry.code_system(_canonical(system, version))
    if cs is None:
        raise _NotLocal(f"code system {system} is not available on this server")
    if cs.get("content", "complete") not in ("complete", "supplement") or not cs.get("concept"):
        raise _NotLocal(f"code system {system} is not held in full on this server")
    return cs


# -- expansion -----------------------------------------------------------------------------------
Entry = dict[str, Any]


def _filter(index: dict[str, _Concept], flt: dict[str, Any]) -> list[str]:
    prop, op, value = flt.get("property"), flt.get("op"), str(flt.get("value", ""))
    if prop in ("concept", "code", None):
        if op == "is-a":
            return [value, *_descendants(index, value)] if value in index else []
        if op == "descendent-of":
            return _descendants(index, value)
        if op == "is-not-a":
            excluded = {value, *_descendants(index, value)}
            return [c for c in index if c not in excluded]
        if op == "generalizes":
            return [c for c in index if c == value or value in _descendants(index, c)]
        if op == "in":
            wanted = {v.strip() for v in value.split(",")}
            return [c for c in index if c in wanted]
        if op == "=":
            return [value] if value in index else []
        if op == "regex":
            return [c for c in index if re.fullmatch(value, c)]
    elif op in ("=", "exists", "regex"):
        return [c.code for c in index.values() if _property_matches(c, prop or "", op, value)]
    raise _NotLocal(f"filter {prop} {op} is not supported")


def _property_matches(concept: _Concept, prop: str, op: str, value: str) -> bool:
    if prop == "display":
        values = [concept.display or ""]
    else:
        values = [str(next((v for k, v in p.items() if k.startswith("value")), "")) for p in concept.properties
                  if p.get("code") == prop]
    if op == "exists":
        return bool(values) == (value.lower() == "true")
    if op == "regex":
        return any(re.fullmatch(value, v) for v in values)
    return value in values


def _include(registry: ConformanceRegistry, inc: dict[str, Any], depth: int) -> list[Entry]:
    sets: list[list[Entry]] = [
        _codes(registry, _value_set(registry, url), depth + 1) for url in inc.get("valueSet") or []
    ]
    system = inc.get("system")
    if system:
        version = inc.get("version")
        if inc.get("concept"):
            cs = registry.code_system(_canonical(system, version))
            index = _index(registry, cs) if cs else {}
            entries = []
            for c in inc["concept"]:
                known = index.get(c.get("code", ""))
                display = c.get("display") or (known.display if known else None)
                entries.append(_entry(system, version, c.get("code", ""), display))
        else:
            cs = _local_code_system(registry, system, version)
            index = _index(registry, cs)
            codes: list[str] = list(index)
            for flt in inc.get("filter") or []:
                allowed = set(_filter(index, flt))
                codes = [c for c in codes if c in allowed]
            entries = [_entry(system, cs.get("version"), c, index[c].display) for c in codes]
        sets.append(entries)
    if not sets:
        return []
    result = sets[-1]
    for other in sets[:-1]:
        keys = {(e["system"], e["code"]) for e in other}
        result = [e for e in result if (e["system"], e["code"]) in keys]
    return result


def _entry(system: str, version: str | None, code: str, display: str | None) -> Entry:
    entry: Entry = {"system": system, "code": code}
    if version:
        entry["version"] = version
    if display:
        entry["display"] = display
    return entry


def _value_set(registry: ConformanceRegistry, url: str) -> dict[str, Any]:
    vs = registry.value_set(url)
    if vs is None:
        raise _NotLocal(f"value set {url} is not available on this server")
    return vs


def _codes(registry: ConformanceRegistry, vs: dict[str, Any], depth: int = 0) -> list[Entry]:
    if depth > _MAX_DEPTH:
        raise _NotLocal("value set imports nest too deeply (cycle?)")
    compose = vs.get("compose")
    if not compose:
        if "expansion" in vs:
            return _flatten(vs["expansion"].get("contains") or [])
        raise _NotLocal(f"value set {vs.get('url')} has neither compose nor expansion")
    entries: dict[tuple[str, str], Entry] = {}
    for inc in compose.get("include") or []:
        for e in _include(registry, inc, depth):
            entries.setdefault((e["system"], e["code"]), e)
    for exc in compose.get("exclude") or []:
        for e in _include(registry, exc, depth):
            entries.pop((e["system"], e["code"]), None)
    return list(entries.values())


def _flatten(contains: list[dict[str, Any]]) -> list[Entry]:
    out: list[Entry] = []
    for c in contains:
        if c.get("code") and not c.get("abstract"):
            out.append({k: c[k] for k in ("system", "version", "code", "display") if k in c})
        out.extend(_flatten(c.get("contains") or []))
    return out


def _cached_codes(registry: ConformanceRegistry, canonical: str) -> list[Entry] | None:
    def make() -> list[Entry] | None:
        vs = registry.value_set(canonical)
        if vs is None:
            return None
        try:
            return _codes(registry, vs)
        except (_NotLocal, *_MALFORMED):
            return None

    return registry.cached("vs-codes", canonical, make)  # type: ignore[no-any-return]


def value_set_membership(registry: ConformanceRegistry, canonical: str) -> Membership | None:
    """The codes of a value set, or None when it cannot be expanded from local content."""

    def make() -> Membership | None:
        entries = _cached_codes(registry, canonical)
        if entries is None:
            return None
        return Membership(frozenset((e["system"], e["code"]) for e in entries), frozenset(e["code"] for e in entries))

    return registry.cached("vs-membership", canonical, make)  # type: ignore[no-any-return]


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()


def _resolve(registry: ConformanceRegistry, valueset: dict[str, Any] | str) -> dict[str, Any]:
    if isinstance(valueset, dict):
        return valueset
    vs = registry.value_set(valueset)
    if vs is None:
        raise not_found(f"ValueSet {valueset} is not known")
    return vs


def _entries(registry: ConformanceRegistry, vs: dict[str, Any]) -> list[Entry]:
    try:
        if vs.get("url") and registry.value_set(vs["url"]) is vs:
            found = _cached_codes(registry, vs["url"] + (f"|{vs['version']}" if vs.get("version") else ""))
            if found is not None:
                return found
        return _codes(registry, vs)
    except _NotLocal as exc:
        raise not_supported(f"ValueSet {vs.get('url', '(inline)')} cannot be expanded here: {exc}") from None
    except _MALFORMED as exc:
        raise invalid(f"ValueSet {vs.get('url', '(inline)')} is malformed ({type(exc).__name__}: {exc})") from None


def expand(
    registry: ConformanceRegistry,
    valueset: dict[str, Any] | str,
    filter: str | None = None,  # noqa: A002 - the FHIR parameter name
    count: int | None = None,
    offset: int = 0,
) -> dict[str, Any]:
    """ValueSet/$expand: the value set with an `expansion` (text filter on display and code)."""
    if (count is not None and count < 0) or offset < 0:
        raise invalid("count and offset must not be negative")
    vs = _resolve(registry, valueset)
    entries = _entries(registry, vs)
    if filter:
        wanted = _fold(filter)
        entries = [e for e in entries if wanted in _fold(e.get("display", "")) or wanted in _fold(e["code"])]
    page = entries[offset : None if count is None else offset + count]
    parameters: list[dict[str, Any]] = [{"name": "offset", "valueInteger": offset}]
    if filter:
        parameters.append({"name": "filter", "valueString": filter})
    if count is not None:
        parameters.append({"name": "count", "valueInteger": count})
    result = {k: v for k, v in vs.items() if k not in ("compose", "expansion", "text")}
    result["resourceType"] = "ValueSet"
    result["expansion"] = {
        "identifier": f"urn:uuid:{uuid.uuid4()}",
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "total": len(entries),
        "offset": offset,
        "parameter": parameters,
        "contains": [dict(e) for e in page],
    }
    return result


def _parameters(*parts: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": list(parts)}


def validate_code(
    registry: ConformanceRegistry,
    valueset: dict[str, Any] | str | None,
    code: str | None,
    system: str | None = None,
    display: str | None = None,
) -> dict[str, Any]:
    """ValueSet/$validate-code (or CodeSystem/$validate-code when `valueset` is None)."""
    if not code:
        raise invalid("A code is required")
    if valueset is None:
        if not system:
            raise invalid("A value set or a code system is required")
        cs = registry.code_system(system)
        if cs is None:
            raise not_found(f"CodeSystem {system} is not known")
        concept = _index(registry, cs).get(code)
        entries = [_entry(system, None, code, concept.display)] if concept else []
        where = f"code system {system}"
    else:
        vs = _resolve(registry, valueset)
        entries = _entries(registry, vs)
        where = f"value set {vs.get('url', '(inline)')}"
    match = next((e for e in entries if e["code"] == code and (not system or e["system"] == system)), None)
    shown = f"{system}#{code}" if system else code
    if match is None:
        return _parameters({"name": "result", "valueBoolean": False},
                           {"name": "message", "valueString": f"The code {shown} is not in the {where}"})
    expected = match.get("display")
    out = [{"name": "result", "valueBoolean": True}]
    if display and expected and _fold(display) != _fold(expected):
        out = [{"name": "result", "valueBoolean": False},
               {"name": "message", "valueString": f"The display '{display}' is not valid for {shown}: "
                                                  f"expected '{expected}'"}]
    if expected:
        out.append({"name": "display", "valueString": expected})
    return _parameters(*out)


def lookup(registry: ConformanceRegistry, system: str | None, code: str | None,
           version: str | None = None) -> dict[str, Any]:
    """CodeSystem/$lookup: name, version, display, designations and properties of a code."""
    if not system or not code:
        raise invalid("Both system and code are required")
    cs = registry.code_system(_canonical(system, version))
    if cs is None:
        raise not_found(f"CodeSystem {_canonical(system, version)} is not known")
    concept = _index(registry, cs).get(code)
    if concept is None:
        raise not_found(f"Code {code} is not in the code system {system}")
    parts: list[dict[str, Any]] = [{"name": "name", "valueString": cs.get("title") or cs.get("name") or system}]
    if cs.get("version"):
        parts.append({"name": "version", "valueString": cs["version"]})
    if concept.display:
        parts.append({"name": "display", "valueString": concept.display})
    if concept.definition:
        parts.append({"name": "definition", "valueString": concept.definition})
    for d in concept.designations:
        sub = [{"name": "value", "valueString": d.get("value", "")}]
        if d.get("language"):
            sub.insert(0, {"name": "language", "valueCode": d["language"]})
        if d.get("use"):
            sub.insert(0, {"name": "use", "valueCoding": d["use"]})
        parts.append({"name": "designation", "part": sub})
    for p in concept.properties:
        value = next(({"name": "value", k: v} for k, v in p.items() if k.startswith("value")), None)
        parts.append({"name": "property", "part": [{"name": "code", "valueCode": p.get("code")},
                                                   *([value] if value else [])]})
    for kind, codes in (("parent", concept.parents), ("child", concept.children)):
        for c in codes:
            parts.append({"name": "property", "part": [{"name": "code", "valueCode": kind},
                                                       {"name": "value", "valueCode": c}]})
    return _parameters(*parts)


def translate(
    registry: ConformanceRegistry,
    url: str | None,
    system: str | None,
    code: str | None,
    source: str | None = None,
    target: str | None = None,
) -> dict[str, Any]:
    """ConceptMap/$translate: the mappings of one code, by ConceptMap url or source/target value sets."""
    if not code:
        raise invalid("A code is required")
    if url:
        found = registry.concept_map(url)
        if found is None:
            raise not_found(f"ConceptMap {url} is not known")
        maps = [found]
    else:
        maps = [cm for cm in registry.all("ConceptMap")
                if (source is None or source in (cm.get("sourceUri"), cm.get("sourceCanonical")))
                and (target is None or target in (cm.get("targetUri"), cm.get("targetCanonical")))]
        if not maps:
            raise not_found("No ConceptMap matches the given source and target")
    matches = [m for cm in maps for m in _map_code(cm, system, code)]
    result = any(m["equivalence"] not in ("unmatched", "disjoint") for m in matches)
    out: list[dict[str, Any]] = [{"name": "result", "valueBoolean": result}]
    if not result:
        out.append({"name": "message", "valueString": f"No mapping found for {system or ''}#{code}"})
    for m in matches:
        part = [{"name": "equivalence", "valueCode": m["equivalence"]}]
        if m.get("coding"):
            part.append({"name": "concept", "valueCoding": m["coding"]})
        part.append({"name": "source", "valueUri": m["source"]})
        out.append({"name": "match", "part": part})
    return _parameters(*out)


def _map_code(cm: dict[str, Any], system: str | None, code: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for group in cm.get("group") or []:
        if system and group.get("source") and group["source"] != system:
            continue
        hits = [t for el in group.get("element") or [] if el.get("code") == code for t in el.get("target") or []]
        for t in hits:
            coding = {k: v for k, v in (("system", group.get("target")), ("code", t.get("code")),
                                        ("display", t.get("display"))) if v}
            found.append({"equivalence": t.get("equivalence", "equivalent"),
                          "coding": coding if t.get("code") else None, "source": cm.get("url")})
        unmapped = group.get("unmapped") or {}
        if not hits and unmapped.get("mode") in ("fixed", "provided"):
            target_code = unmapped.get("code") if unmapped["mode"] == "fixed" else code
            coding = {k: v for k, v in (("system", group.get("target")), ("code", target_code),
                                        ("display", unmapped.get("display"))) if v}
            found.append({"equivalence": "inexact", "coding": coding, "source": cm.get("url")})
    return found
