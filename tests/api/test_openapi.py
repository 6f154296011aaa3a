"""/openapi.json: one path per resource type with its search parameters, valid OpenAPI 3.1."""

from __future__ import annotations

import time

import httpx
from openapi_spec_validator import validate

from fhir_server.api.openapi import openapi_document
from fhir_server.api.operation_routes import type_operations
from fhir_server.api.routes import ROUTES
from fhir_server.definitions import resource_types
from fhir_server.search import capability_search_params


def test_a_small_document_is_valid_openapi() -> None:
    """The whole document takes ~20 s to validate; three types exercise every generated shape."""
    types = ["CarePlan", "Observation", "Patient", "ValueSet"]
    info = {"title": "t", "version": "1"}
    doc = openapi_document(ROUTES, types, "/fhir", info, capability_search_params, type_operations)
    validate(doc)


def test_full_document_is_fast_and_its_operation_ids_unique() -> None:
    started = time.perf_counter()
    types = sorted(resource_types())
    doc = openapi_document(
        ROUTES, types, "/fhir", {"title": "t", "version": "1"}, capability_search_params, type_operations
    )
    assert time.perf_counter() - started < 2.0
    ids = [op["operationId"] for item in doc["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))
    assert len(doc["paths"]) > 140 * 5


async def test_type_search_lists_the_registry_parameters(client: httpx.AsyncClient) -> None:
    doc = (await client.get("http://testserver/openapi.json")).json()
    search = doc["paths"]["/fhir/Patient"]["get"]
    names = {p.get("name") for p in search["parameters"]}
    assert {"family", "birthdate", "identifier", "general-practitioner"} <= names
    refs = {p["$ref"].rsplit("/", 1)[1] for p in search["parameters"] if "$ref" in p}
    assert {"_count", "_include", "_revinclude", "_summary"} <= refs
    create = doc["paths"]["/fhir/Patient"]["post"]
    assert create["requestBody"]["content"]["application/fhir+json"]["schema"]["properties"]["resourceType"][
        "enum"
    ] == ["Patient"]
    assert "/fhir/{type}" not in doc["paths"] and "/fhir/metadata" in doc["paths"]
    assert doc["paths"]["/fhir/ValueSet/$expand"]["get"]["tags"] == ["ValueSet"]
    assert "Resource-validate" in doc["paths"]["/fhir/Patient/$validate"]["post"]["description"]
