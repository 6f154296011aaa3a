"""Terminology for token search: ValueSet members for `:in` / `:not-in`, code hierarchies for `:above` / `:below`.

https://hl7.org/fhir/R4/search.html#token

Expanding is the terminology engine's job (`fhir_server.validation.terminology`: filters, imports,
excludes, versioned canonicals). Here it runs over `StoredTerminology`, a read-only registry whose
ValueSets and CodeSystems are the ones current in this database, falling back to the vendored R4
definitions. Reading the database rather than the process's `ConformanceRegistry` means a
ValueSet or CodeSystem created, updated or deleted through the API is seen by the very next
search, on every node behind the same database.

A whole-system include (`system` with no concept or filter) is matched as `system|` instead of
being expanded: that also works for code systems the server does not hold (SNOMED CT, LOINC...).
When the server holds that code system in full and it is small, its codes are listed as well, so
elements of type `code` (indexed without a system) match too. Anything else that draws on a
system the server does not hold cannot be expanded, and the search is refused (400) rather than
matched partially.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal, cast

from sqlalchemy import Connection, Engine, false, select

from fhir_server.errors import FhirError, invalid, not_supported
from fhir_server.fhir.json import loads
from fhir_server.indexing.normalize import token_hashes
from fhir_server.storage.index_schema import idx_uri
from fhir_server.storage.schema import resource
from fhir_server.validation import terminology
from fhir_server.validation.conformance import ConformanceRegistry

__all__ = ["Members", "StoredTerminology", "resolver"]

Pairs = list[tuple[str | None, str]]
_MAX_DEPTH = 10  # ValueSet imports nest; a cycle must not loop forever
# Per database: bytes of JSON kept parsed (a large CodeSystem is several MB), and hash keys of
# expansions and hierarchies kept (about 36 bytes each).
_PARSED_BUDGET = 16_000_000
_RESULTS_BUDGET = 1_000_000
Trace = tuple[tuple[tuple[str, str], tuple[tuple[int, int], ...]], ...]  # (kind, url) -> its (rid, version)s


@dataclass(frozen=True, slots=True)
class Members:
    """A set of codes as token search looks them up: `h_full` and `h_code` hashes, whole systems.

    A code with a system is keyed as `system|code` and as `|code`: an element of type `code`
    (status, gender...) is indexed without the system its binding implies.
    """

    full: tuple[int, ...] = ()
    codes: tuple[int, ...] = ()
    systems: tuple[str, ...] = ()

    @classmethod
    def of(cls, pairs: Iterable[tuple[str | None, str]]) -> Members:
        full: set[int] = set()
        codes: set[int] = set()
        systems: set[str] = set()
        for system, code in pairs:
            if not system:
                codes.add(_hash(None, code, 1))
            elif not code:
                systems.add(system)  # a whole code system, matched as `system|`
            else:
                full.update((_hash(system, code, 0), _hash(None, code, 0)))
        return cls(tuple(sorted(full)), tuple(sorted(codes)), tuple(sorted(systems)))

    @classmethod
    def union(cls, parts: list[Members]) -> Members:
        if len(parts) == 1:
            return parts[0]
        return cls(*(tuple(sorted({k for m in parts for k in getattr(m, f)})) for f in ("full", "codes", "systems")))


@cache
def _vendored() -> ConformanceRegistry:
    from fhir_server import definitions

    return ConformanceRegistry(None, base=definitions.value_sets_and_code_systems())


def _hash(system: str | None, code: str, which: int) -> int:
    """The index's `h_full` (0) or `h_code` (1) of a code: never None when there is a code."""
    return cast(int, token_hashes(system, code)[which])


class _PerEngine:
    """An LRU per engine, bounded by the total weight of its entries (the newest always stays).
    Weak keys drop an engine's entries with it: the ids and URLs of test engines are reused,
    so neither can key a process-wide cache."""

    def __init__(self, budget: int) -> None:
        self._budget = budget
        self._lock = threading.Lock()
        self._by_engine: weakref.WeakKeyDictionary[Engine, OrderedDict[Any, tuple[Any, int]]] = (
            weakref.WeakKeyDictionary()
        )

    def get(self, engine: Engine, key: Any) -> Any | None:
        with self._lock:
            entries = self._by_engine.get(engine)
            if entries is None or key not in entries:
                return None
            entries.move_to_end(key)
            return entries[key][0]

    def put(self, engine: Engine, key: Any, value: Any, weight: int) -> None:
        with self._lock:
            entries = self._by_engine.setdefault(engine, OrderedDict())
            entries[key] = (value, weight)
            entries.move_to_end(key)
            total = sum(w for _v, w in entries.values())
            while total > self._budget and len(entries) > 1:
                total -= entries.popitem(last=False)[1][1]


class _Body:
    """One stored resource, parsed, with what the engine derived from it (its concept index)."""

    __slots__ = ("derived", "resource")

    def __init__(self, resource: dict[str, Any]) -> None:
        self.resource = resource
        self.derived: dict[tuple[str, str], Any] = {}


# Parsed bodies by (rid, version), which never name two contents: parsing a large CodeSystem
# on every search would cost more than the search.
_PARSED = _PerEngine(_PARSED_BUDGET)
# Results by question, with the (rid, version)s of every ValueSet/CodeSystem url they read:
# reused while the database still holds exactly those versions.
_RESULTS = _PerEngine(_RESULTS_BUDGET)


class StoredTerminology:
    """The registry interface the terminology engine reads (`value_set`, `code_system`, `cached`),
    over this database's current ValueSets and CodeSystems, then the vendored R4 ones.

    One instance serves one search. Parsed bodies, concept indexes and results outlive it, each
    tied to the stored versions it came from.
    """

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._rows: dict[tuple[str, str], tuple[tuple[int, int], ...]] = {}  # (kind, url) -> (rid, version)s
        self._found: dict[tuple[str, str], ConformanceRegistry | None] = {}
        self._cache: dict[tuple[str, str], Any] = {}
        self._bodies: dict[int, _Body] = {}  # id(resource dict) -> its stored body
        self._ids: dict[str, tuple[int, int] | None] = {}  # ValueSet id -> (rid, version)

    # -- registry interface used by terminology.py ----------------------------------------
    def get(self, kind: str, canonical: str) -> dict[str, Any] | None:
        url = canonical.partition("|")[0]
        if (kind, url) not in self._found:
            self._found[(kind, url)] = self._registry(url, self._current([(kind, url)])[(kind, url)])
        stored = self._found[(kind, url)]
        found = stored.get(kind, canonical) if stored is not None else None
        return found if found is not None else _vendored().get(kind, canonical)

    def value_set(self, canonical: str) -> dict[str, Any] | None:
        return self.get("ValueSet", canonical)

    def code_system(self, canonical: str) -> dict[str, Any] | None:
        return self.get("CodeSystem", canonical)

    def cached(self, kind: str, key: str, factory: Any) -> Any:
        # The engine keys a concept index by `canonical#id(dict)`: keep it with the stored body
        # (or in the vendored registry) so it outlives this search; anything else is per search.
        if kind == "cs-index":
            body = self._bodies.get(int(key.rpartition("#")[2] or 0))
            if body is None:
                return _vendored().cached(kind, key, factory)
            if (kind, key) not in body.derived:
                body.derived[(kind, key)] = factory()
            return body.derived[(kind, key)]
        if (kind, key) not in self._cache:
            self._cache[(kind, key)] = factory()
        return self._cache[(kind, key)]

    # -- the database --------------------------------------------------------------------------
    def _current(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], tuple[tuple[int, int], ...]]:
        """(rid, version) of the current resources of each (kind, url), read once per search."""
        missing = [k for k in keys if k not in self._rows]
        if missing:
            found: dict[tuple[str, str], list[tuple[int, int]]] = {k: [] for k in missing}
            stmt = (
                select(idx_uri.c.res_type, idx_uri.c.value, resource.c.rid, resource.c.version)
                .join(resource, resource.c.rid == idx_uri.c.rid)
                .where(idx_uri.c.param == "url", idx_uri.c.res_type.in_({k for k, _u in missing}),
                       idx_uri.c.value.in_({u for _k, u in missing}), resource.c.deleted == false())
            )
            for kind, url, rid, version in self._conn.execute(stmt):
                if (kind, url) in found:
                    found[(kind, url)].append((int(rid), int(version)))
            self._rows.update((k, tuple(sorted(set(v)))) for k, v in found.items())
        return {k: self._rows[k] for k in keys}

    def _registry(self, url: str, rows: tuple[tuple[int, int], ...]) -> ConformanceRegistry | None:
        """These stored resources as a registry, for its choice among versions (`url|version`)."""
        if not rows:
            return None
        bodies = [self._body(rid, version) for rid, version in rows]
        return ConformanceRegistry(None, base=[b.resource for b in bodies if b.resource.get("url") == url])

    def _body(self, rid: int, version: int) -> _Body:
        engine = self._conn.engine
        body: _Body | None = _PARSED.get(engine, (rid, version))
        if body is None:
            raw = self._conn.execute(select(resource.c.body).where(resource.c.rid == rid)).scalar_one()
            body = _Body(loads(raw))
            _PARSED.put(engine, (rid, version), body, len(raw))
        self._bodies[id(body.resource)] = body
        return body

    def _remembered(self, key: tuple[Any, ...], make: Callable[[], Members | None]) -> Any:
        """`make()`, or its earlier result if every ValueSet/CodeSystem url read then is unchanged."""
        engine = self._conn.engine
        hit: tuple[Trace, Any] | None = _RESULTS.get(engine, key)
        if hit is not None:
            trace, value = hit
            if self._current([k for k, _rows in trace]) == dict(trace):
                return value
        value = make()
        # Everything this search has read so far: a superset of what `make` read, so safe.
        weight = 1 + (len(value.full) + len(value.codes) + len(value.systems) if value is not None else 0)
        _RESULTS.put(engine, key, (tuple(sorted(self._rows.items())), value), weight)
        return value

    # -- what token search asks ----------------------------------------------------------------
    def __call__(self, reference: str) -> Pairs | None:
        """The (system, code) members of a ValueSet, `code == ''` for a whole system; None if unknown.

        `reference` is a canonical (`url` or `url|version`) or, as R4 also allows, a relative
        reference to a stored ValueSet (`ValueSet/id`).
        """
        if reference.startswith("ValueSet/"):
            row = self._by_id(reference.removeprefix("ValueSet/"))
            vs = self._body(*row).resource if row else None
        else:
            vs = self.value_set(reference)
        if vs is None:
            return None
        systems, pairs = self._members(vs, 0)
        return [(s, "") for s in sorted(systems)] + sorted(pairs, key=lambda p: (p[0] or "", p[1]))

    def members(self, reference: str) -> Members | None:
        """`self(reference)` as lookup keys, remembered while the ValueSets and CodeSystems it read stay."""

        def make() -> Members | None:
            pairs = self(reference)
            return None if pairs is None else Members.of(pairs)

        key: tuple[Any, ...] = ("members", reference)
        if reference.startswith("ValueSet/"):
            key += self._by_id(reference.removeprefix("ValueSet/")) or ()  # a new version is a new question
        return self._remembered(key, make)  # type: ignore[no-any-return]

    def _by_id(self, id_: str) -> tuple[int, int] | None:
        """(rid, version) of the current ValueSet with this id."""
        if id_ not in self._ids:
            row = self._conn.execute(
                select(resource.c.rid, resource.c.version).where(
                    resource.c.res_type == "ValueSet", resource.c.res_id == id_, resource.c.deleted == false())
            ).first()
            self._ids[id_] = (int(row[0]), int(row[1])) if row else None
        return self._ids[id_]

    def subsumed(self, system: str, code: str, direction: Literal["above", "below"]) -> Members:
        """`self.subsumption(...)` as lookup keys, remembered like `members`."""
        def make() -> Members:
            return Members.of((system, c) for c in self.subsumption(system, code, direction))

        return self._remembered(("subsumed", system, code, direction), make)  # type: ignore[no-any-return]

    def subsumption(self, system: str, code: str, direction: Literal["above", "below"]) -> list[str]:
        """`code` and its descendants (below) or its ancestors (above) in a code system held here."""
        cs = self.code_system(system)
        if cs is None:
            raise not_supported(f"code system {system} is not on this server, so its hierarchy is unknown")
        if cs.get("content", "complete") != "complete" or not cs.get("concept"):
            raise not_supported(f"code system {system} is not held in full on this server "
                                f"(content '{cs.get('content')}'), so its hierarchy is unknown")
        op = "is-a" if direction == "below" else "generalizes"
        include = {"system": system, "filter": [{"property": "concept", "op": op, "value": code}]}
        codes = [c for s, c in self._expand({"compose": {"include": [include]}}) if s == system]
        if not codes:
            raise invalid(f"code {code} is not in code system {system}")
        return codes

    # -- expansion -----------------------------------------------------------------------------
    def _members(self, vs: dict[str, Any], depth: int) -> tuple[set[str], set[tuple[str | None, str]]]:
        """(whole systems, other members). A stored expansion that lists every member stands in
        for a compose that cannot be expanded here (drawn up by a terminology server)."""
        if depth > _MAX_DEPTH:
            raise invalid(f"ValueSet {vs.get('url')}: imports nest too deeply (cycle?)")
        try:
            if not self._draws_on_whole_system(vs, depth):
                return set(), set(self._expand(vs))
            return self._split(vs, vs["compose"], depth)
        except FhirError:
            expansion = vs.get("expansion")
            if not vs.get("compose") or not _complete(expansion):
                raise
            return set(), set(self._expand({"url": vs.get("url"), "expansion": expansion}))

    def _draws_on_whole_system(self, vs: dict[str, Any], depth: int) -> bool:
        compose = vs.get("compose")
        if depth > _MAX_DEPTH or not isinstance(compose, dict):
            return False
        for inc in compose.get("include") or []:
            if isinstance(inc, dict) and _whole_system(inc):
                return True
            if isinstance(inc, dict) and _one_import(inc):
                imported = self.value_set(inc["valueSet"][0])
                if imported is not None and self._draws_on_whole_system(imported, depth + 1):
                    return True
        return False

    def _split(self, vs: dict[str, Any], compose: dict[str, Any], depth: int) -> tuple[set[str], set[Any]]:
        """Whole-system includes, also those of imported ValueSets, are kept aside as `system|`;
        the engine expands the rest, so it never meets a whole system it does not hold."""
        systems: set[str] = set()
        pairs: set[tuple[str | None, str]] = set()
        rest: list[Any] = []
        for inc in compose.get("include") or []:
            if isinstance(inc, dict) and _whole_system(inc):
                systems.add(inc["system"])
                pairs |= self._held_codes(inc)
            elif isinstance(inc, dict) and _one_import(inc):
                imported = self.value_set(inc["valueSet"][0])
                if imported is None:
                    raise not_supported(f"ValueSet {vs.get('url')} imports {inc['valueSet'][0]}, "
                                        "which is not on this server")
                sub_systems, sub_pairs = self._members(imported, depth + 1)
                systems |= sub_systems
                pairs |= sub_pairs
            else:
                rest.append(inc)  # malformed ones too: the engine reports them
        if rest:
            pairs |= set(self._expand({"url": vs.get("url"), "compose": {"include": rest}}))
        if compose.get("exclude"):
            removed = set(self._expand({"url": vs.get("url"), "compose": {"include": compose["exclude"]}}))
            if any(s in systems for s, _c in removed):
                # `system|` minus some codes is not one IN: the engine expands it all, or refuses.
                return set(), set(self._expand(vs))
            pairs -= removed
        return systems, pairs

    def _held_codes(self, inc: dict[str, Any]) -> set[tuple[str | None, str]]:
        """The codes of a whole-system include whose CodeSystem this server holds in full (and
        is small): listed too, so elements of type `code`, indexed without a system, match
        (`gender:in=` R4's administrative-gender ValueSet). Otherwise none: `system|` matches."""
        canonical = inc["system"] + (f"|{inc['version']}" if inc.get("version") else "")
        cs = self.code_system(canonical)
        if cs is None or cs.get("content") != "complete" or _concepts(cs.get("concept") or []) > _HELD_MAX:
            return set()
        return set(self._expand({"compose": {"include": [inc]}}))

    def _expand(self, vs: dict[str, Any]) -> Pairs:
        """Members through the engine; its refusals (content not held, malformed) stay 400s."""
        vs = {"resourceType": "ValueSet", **vs}
        try:
            expanded = terminology.expand(self, vs)  # type: ignore[arg-type]
        except FhirError as exc:
            if exc.status != 400:
                raise not_supported(str(exc)) from None
            raise
        return [(e.get("system"), e["code"]) for e in expanded["expansion"]["contains"]]


_HELD_MAX = 5000  # concepts: above this a whole system stays one `system|` term


def _concepts(items: list[Any]) -> int:
    return sum(1 + _concepts(c.get("concept") or []) for c in items if isinstance(c, dict))


def _whole_system(inc: dict[str, Any]) -> bool:
    return bool(inc.get("system")) and not (inc.get("concept") or inc.get("filter") or inc.get("valueSet"))


def _one_import(inc: dict[str, Any]) -> bool:
    # Several valueSets in one include are intersected: that is the engine's business.
    imports = inc.get("valueSet")
    return isinstance(imports, list) and len(imports) == 1 and not (inc.get("system") or inc.get("concept")
                                                                    or inc.get("filter"))


def _complete(expansion: Any) -> bool:
    """Whether a stored expansion lists every member (not one page of a paged expansion)."""
    if not isinstance(expansion, dict) or not expansion.get("contains") or expansion.get("offset"):
        return False
    total = expansion.get("total")

    def count(items: list[dict[str, Any]]) -> int:
        return sum(1 + count(i.get("contains") or []) for i in items)

    return total is None or total <= count(expansion["contains"])


def resolver(conn: Connection) -> StoredTerminology:
    """What `Ctx.valueset` calls: ValueSet url -> members; also answers `:above` / `:below`."""
    return StoredTerminology(conn)
