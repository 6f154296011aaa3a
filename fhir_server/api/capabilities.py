"""The CapabilityStatement, generated from the route table and the registries.

https://hl7.org/fhir/R4/capabilitystatement.html

Nothing here is written by hand: an interaction is listed because a route implements it, a
search parameter because the search registry indexes it, a profile because it is loaded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from fhir_server import FHIR_VERSION, __version__
from fhir_server.api.routes import Route
from fhir_server.config import Settings

__all__ = ["build_capability_statement"]

_INSTANCE = ("read", "vread", "update", "patch", "delete", "history-instance")
_TYPE = ("history-type", "create", "search-type")
_SYSTEM = ("transaction", "batch", "search-system", "history-system")


def build_capability_statement(
    routes: Iterable[Route],
    resource_types: Iterable[str],
    settings: Settings,
    base_url: str,
    search_params: Callable[[str], list[dict[str, Any]]] | None = None,
    profiles: Callable[[str], list[str]] | None = None,
    operations: dict[str, str] | None = None,
    implementation_guides: list[str] | None = None,
) -> dict[str, Any]:
    codes = {r.interaction for r in routes}
    if "transaction" in codes:
        codes.add("batch")  # one route serves both Bundle types
    resource_entries = []
    for type_ in sorted(resource_types):
        entry: dict[str, Any] = {
            "type": type_,
            "interaction": [{"code": c} for c in (*_INSTANCE, *_TYPE) if c in codes],
            "versioning": "versioned-update",
            "readHistory": True,
            "updateCreate": True,
            "conditionalCreate": True,
            "conditionalRead": "full-support",
            "conditionalUpdate": True,
            "conditionalDelete": "multiple" if settings.allow_multiple_delete else "single",
        }
        supported = profiles(type_) if profiles else []
        if supported:
            entry["supportedProfile"] = supported
        params = search_params(type_) if search_params and "search-type" in codes else []
        if params:
            entry["searchParam"] = params
        resource_entries.append(entry)
    rest: dict[str, Any] = {
        "mode": "server",
        "documentation": "FHIR R4 REST API. JSON only (application/fhir+json, application/json).",
        "resource": resource_entries,
        "interaction": [{"code": c} for c in _SYSTEM if c in codes],
    }
    if settings.auth == "on":
        from fhir_server.auth.service import issuer_for
        from fhir_server.auth.well_known import capability_security

        rest["security"] = capability_security(issuer_for(settings, base_url), bool(settings.cors_origins))
    if operations and "operation" in codes:
        rest["operation"] = [{"name": name, "definition": url} for name, url in operations.items()]
    statement: dict[str, Any] = {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "publisher": "fhir-server contributors",
        "kind": "instance",
        "software": {"name": "fhir-server", "version": __version__},
        "implementation": {"description": "FHIR R4 server for French care-coordination networks", "url": base_url},
        "fhirVersion": FHIR_VERSION,
        "format": ["application/fhir+json", "application/json"],
        "patchFormat": ["application/json-patch+json", "application/fhir+json"],
        "rest": [rest],
    }
    if implementation_guides:
        statement["implementationGuide"] = implementation_guides
    return statement
