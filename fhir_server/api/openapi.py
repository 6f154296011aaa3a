"""The OpenAPI document of the FHIR REST API, generated from the route table.

https://spec.openapis.org/oas/v3.1.0

The FHIR routes are plain Starlette routes (FastAPI's parameter solving cost more than a whole
point read), so FastAPI cannot see them: this module describes them from the same `ROUTES`
table that mounts them. Resource bodies are described as JSON objects with a `resourceType`;
the FHIR rules themselves are in the CapabilityStatement and the profiles.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from fhir_server.api.routes import Route

__all__ = ["openapi_document"]

_PARAM = re.compile(r"{(\w+)}")
_JSON_TYPES = ("application/fhir+json", "application/json")
_RESOURCE = {"type": "object", "required": ["resourceType"], "properties": {"resourceType": {"type": "string"}}}
_OUTCOME = {"description": "OperationOutcome", "content": {t: {"schema": _RESOURCE} for t in _JSON_TYPES}}


def _parameter(name: str, resource_types: list[str]) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    if name in ("type", "comp"):
        schema = {"type": "string", "enum": resource_types}
    elif name in ("id", "vid"):
        schema = {"type": "string", "pattern": r"^[A-Za-z0-9\-.]{1,64}$"}
    return {"name": name, "in": "path", "required": True, "schema": schema}


def _body(route: Route) -> dict[str, Any] | None:
    if route.method not in ("POST", "PUT", "PATCH"):
        return None
    content: dict[str, Any] = {t: {"schema": _RESOURCE} for t in _JSON_TYPES}
    if route.method == "PATCH":
        content["application/json-patch+json"] = {"schema": {"type": "array", "items": {"type": "object"}}}
    if route.path.endswith("_search"):
        content = {"application/x-www-form-urlencoded": {"schema": {"type": "object"}}}
    return {"required": route.interaction not in ("operation", "search-system", "search-type"), "content": content}


def openapi_document(
    routes: Iterable[Route], resource_types: list[str], base: str, info: dict[str, Any]
) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        path = base + route.path if route.path else base
        operation: dict[str, Any] = {
            "summary": route.summary,
            "tags": [route.interaction],
            "operationId": f"{route.interaction}:{route.method}:{route.path or '/'}",
            "parameters": [_parameter(n, resource_types) for n in _PARAM.findall(route.path)],
            "responses": {
                "200": {"description": "Success", "content": {t: {"schema": _RESOURCE} for t in _JSON_TYPES}},
                "4XX": _OUTCOME,
            },
        }
        body = _body(route)
        if body:
            operation["requestBody"] = body
        paths.setdefault(path, {})[route.method.lower()] = operation
    return {"openapi": "3.1.0", "info": info, "paths": paths}
