"""Routes of the $operations: $validate on every type, terminology operations on their types.

https://hl7.org/fhir/R4/operations.html
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from fhir_server.api.http import context, fhir_response, query_params, read_body, response_type, storage
from fhir_server.errors import not_found
from fhir_server.fhir.json import dumps
from fhir_server.interactions.common import check_type
from fhir_server.operations.params import OperationInput
from fhir_server.operations.reindex import reindex_operation
from fhir_server.operations.terminology import OPERATIONS
from fhir_server.operations.validate import validate_operation
from fhir_server.validation.service import ProfileService

__all__ = [
    "OPERATION_DEFINITIONS",
    "instance_operation_route",
    "system_operation_route",
    "type_operation_route",
    "type_operations",
]

# Listed in the CapabilityStatement; each name is implemented below.
OPERATION_DEFINITIONS: dict[str, str] = {
    "validate": "http://hl7.org/fhir/OperationDefinition/Resource-validate",
    "expand": "http://hl7.org/fhir/OperationDefinition/ValueSet-expand",
    "validate-code": "http://hl7.org/fhir/OperationDefinition/ValueSet-validate-code",
    "lookup": "http://hl7.org/fhir/OperationDefinition/CodeSystem-lookup",
    "translate": "http://hl7.org/fhir/OperationDefinition/ConceptMap-translate",
    # Not an HL7-defined operation: HAPI and Microsoft's servers offer the same name.
    "reindex": "https://fhir.coordination-sante.fr/OperationDefinition/reindex",
}


def type_operations(type_: str) -> list[tuple[str, str]]:
    """(name, OperationDefinition url) of the operations `type_` answers, for the CapabilityStatement."""
    ops = [("validate", OPERATION_DEFINITIONS["validate"])]
    for (op_type, name), _ in OPERATIONS.items():
        if op_type == type_:
            ops.append((name, f"http://hl7.org/fhir/OperationDefinition/{type_}-{name}"))
    return ops


async def _inputs(request: Request) -> OperationInput:
    body = None
    if request.method == "POST":
        body, _ = await read_body(request, request.app.state.settings.max_body_bytes)
    return OperationInput(query_params(request), body)


async def _run(request: Request, type_: str, id_: str | None, op: str) -> Response:
    media = response_type(request)
    check_type(type_)
    inputs = await _inputs(request)
    profiles: ProfileService = request.app.state.profiles
    result: Any
    if op == "validate":
        result = await validate_operation(profiles, context(request), storage(request), type_, id_, inputs)
    elif (type_, op) in OPERATIONS:
        result = await OPERATIONS[(type_, op)](profiles.registry, context(request), storage(request), id_, inputs)
    else:
        raise not_found(f"Operation ${op} is not defined on {type_}")
    return fhir_response(request, dumps(result), 200, None, media)


async def system_operation_route(request: Request, op: str) -> Response:
    media = response_type(request)
    if op != "reindex":
        raise not_found(f"Operation ${op} is not defined at the system level")
    inputs = await _inputs(request)
    result = await reindex_operation(storage(request), request.method, inputs, request.app.state.jobs)
    return fhir_response(request, dumps(result), 200, None, media)


async def type_operation_route(request: Request, type: str, op: str) -> Response:
    return await _run(request, type, None, op)


async def instance_operation_route(request: Request, type: str, id: str, op: str) -> Response:
    return await _run(request, type, id, op)
