"""FHIR patch interaction: JSON Patch, FHIRPath Patch and JSON Merge Patch, by id or conditional.

https://hl7.org/fhir/R4/http.html#patch

Formats: `application/json-patch+json` (RFC 6902), a Parameters resource sent as FHIR JSON
(FHIRPath Patch), `application/merge-patch+json` (RFC 7386), and, as Aidbox does for clients such
as fhirpy, a partial resource of the URL's type (or a JSON object with no resourceType) sent as
FHIR JSON, which is read as a merge patch.

The patched resource goes through the same path as an update: it is validated, versioned and
indexed; the version check (If-Match) and the patch are applied to the same current version
inside one write, so no concurrent update slips in between.
"""

from __future__ import annotations

from typing import Any

from fhir_server.context import RequestContext
from fhir_server.errors import gone, invalid, not_found, precondition_failed, processing
from fhir_server.fhir.json import loads
from fhir_server.fhir.merge_patch import apply_merge_patch
from fhir_server.fhir.patch import apply_fhirpath_patch, apply_json_patch
from fhir_server.fhir.resource import valid_id
from fhir_server.interactions.common import WriteResult, check_resource, check_type, store_version
from fhir_server.interactions.conditional import criteria, resolve
from fhir_server.interactions.update import check_version
from fhir_server.storage import Storage, StoredResource, WriteTx

__all__ = [
    "FHIRPATH_PATCH",
    "JSON_PATCH",
    "MERGE_PATCH",
    "RESOURCE_BODY",
    "conditional_patch",
    "parse_patch",
    "patch",
    "patch_in",
]

JSON_PATCH = "json-patch"
FHIRPATH_PATCH = "fhirpath-patch"
MERGE_PATCH = "merge-patch"
RESOURCE_BODY = "resource"  # a FHIR JSON body: a Parameters (FHIRPath Patch) or a partial resource
ACCEPTED = (
    "application/json-patch+json (a JSON Patch array), application/merge-patch+json (a JSON Merge Patch), "
    "or application/fhir+json with a Parameters resource (FHIRPath Patch) or a partial {type} (merge patch)"
)


def parse_patch(kind: str, body: Any, type_: str) -> tuple[str, Any]:
    """The patch format and document; 400 naming the accepted formats when it is none of them."""
    if kind == JSON_PATCH:
        if not isinstance(body, list):
            raise invalid("A JSON Patch document must be a JSON array of operations; accepted: " + _accepted(type_))
        return JSON_PATCH, body
    if kind == MERGE_PATCH:
        if not isinstance(body, dict):
            raise invalid("A JSON Merge Patch must be a JSON object; accepted: " + _accepted(type_))
        if body.get("resourceType", type_) != type_:
            raise invalid(f"This merge patch is a {body.get('resourceType')}, not a {type_}")
        return MERGE_PATCH, body
    if isinstance(body, dict) and body.get("resourceType") == "Parameters" and type_ != "Parameters":
        return FHIRPATH_PATCH, body
    if isinstance(body, dict) and body.get("resourceType", type_) == type_:
        # fhirpy's resource.patch(active=True) sends {"active": true}: no resourceType at all
        return MERGE_PATCH, body
    found = body.get("resourceType") if isinstance(body, dict) else type(body).__name__
    raise invalid(f"The PATCH body ({found}) is not a patch this server reads; accepted: " + _accepted(type_))


def _accepted(type_: str) -> str:
    return ACCEPTED.format(type=type_)


def _apply(ctx: RequestContext, current: StoredResource, kind: str, document: Any) -> dict[str, Any]:
    assert current.body is not None
    resource = loads(current.body)
    if kind == JSON_PATCH:
        patched = apply_json_patch(resource, document)
    elif kind == MERGE_PATCH:
        patched = apply_merge_patch(resource, document)
    else:
        patched = apply_fhirpath_patch(resource, document)
    if patched.get("resourceType") != current.type or patched.get("id") != current.id:
        raise processing("A patch may not change the resource's type or id")
    return check_resource(ctx, current.type, patched)


def patch_in(
    tx: WriteTx, ctx: RequestContext, type_: str, id_: str, kind: str, document: Any, if_match: int | None
) -> WriteResult:
    """Apply a parsed patch to the current version, inside a write transaction."""
    current = tx.current(type_, id_)
    if current is None:
        raise not_found(f"{type_}/{id_} is not known")
    if current.deleted:
        raise gone(f"{type_}/{id_} was deleted")
    check_version(current, if_match, f"{type_}/{id_}")
    patched = _apply(ctx, current, kind, document)
    return WriteResult(store_version(tx, current, type_, id_, patched, "PATCH"), created=False)


async def patch(
    ctx: RequestContext, store: Storage, type_: str, id_: str, kind: str, body: Any, if_match: int | None = None
) -> WriteResult:
    check_type(type_)
    if not valid_id(id_):
        raise invalid(f"'{id_}' is not a valid resource id")
    kind, document = parse_patch(kind, body, type_)

    result = await store.write(lambda tx: patch_in(tx, ctx, type_, id_, kind, document, if_match), ctx)
    return result


async def conditional_patch(
    ctx: RequestContext, store: Storage, type_: str, query: str, kind: str, body: Any, if_match: int | None = None
) -> WriteResult:
    check_type(type_)
    params = criteria(query)
    kind, document = parse_patch(kind, body, type_)

    def run(tx: WriteTx) -> WriteResult:
        matches = resolve(tx, type_, params, limit=2)
        if not matches:
            raise not_found(f"No {type_} matches '{query}'")
        if len(matches) > 1:
            raise precondition_failed(f"Criteria '{query}' match more than one {type_}: be more selective")
        return patch_in(tx, ctx, type_, matches[0][1], kind, document, if_match)

    result = await store.write(run, ctx)
    return result
