"""$validate: check a resource against its type, its profiles or a given profile.

https://hl7.org/fhir/R4/resource-operation-validate.html

The answer is always 200 with an OperationOutcome; errors in it are the verdict, not a failure
of the operation.
"""

from __future__ import annotations

from typing import Any

from fhir_server.context import RequestContext
from fhir_server.errors import invalid, issue, outcome
from fhir_server.fhir.json import loads
from fhir_server.interactions.read import read
from fhir_server.operations.params import OperationInput
from fhir_server.storage import Storage
from fhir_server.validation.service import ProfileService
from fhir_server.validation.structure import validate_structure

__all__ = ["validate_operation"]

_MODES = ("create", "update", "delete")


async def validate_operation(
    profiles: ProfileService,
    ctx: RequestContext,
    store: Storage,
    type_: str,
    id_: str | None,
    inputs: OperationInput,
) -> dict[str, Any]:
    mode = inputs.text("mode")
    if mode is not None and mode not in _MODES:
        raise invalid(f"mode={mode} is not one of {', '.join(_MODES)}")
    if mode == "delete":
        if id_ is None:
            raise invalid("mode=delete needs an instance: POST [type]/[id]/$validate")
        await read(ctx, store, type_, id_)
        return outcome([issue(f"{type_}/{id_} may be deleted", "informational", "information")])
    resource = inputs.resources.get("resource")
    if resource is None:
        if id_ is None:
            raise invalid("Give the resource to validate (as the body or a 'resource' parameter)")
        stored = await read(ctx, store, type_, id_)
        assert stored.body is not None
        resource = loads(stored.body)
    if resource.get("resourceType") != type_:
        raise invalid(f"The resource is a {resource.get('resourceType')}, not a {type_}")
    if mode == "update" and id_ is not None and resource.get("id") != id_:
        raise invalid(f"mode=update: the resource id must be '{id_}'", expression="id")
    issues = validate_structure(resource)
    if not any(i["severity"] in ("error", "fatal") for i in issues):
        issues += profiles.validate(resource, inputs.text("profile"))
    if not issues:
        issues = [issue("Validation successful: no issues found", "informational", "information")]
    return outcome(issues)
