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
Anything else that draws on such a system cannot be expanded, and the search is refused (400)
rather than matched partially.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from functools import cache
from typing import Any, Literal

from sqlalchemy import Connection, Engine, false, select

from fhir_server.errors import FhirError, invalid, not_supported
from fhir_server.fhir.json import loads
from fhir_server.storage.index_schema import idx_uri
from fhir_server.storage.schema import resource
from fhir_server.validation import terminology
from fhir_server.validation.conformance import ConformanceRegistry

__all__ = ["StoredTerminology", "resolver"]

Pairs = list[tuple[str | None, str]]
_MAX_DEPTH = 10  # ValueSet imports nest; a cycle must not loop forever
_PARSED_PER_DB = 64  # parsed ValueSet/CodeSystem bodies kept per database (a CodeSystem can be MBs)


@cache
def _vendored() -> ConformanceRegistry:
    from fhir_server import definitions

    return ConformanceRegistry(None, base=definitions.value_sets_and_code_systems())


class _Parsed:
    """Parsed bodies by (rid, version), per engine: parsing a large CodeSystem on every search
    would cost more than the search. A (rid, version) pair never names two contents, and the
    weak key drops an engine's entries with it (ids and URLs of test engines are reused)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_engine: weakref.WeakKeyDictionary[Engine, OrderedDict[tuple[int, int], _Body]] = (
            weakref.WeakKeyDictionary()
        )

    def get(self, engine: Engine, key: tuple[int, int]) -> _Body | None:
        with self._lock:
            entries = self._by_engine.get(engine)
            if entries is None or key not in entries:
                return None
            entries.move_to_end(key)
            return entries[key]

    def put(self, engine: Engine, key: tuple[int, int], body: _Body) -> None:
        with self._lock:
            entries = self._by_engine.setdefault(engine, OrderedDict())
            entries[key] = body
            while len(entries) > _PARSED_PER_DB:
                entries.popitem(last=False)


class _Body:
    """One stored resource, parsed, with what the engine derived from it (its concept index)."""

    __slots__ = ("derived", "resource")

    def __init__(self, resource: dict[str, Any]) -> None:
        self.resource = resource
        self.derived: dict[tuple[str, str], Any] = {}


_PARSED = _Parsed()


class StoredTerminology:
    """The registry interface the terminology engine reads (`value_set`, `code_system`, `cached`),
    over this database's current ValueSets and CodeSystems, then the vendored R4 ones.

    One instance serves one search: what it caches (expansions) lives as long as the search,
    except the parsed bodies and concept indexes, kept per stored version.
    """

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._found: dict[tuple[str, str], ConformanceRegistry | None] = {}
        self._cache: dict[tuple[str, str], Any] = {}
        self._bodies: dict[int, _Body] = {}  # id(resource dict) -> its stored body

    # -- registry interface used by terminology.py ----------------------------------------
    def get(self, kind: str, canonical: str) -> dict[str, Any] | None:
        url = canonical.partition("|")[0]
        if (kind, url) not in self._found:
            self._found[(kind, url)] = self._load(kind, url)
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

    def _load(self, kind: str, url: str) -> ConformanceRegistry | None:
        """The current resources of `kind` with this url, as a registry (for its version choice)."""
        listed = select(idx_uri.c.rid).where(idx_uri.c.res_type == kind, idx_uri.c.param == "url",
                                             idx_uri.c.value == url)
        rows = self._conn.execute(
            select(resource.c.rid, resource.c.version).where(resource.c.rid.in_(listed), resource.c.deleted == false())
        ).all()
        if not rows:
            return None
        bodies = [self._body(int(rid), int(version)) for rid, version in rows]
        return ConformanceRegistry(None, base=[b.resource for b in bodies if b.resource.get("url") == url])

    def _body(self, rid: int, version: int) -> _Body:
        engine = self._conn.engine
        body = _PARSED.get(engine, (rid, version))
        if body is None:
            raw = self._conn.execute(select(resource.c.body).where(resource.c.rid == rid)).scalar_one()
            body = _Body(loads(raw))
            _PARSED.put(engine, (rid, version), body)
        self._bodies[id(body.resource)] = body
        return body

    # -- what token search asks ----------------------------------------------------------------
    def __call__(self, canonical: str) -> Pairs | None:
        """The (system, code) members of a ValueSet, `code == ''` for a whole system; None if unknown."""
        vs = self.value_set(canonical)
        if vs is None:
            return None
        systems, pairs = self._members(vs, 0)
        return [(s, "") for s in sorted(systems)] + sorted(pairs, key=lambda p: (p[0] or "", p[1]))

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
        """(whole systems, other members): whole-system includes, also in imported ValueSets,
        are kept aside; the rest goes to the engine, which then never meets them."""
        if depth > _MAX_DEPTH:
            raise invalid(f"ValueSet {vs.get('url')}: imports nest too deeply (cycle?)")
        compose = vs.get("compose")
        if not isinstance(compose, dict):
            return set(), set(self._expand_stored(vs))
        systems: set[str] = set()
        pairs: set[tuple[str | None, str]] = set()
        rest: list[dict[str, Any]] = []
        for inc in compose.get("include") or []:
            if not isinstance(inc, dict):
                rest.append(inc)  # the engine reports it as malformed
            elif _whole_system(inc):
                systems.add(inc["system"])
            elif _one_import(inc):
                imported = self.value_set(inc["valueSet"][0])
                if imported is None:
                    raise not_supported(f"ValueSet {vs.get('url')} imports {inc['valueSet'][0]}, "
                                        "which is not on this server")
                sub_systems, sub_pairs = self._members(imported, depth + 1)
                systems |= sub_systems
                pairs |= sub_pairs
            else:
                rest.append(inc)
        if not systems:
            return set(), set(self._expand_stored(vs))  # the engine alone (and its expansion cache)
        if rest:
            pairs |= set(self._expand({"url": vs.get("url"), "compose": {"include": rest}}))
        if compose.get("exclude"):
            removed = set(self._expand({"url": vs.get("url"), "compose": {"include": compose["exclude"]}}))
            if any(s in systems for s, _c in removed):
                # `system|` minus some codes is not one IN: let the engine expand it all (or refuse).
                return set(), set(self._expand_stored(vs))
            pairs -= removed
        return systems, pairs

    def _expand_stored(self, vs: dict[str, Any]) -> Pairs:
        """A ValueSet as the engine expands it; a stored complete `expansion` if its compose cannot be."""
        try:
            return self._expand(vs)
        except FhirError:
            expansion = vs.get("expansion")
            if not vs.get("compose") or not _complete(expansion):
                raise
            return self._expand({"url": vs.get("url"), "expansion": expansion})

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
