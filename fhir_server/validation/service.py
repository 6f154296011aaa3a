"""Profile validation as the server runs it: which profiles apply to a write, and with what result.

https://hl7.org/fhir/R4/validation.html

A write is checked against the profiles it claims in `meta.profile` and against the profiles the
operator requires for its type (`FHIR_REQUIRED_PROFILES`). A claimed profile the server does not
know gives a warning or an error, as `FHIR_UNKNOWN_PROFILE` says.
"""

from __future__ import annotations

from collections import Counter
from functools import lru_cache
from pathlib import Path
from typing import Any

from fhir_server.config import Settings
from fhir_server.fhir.json import loads
from fhir_server.validation.conformance import DEFAULT_PROFILES_DIR, ConformanceRegistry

__all__ = ["ProfileService", "profiles_directory", "registry_for"]


def profiles_directory(settings: Settings) -> Path | None:
    directory = Path(settings.profiles_dir) if settings.profiles_dir else DEFAULT_PROFILES_DIR
    return directory if directory.is_dir() else None


@lru_cache(maxsize=4)
def registry_for(directory: Path | None, unknown_profile: str) -> ConformanceRegistry:
    """One registry per configuration: loading the R4 definitions takes a while, do it once."""
    return ConformanceRegistry(directory, unknown_profile=unknown_profile)


class ProfileService:
    def __init__(self, settings: Settings) -> None:
        self.directory = profiles_directory(settings)
        self.registry = registry_for(self.directory, settings.unknown_profile)
        self.required = settings.required_profile_map()

    def profiles_for(self, resource: dict[str, Any]) -> list[str]:
        claimed = [p for p in (resource.get("meta") or {}).get("profile", []) if isinstance(p, str)]
        required = self.required.get(str(resource.get("resourceType")), [])
        return list(dict.fromkeys([*required, *claimed]))

    def validate_for_write(self, resource: dict[str, Any]) -> list[dict[str, Any]]:
        """Issues against the applicable profiles; [] when none applies."""
        profiles = self.profiles_for(resource)
        if not profiles:
            return []
        return self.registry.validate(resource, profiles)

    def validate(self, resource: dict[str, Any], profile: str | None) -> list[dict[str, Any]]:
        """$validate: against `profile` when given, else the applicable profiles and the base type."""
        return self.registry.validate(resource, [profile] if profile else (self.profiles_for(resource) or None))

    def supported_profiles(self, type_: str) -> list[str]:
        return self.registry.known_profiles_for_type(type_)

    def local_resources(self) -> list[dict[str, Any]]:
        """Every resource of the profiles folder: served through the API as well."""
        if self.directory is None:
            return []
        return [loads(p.read_bytes()) for p in sorted(self.directory.glob("*.json"))]

    def summary(self) -> str:
        """What the profiles folder gave, for the start-up log."""
        if self.directory is None:
            return "no profiles folder: base R4 only"
        local = self.local_resources()
        counts = Counter(str(r.get("resourceType")) for r in local)
        profiles = sum(1 for r in local if r.get("resourceType") == "StructureDefinition"
                       and r.get("derivation") == "constraint")
        return (f"profiles folder {self.directory}: {profiles} profiles and extensions, "
                f"{counts['ValueSet']} value sets, {counts['CodeSystem']} code systems, "
                f"{counts['SearchParameter']} search parameters, {counts['ImplementationGuide']} implementation guides")

    def implementation_guides(self) -> list[str]:
        return sorted(r["url"] for r in self.local_resources() if r.get("resourceType") == "ImplementationGuide")
