"""The conformance registry: StructureDefinitions, ValueSets, CodeSystems, ConceptMaps, SearchParameters.

https://hl7.org/fhir/R4/profiling.html

Built from the vendored R4 definitions plus the JSON files of `profiles/`, and from resources added
at run time (`add`). Canonical lookup accepts `url|version`. Snapshots and compiled validators are
made on first use and cached; `add` drops the caches because a new resource may change them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from fhir_server.errors import FhirError, invalid, processing
from fhir_server.fhir.json import loads

__all__ = ["ConformanceRegistry", "DEFAULT_PROFILES_DIR"]

# Shipped inside the package (`fhir_server/profiles`, a link to the repository's `profiles/` in a checkout).
DEFAULT_PROFILES_DIR = Path(__file__).resolve().parents[1] / "profiles"
_KINDS = ("StructureDefinition", "ValueSet", "CodeSystem", "ConceptMap", "SearchParameter")
_CORE = "http://hl7.org/fhir/StructureDefinition/"

_UNSET: Any = object()


class ConformanceRegistry:
    """Conformance resources by canonical url, with cached snapshots and compiled validators.

    **Parameters:**
    * `profiles_dir`: directory of JSON conformance resources (default: the repo's `profiles/`;
      None loads none).
    * `base`: base resources (default: the vendored R4 definitions); pass a list to replace them.
    * `unknown_profile`: severity of the issue for a profile url that is not known.
    """

    def __init__(
        self,
        profiles_dir: Path | str | None = _UNSET,
        *,
        base: Iterable[dict[str, Any]] | None = None,
        unknown_profile: str = "warning",
    ) -> None:
        if unknown_profile not in ("error", "warning"):
            raise ValueError("unknown_profile must be 'error' or 'warning'")
        self.unknown_profile = unknown_profile
        self._lock = threading.RLock()
        self._store: dict[str, dict[str, dict[str, dict[str, Any]]]] = {kind: {} for kind in _KINDS}
        self._local_urls: set[str] = set()
        self._cache: dict[tuple[str, str], Any] = {}
        self._building: set[str] = set()
        # (kind, id) -> (url, version) of what the server stored, so a delete or a PUT that
        # changes the url can take the old entry out; the base copy an entry hid comes back.
        self._stored: dict[tuple[str, str], tuple[str, str]] = {}
        self._base: dict[tuple[str, str, str], dict[str, Any]] = {}
        for resource in base if base is not None else _vendored():
            self._put(resource, local=False)
            if resource.get("url"):
                key = (resource.get("resourceType", ""), resource["url"], resource.get("version") or "")
                self._base[key] = resource
        directory = DEFAULT_PROFILES_DIR if profiles_dir is _UNSET else profiles_dir
        if directory is not None:
            for resource in _read_dir(Path(directory)):
                self._put(resource, local=True)

    # -- content ---------------------------------------------------------------------------
    def add(self, resource: dict[str, Any]) -> None:
        """Register (or replace) a conformance resource, e.g. one POSTed to the server."""
        if resource.get("resourceType") not in _KINDS or not resource.get("url"):
            raise invalid("Only StructureDefinition, ValueSet, CodeSystem, ConceptMap and "
                          "SearchParameter resources with a url can be registered")
        kind, id_ = resource["resourceType"], resource.get("id")
        with self._lock:
            if id_:
                old = self._stored.pop((kind, id_), None)
                if old is not None and old != (resource["url"], resource.get("version") or ""):
                    self._drop(kind, *old)
                self._stored[(kind, id_)] = (resource["url"], resource.get("version") or "")
            self._put(resource, local=True)
            self._forget(kind)

    def remove(self, kind: str, id_: str) -> None:
        """Forget the resource the server stored as `kind/id_` (it was deleted)."""
        with self._lock:
            old = self._stored.pop((kind, id_), None)
            if old is not None:
                self._drop(kind, *old)
                self._forget(kind)

    def _drop(self, kind: str, url: str, version: str) -> None:
        versions = self._store.get(kind, {}).get(url, {})
        base = self._base.get((kind, url, version))
        if base is not None:
            versions[version] = base
            return
        versions.pop(version, None)
        if not versions:
            self._store.get(kind, {}).pop(url, None)
            self._local_urls.discard(url)

    def _forget(self, kind: str) -> None:
        """Drop what a new resource of `kind` may change; compiled base definitions stay."""
        if kind == "StructureDefinition":
            stale = {k for k in self._cache if k[0] in ("snapshot", "validator") and k[1].split("|")[0] in
                     self._local_urls} | {k for k in self._cache if k[0] in ("targets", "is-resource")}
        elif kind in ("ValueSet", "CodeSystem"):
            stale = {k for k in self._cache if k[0] in ("vs-codes", "vs-membership", "cs-index")}
        else:
            stale = set()
        for key in stale:
            del self._cache[key]

    def _put(self, resource: dict[str, Any], local: bool) -> None:
        kind = resource.get("resourceType", "")
        url = resource.get("url")
        if kind not in self._store or not url:
            return
        self._store[kind].setdefault(url, {})[resource.get("version") or ""] = resource
        if local:
            self._local_urls.add(url)

    def get(self, kind: str, canonical: str) -> dict[str, Any] | None:
        """The resource of `kind` at `canonical` (`url` or `url|version`); latest version if none."""
        url, _, version = canonical.partition("|")
        versions = self._store.get(kind, {}).get(url)
        if not versions:
            return None
        if version:
            # A pinned version we do not hold: an unversioned copy is the same artefact to us.
            return versions.get(version) or versions.get("")
        return versions[max(versions, key=_version_key)]

    def all(self, kind: str) -> list[dict[str, Any]]:
        return [res for versions in self._store.get(kind, {}).values() for res in versions.values()]

    def structure_definition(self, canonical: str) -> dict[str, Any] | None:
        return self.get("StructureDefinition", canonical)

    def value_set(self, canonical: str) -> dict[str, Any] | None:
        return self.get("ValueSet", canonical)

    def code_system(self, canonical: str) -> dict[str, Any] | None:
        return self.get("CodeSystem", canonical)

    def concept_map(self, canonical: str) -> dict[str, Any] | None:
        return self.get("ConceptMap", canonical)

    def search_parameter(self, canonical: str) -> dict[str, Any] | None:
        return self.get("SearchParameter", canonical)

    def base_definition_url(self, resource_type: str) -> str | None:
        sd = self.structure_definition(_CORE + resource_type)
        return _CORE + resource_type if sd and sd.get("derivation") != "constraint" else None

    def known_profiles_for_type(self, type_: str) -> list[str]:
        """Profiles (constraints) on `type_` loaded from profiles/ or added at run time."""
        return sorted(
            url
            for url in self._local_urls
            if (sd := self.structure_definition(url))
            and sd.get("type") == type_
            and sd.get("derivation") == "constraint"
            and sd.get("kind") == "resource"
        )

    # -- derived, cached --------------------------------------------------------------------
    def cached(self, kind: str, key: str, factory: Callable[[], Any]) -> Any:
        """The cached value of (kind, key), made by `factory` once (under the registry lock)."""
        found = self._cache.get((kind, key), _UNSET)
        if found is not _UNSET:
            return found
        with self._lock:
            found = self._cache.get((kind, key), _UNSET)
            if found is _UNSET:
                found = factory()
                self._cache[(kind, key)] = found
            return found

    def snapshot(self, canonical: str) -> list[dict[str, Any]] | None:
        """Snapshot elements of a StructureDefinition (generated from its differential if needed)."""
        sd = self.structure_definition(canonical)
        if sd is None:
            return None
        return self.cached("snapshot", canonical, lambda: self._guarded(canonical, sd))  # type: ignore[no-any-return]

    def _guarded(self, canonical: str, sd: dict[str, Any]) -> list[dict[str, Any]]:
        # Only one thread builds at a time (the registry lock), so a plain set spots a cycle.
        if canonical in self._building:
            raise processing(f"StructureDefinition {canonical} derives from itself")
        self._building.add(canonical)
        try:
            return self._make_snapshot(sd)
        finally:
            self._building.discard(canonical)

    def _make_snapshot(self, sd: dict[str, Any]) -> list[dict[str, Any]]:
        from fhir_server.validation.snapshot import generate_snapshot

        published = sd.get("snapshot", {}).get("element")
        if published and not (
            sd.get("derivation") == "constraint" and sd.get("differential") and sd["url"] in self._local_urls
        ):
            return list(published)
        try:
            # Our own generation keeps local profiles consistent with the base definitions we hold.
            return generate_snapshot(sd, self.snapshot)
        except FhirError:
            if published:
                return list(published)  # e.g. its base comes from a package we do not hold
            raise

    def validator(self, canonical: str) -> Any:
        """The compiled `ProfileValidator` for a StructureDefinition, or None if unknown."""
        from fhir_server.validation.profile import ProfileValidator

        if self.structure_definition(canonical) is None:
            return None
        return self.cached("validator", canonical, lambda: ProfileValidator(self, canonical))

    # -- validation -------------------------------------------------------------------------
    def validate(self, resource: dict[str, Any], profile_urls: list[str] | None = None) -> list[dict[str, Any]]:
        """Issues of `resource` against `profile_urls`, or its known meta.profile claims and base type."""
        from fhir_server.validation.profile import validate_resource

        return validate_resource(self, resource, profile_urls)


def _version_key(version: str) -> tuple[tuple[int, Any], ...]:
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in version.replace("-", ".").split("."))


def _vendored() -> Iterable[dict[str, Any]]:
    from fhir_server import definitions

    yield from definitions.structure_definitions().values()
    yield from definitions.value_sets_and_code_systems()
    extra = getattr(definitions, "search_parameters", None)
    if callable(extra):
        yield from extra()


def _read_dir(directory: Path) -> Iterable[dict[str, Any]]:
    if not directory.is_dir():
        return
    for path in sorted(directory.rglob("*.json")):
        resource = loads(path.read_bytes())
        if not isinstance(resource, dict):
            continue
        if resource.get("resourceType") == "Bundle":
            yield from (e["resource"] for e in resource.get("entry", []) if "resource" in e)
        else:
            yield resource
