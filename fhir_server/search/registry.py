"""Search parameter registry: each (resource type, code) resolved once into a `SearchParamImpl`.

https://hl7.org/fhir/R4/searchparameter.html

The R4 definitions are unions over several bases (`Patient.name | Practitioner.name`); each is
split per base here, so a parameter's expression only ever names its own type and extraction
never evaluates the other members. The strategy (which index table, or which resource column)
is decided here once and compile code dispatches on it (Medplum's `SearchStrategies`).
Custom SearchParameters join the registry with status `pending` until `$reindex` has indexed
every existing resource; searching on a pending parameter is an error, never a partial answer.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field, replace
from functools import lru_cache
from importlib import resources
from typing import Any

from fhir_server.errors import invalid
from fhir_server.indexing.extract import split_union

__all__ = ["ANY_TYPE", "COMPONENT_TYPES", "Registry", "SearchParamImpl", "registry", "resource_types"]

# Pseudo type of a system search without _type: only Resource-level parameters apply.
ANY_TYPE = "*"

# Parameters the parser treats itself: never looked up as search parameters.
CONTROL = frozenset(
    {"_sort", "_count", "_include", "_revinclude", "_summary", "_elements", "_total", "_totalMethod", "_contained",
     "_containedType", "_format", "_pretty", "_cursor", "_explain", "_type", "_has", "_query"}
)
_STRATEGY = {
    "token": "token", "string": "string", "date": "date", "number": "number", "quantity": "quantity",
    "reference": "reference", "uri": "uri", "composite": "composite",
}
_SPECIAL = {"_id": "id", "_lastUpdated": "lastUpdated", "_text": "fulltext", "_content": "fulltext"}
_INDEXED = frozenset({*_STRATEGY.values(), "near"})
# Component types a composite can combine (every type the R4 composites use, and uri).
COMPONENT_TYPES = frozenset({"token", "reference", "string", "uri", "number", "quantity", "date"})
# R4's DocumentReference `relationship` gives each component the other's expression (the
# reference `relatesto` reads `code`, the token `relation` reads `target`); R5 swapped them
# back. Searched as published it could never match, so the components read their own elements.
_COMPONENT_ERRATA = {  # url -> (expressions as published, expressions used)
    "http://hl7.org/fhir/SearchParameter/DocumentReference-relationship": (("code", "target"), ("target", "code")),
}


@dataclass(frozen=True, slots=True)
class Component:
    type: str
    expression: str


@dataclass(frozen=True, slots=True)
class SearchParamImpl:
    """One search parameter as it applies to one resource type."""

    res_type: str
    code: str
    type: str  # the SearchParameter.type
    strategy: str  # token | string | date | number | quantity | reference | uri | composite | near
    # | id | lastUpdated | fulltext | unsupported
    expressions: tuple[str, ...]
    url: str
    description: str = ""
    targets: tuple[str, ...] = ()
    components: tuple[Component, ...] = ()
    status: str = "active"  # active | pending (custom parameter not yet reindexed)
    custom: bool = False

    @property
    def indexed(self) -> bool:
        return self.strategy in _INDEXED


def _root(part: str) -> str:
    return part.strip().lstrip("(").split(".", 1)[0].split(" ", 1)[0].strip(")")


def _for_base(expression: str | None, base: str) -> tuple[str, ...]:
    """The members of the union that apply to `base`, each starting with a type name.

    A member starting with a function or an element (`extension('...').value as Address`, as
    CDS's `birthplace` is written) is evaluated on the resource itself: it applies to every
    base and is written `Base.member` like the others.
    """
    if not expression:
        return ()
    out = []
    for part in split_union(expression):
        root = _root(part)
        if root in (base, "Resource", "DomainResource"):
            out.append(part)
        elif root[:1].islower():
            out.append(f"{base}.{part.strip()}" if base != ANY_TYPE else part.strip())
    return tuple(out)


def _errata(url: str, comps: tuple[Component, ...]) -> tuple[Component, ...]:
    published, fixed = _COMPONENT_ERRATA.get(url, ((), ()))
    if tuple(c.expression for c in comps) != published:
        return comps  # not the published definition (a corrected custom one, say)
    return tuple(replace(c, expression=e) for c, e in zip(comps, fixed, strict=True))


@lru_cache(maxsize=1)
def resource_types() -> tuple[str, ...]:
    data = resources.files("fhir_server.definitions").joinpath("r4/resource-types.json").read_bytes()
    return tuple(json.loads(data))


def _definitions() -> list[dict[str, Any]]:
    try:
        from fhir_server.definitions import search_parameters

        return list(search_parameters())
    except (ImportError, AttributeError):
        data = resources.files("fhir_server.definitions").joinpath("r4/search-parameters.json").read_bytes()
        return list(json.loads(data))


@dataclass
class Registry:
    """Mutable only through `add`, which swaps in new immutable impls under a lock."""

    _by_type: dict[str, dict[str, SearchParamImpl]] = field(default_factory=dict)
    _by_url: dict[str, dict[str, Any]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    # Bumped on every change, so what was compiled against an older state is not reused.
    generation: int = 0

    @classmethod
    def from_definitions(cls, definitions: list[dict[str, Any]]) -> Registry:
        reg = cls()
        reg._by_url = {d["url"]: d for d in definitions if "url" in d}
        for d in definitions:
            for impl in reg._impls(d):
                reg._by_type.setdefault(impl.res_type, {}).setdefault(impl.code, impl)
        return reg

    def _bases(self, d: dict[str, Any]) -> list[str]:
        out: list[str] = []
        for base in d.get("base", []):
            if base == "Resource":
                out.extend((*resource_types(), ANY_TYPE))
            elif base == "DomainResource":
                out.extend(t for t in resource_types() if t not in ("Bundle", "Binary", "Parameters"))
                out.append(ANY_TYPE)
            else:
                out.append(base)
        return out

    def _impls(self, d: dict[str, Any], status: str = "active", custom: bool = False) -> list[SearchParamImpl]:
        code, type_ = d["code"], d["type"]
        strategy = _SPECIAL.get(code) or _STRATEGY.get(type_, "unsupported")
        if type_ == "special" and code == "near":
            strategy = "near"  # Location.position; other special parameters have no index
        comps = _errata(d.get("url", ""), tuple(self._component(c) for c in d.get("component", [])))
        if strategy == "composite" and (len(comps) < 2 or any(c.type not in COMPONENT_TYPES for c in comps)):
            strategy = "unsupported"
        out = []
        for base in self._bases(d):
            exprs = _for_base(d.get("expression"), base)
            if strategy in _INDEXED and not exprs:
                continue
            out.append(
                SearchParamImpl(
                    res_type=base, code=code, type=type_, strategy=strategy, expressions=exprs,
                    url=d.get("url", ""), description=d.get("description", ""),
                    targets=tuple(d.get("target", ())), components=comps, status=status, custom=custom,
                )
            )
        return out

    def _component(self, c: dict[str, Any]) -> Component:
        ref = self._by_url.get(c.get("definition", ""))
        return Component(ref["type"] if ref else "unknown", c.get("expression", ""))

    # -- lookups ---------------------------------------------------------------------------
    def get(self, res_type: str, code: str) -> SearchParamImpl | None:
        return self._by_type.get(res_type, {}).get(code)

    def require(self, res_type: str, code: str) -> SearchParamImpl:
        impl = self.get(res_type, code)
        if impl is None:
            raise invalid(f"Unknown search parameter '{code}' for resource type {res_type}", expression=code)
        return impl

    def params(self, res_type: str) -> list[SearchParamImpl]:
        return sorted(self._by_type.get(res_type, {}).values(), key=lambda i: i.code)

    def indexed_params(self, res_type: str) -> list[SearchParamImpl]:
        return [i for i in self._by_type.get(res_type, {}).values() if i.indexed]

    def types(self) -> list[str]:
        return sorted(t for t in self._by_type if t != ANY_TYPE)

    # -- custom parameters -----------------------------------------------------------------
    def preview(self, definition: dict[str, Any]) -> list[SearchParamImpl]:
        """The impls `add` would register for `definition`, without registering anything."""
        return self._impls(definition, status="pending", custom=True)

    def add(self, definition: dict[str, Any], status: str = "pending") -> list[SearchParamImpl]:
        """Register (or replace) a SearchParameter resource; returns the impls it created."""
        with self._lock:
            self._by_url[definition.get("url", "")] = definition
            impls = self._impls(definition, status=status, custom=True)
            for impl in impls:
                current = dict(self._by_type.get(impl.res_type, {}))
                current[impl.code] = impl
                self._by_type[impl.res_type] = current
            self.generation += 1
            return impls

    def set_status(self, res_type: str, code: str, status: str) -> None:
        with self._lock:
            impl = self.get(res_type, code)
            if impl is not None:
                current = dict(self._by_type[res_type])
                current[code] = replace(impl, status=status)
                self._by_type[res_type] = current
                self.generation += 1


# Parameters this server defines beside R4's (the access policy reads their index rows).
SERVER_PARAMETERS: tuple[dict[str, Any], ...] = (
    {
        "resourceType": "SearchParameter",
        "id": "Consent-deny-actor",
        "url": "https://fhir.coordination-sante.fr/SearchParameter/Consent-deny-actor",
        "name": "deny-actor",
        "status": "active",
        "description": "Actors named by a deny provision of the Consent (top level or nested once): "
        "the access policy hides the patient's data from them",
        "code": "deny-actor",
        "base": ["Consent"],
        "type": "reference",
        "expression": "Consent.provision.where(type='deny').actor.reference"
        " | Consent.provision.provision.where(type='deny').actor.reference",
        "target": ["Practitioner", "PractitionerRole", "Organization", "CareTeam", "RelatedPerson", "Group"],
    },
)


@lru_cache(maxsize=1)
def registry() -> Registry:
    """The process-wide registry built from the vendored R4 definitions and `SERVER_PARAMETERS`."""
    return Registry.from_definitions([*_definitions(), *SERVER_PARAMETERS])
