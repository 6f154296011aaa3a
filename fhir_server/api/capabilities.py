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
from fhir_server.errors import invalid
from fhir_server.fhir.summary import nested_summary, subset

__all__ = ["SYSTEM_OPERATIONS", "build_capability_statement", "capability_view"]

# rest.operation is "for operations invoked at the system level, or supported across multiple
# resource types" (R4 CapabilityStatement.rest.operation); the others are listed per type.
SYSTEM_OPERATIONS = ("validate", "reindex")
# Dropped by mode=terse: prose for people, not what a client needs to talk to the server
# (implementation.description stays: it is 1..1).
_TERSE_DROPPED = frozenset({"documentation", "text", "purpose", "copyright"})

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
    includes: Callable[[list[str]], dict[str, tuple[list[str], list[str]]]] | None = None,
    type_operations: Callable[[str], list[tuple[str, str]]] | None = None,
) -> dict[str, Any]:
    codes = {r.interaction for r in routes}
    if "transaction" in codes:
        codes.add("batch")  # one route serves both Bundle types
    resource_entries = []
    types = sorted(resource_types)
    include_map = includes(types) if includes and "search-type" in codes else {}
    for type_ in types:
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
        include, revinclude = include_map.get(type_, ([], []))
        if include:
            entry["searchInclude"] = include
        if revinclude:
            entry["searchRevInclude"] = revinclude
        if params:
            entry["searchParam"] = params
        type_ops = type_operations(type_) if type_operations and "operation" in codes else []
        if type_ops:
            entry["operation"] = [{"name": name, "definition": url} for name, url in type_ops]
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
        system_ops = SYSTEM_OPERATIONS if type_operations else tuple(operations)
        rest["operation"] = [{"name": n, "definition": u} for n, u in operations.items() if n in system_ops]
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
        "patchFormat": ["application/json-patch+json", "application/merge-patch+json", "application/fhir+json"],
        "rest": [rest],
    }
    if implementation_guides:
        statement["implementationGuide"] = implementation_guides
    return statement


def _terse(node: Any) -> Any:
    if isinstance(node, dict):
        if "definition" in node and "type" in node and "name" in node:  # a searchParam: its name and type suffice
            return {"name": node["name"], "type": node["type"]}
        return {k: _terse(v) for k, v in node.items() if k not in _TERSE_DROPPED}
    if isinstance(node, list):
        return [_terse(v) for v in node]
    return node


def capability_view(
    statement: dict[str, Any], mode: str, summary: str | None, elements: str | None
) -> dict[str, Any]:
    """What `/metadata?mode=&_summary=&_elements=` asks for (https://hl7.org/fhir/R4/http.html#capabilities).

    `terse` drops the prose (documentation, description, narrative) and the search parameters'
    definition URLs, and keeps every capability;
    `normative` is the whole statement, CapabilityStatement being normative in R4. `_summary`
    and `_elements` then apply as on any read, `_summary=true` down to the nested summary elements.
    """
    if mode not in ("full", "normative", "terse"):
        raise invalid(f"mode={mode} is not one of full, normative, terse")
    view = statement
    if mode == "terse":
        view = _terse({k: v for k, v in statement.items() if k != "description"})
    if summary == "count":
        raise invalid("_summary=count applies to searches, not to /metadata")
    if summary == "true":
        return nested_summary(view)
    return subset(view, summary, elements) or view
