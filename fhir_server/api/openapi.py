"""The OpenAPI document of the FHIR REST API, generated from the route table and the search registry.

https://spec.openapis.org/oas/v3.1.0 (describing https://hl7.org/fhir/R4/http.html)

The FHIR routes are plain Starlette routes (FastAPI's parameter solving cost more than a whole
point read), so FastAPI cannot see them: this module describes them from the same `ROUTES`
table that mounts them. Each `{type}` route is written out once per resource type, tagged with
the type, and a type's search lists that type's search parameters from the registry, so a
client generator or Swagger UI shows `GET /fhir/Patient?family=` rather than `GET /fhir/{type}`.
Resource bodies are JSON objects with a `resourceType`; the FHIR rules themselves are in the
CapabilityStatement and the profiles.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from fhir_server.api.routes import Route

__all__ = ["openapi_document"]

SearchParams = Callable[[str], list[dict[str, Any]]]
TypeOperations = Callable[[str], list[tuple[str, str]]]

_PARAM = re.compile(r"{(\w+)}")
_JSON_TYPES = ("application/fhir+json", "application/json")
_REF = "#/components/"
# Result parameters every type search takes (R4 search.html#return), shared through components.
_COMMON_SEARCH = {
    "_id": "Logical id of the resource",
    "_lastUpdated": "When the resource last changed (date search: ge2026-01-01)",
    "_tag": "A tag in meta.tag (token)",
    "_profile": "A profile in meta.profile (uri)",
    "_text": "Full-text search on the narrative",
    "_content": "Full-text search on the whole resource",
    "_has": "Reverse chain: _has:Type:reference:param=value",
    "_list": "Resources a List names",
    "_count": "Page size",
    "_sort": "Sort keys, comma separated; '-' for descending",
    "_include": "Include referenced resources: Type:param[:target]",
    "_revinclude": "Include referencing resources: Type:param",
    "_summary": "true | text | data | count | false",
    "_elements": "Top-level elements to return, comma separated",
    "_total": "none | estimate | accurate",
}


def _resource_schema(type_: str | None = None) -> dict[str, Any]:
    kind: dict[str, Any] = {"type": "string"}
    if type_:
        kind["enum"] = [type_]
    return {"type": "object", "required": ["resourceType"], "properties": {"resourceType": kind}}


def _content(schema: dict[str, Any]) -> dict[str, Any]:
    return {t: {"schema": schema} for t in _JSON_TYPES}


def _path_parameter(name: str, resource_types: list[str]) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    if name in ("type", "comp"):
        schema = {"type": "string", "enum": resource_types}
    elif name in ("id", "vid"):
        schema = {"type": "string", "pattern": r"^[A-Za-z0-9\-.]{1,64}$"}
    return {"name": name, "in": "path", "required": True, "schema": schema}


def _body(route: Route, type_: str | None) -> dict[str, Any] | None:
    if route.method not in ("POST", "PUT", "PATCH"):
        return None
    if route.path.endswith("_search"):
        return {"required": False, "content": {"application/x-www-form-urlencoded": {"schema": {"type": "object"}}}}
    content: dict[str, Any] = _content(_resource_schema(type_ if route.method != "PATCH" else None))
    if route.method == "PATCH":
        content["application/json-patch+json"] = {"schema": {"type": "array", "items": {"type": "object"}}}
        content["application/merge-patch+json"] = {"schema": {"type": "object"}}
    required = route.interaction not in ("operation", "search-system", "search-type")
    return {"required": required, "content": content}


def _search_parameters(type_: str, search_params: SearchParams) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = [{"$ref": f"{_REF}parameters/{name}"} for name in _COMMON_SEARCH]
    for sp in search_params(type_):
        if sp["name"] in _COMMON_SEARCH:
            continue
        doc = f"{sp['type']} search parameter. {sp.get('documentation', '')}".strip()
        params.append(
            {"name": sp["name"], "in": "query", "required": False, "schema": {"type": "string"}, "description": doc}
        )
    return params


def _operation(
    route: Route, type_: str | None, resource_types: list[str], search_params: SearchParams | None
) -> dict[str, Any]:
    names = _PARAM.findall(route.path)
    if type_ is not None:
        names = [n for n in names if n != "type"]
    op: dict[str, Any] = {
        "summary": f"{route.summary} ({type_})" if type_ else route.summary,
        "tags": [type_ or ("System" if route.level == "system" else "All types")],
        "operationId": f"{route.interaction}-{route.method.lower()}-{(type_ or '') + route.path or 'base'}",
        "parameters": [_path_parameter(n, resource_types) for n in names],
        "responses": {
            "200": {"description": "Success", "content": _content(_resource_schema())},
            "4XX": {"$ref": f"{_REF}responses/OperationOutcome"},
        },
    }
    if route.method == "POST" and route.interaction == "create":
        op["responses"]["201"] = {"description": "Created", "content": _content(_resource_schema(type_))}
    if type_ and search_params and route.interaction == "search-type" and route.method == "GET":
        op["parameters"] += _search_parameters(type_, search_params)
    body = _body(route, type_)
    if body:
        op["requestBody"] = body
    return op


def _type_operation(type_: str, name: str, url: str, method: str) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": f"${name} on {type_}",
        "description": f"OperationDefinition: {url}. Inputs as query parameters (GET) or a Parameters resource (POST).",
        "tags": [type_],
        "operationId": f"operation-{method}-{type_}-{name}",
        "responses": {
            "200": {"description": "Success", "content": _content(_resource_schema())},
            "4XX": {"$ref": f"{_REF}responses/OperationOutcome"},
        },
    }
    if method == "post":
        op["requestBody"] = {"required": False, "content": _content(_resource_schema())}
    return op


def _components() -> dict[str, Any]:
    parameters = {
        name: {"name": name, "in": "query", "required": False, "schema": {"type": "string"}, "description": text}
        for name, text in _COMMON_SEARCH.items()
    }
    outcome = {"description": "OperationOutcome", "content": _content(_resource_schema("OperationOutcome"))}
    return {"parameters": parameters, "responses": {"OperationOutcome": outcome}}


def openapi_document(
    routes: Iterable[Route],
    resource_types: list[str],
    base: str,
    info: dict[str, Any],
    search_params: SearchParams | None = None,
    type_operations: TypeOperations | None = None,
) -> dict[str, Any]:
    """One path per route, with each `{type}` route written out per resource type.

    With `type_operations`, each type's operations get their own path too (`/Patient/$validate`,
    `/ValueSet/$expand`), besides the generic `/{type}/${op}`.
    """
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        typed = "{type}" in route.path and "{comp}" not in route.path and "$" not in route.path
        for type_ in resource_types if typed else [None]:
            sub = route.path.replace("{type}", type_) if type_ else route.path
            path = base + sub if sub else base
            paths.setdefault(path, {})[route.method.lower()] = _operation(route, type_, resource_types, search_params)
    for type_ in resource_types if type_operations else []:
        for name, url in type_operations(type_) if type_operations else []:
            paths[f"{base}/{type_}/${name}"] = {m: _type_operation(type_, name, url, m) for m in ("get", "post")}
    return {"openapi": "3.1.0", "info": info, "paths": paths, "components": _components()}
