"""FHIR patch interaction: JSON Patch (RFC 6902) and FHIRPath Patch, by id or conditional.

https://hl7.org/fhir/R4/http.html#patch

The patched resource goes through the same path as an update: it is validated, versioned and
indexed; the version check (If-Match) and the patch are applied to the same current version
inside one write, so no concurrent update slips in between.
"""

from __future__ import annotations

from typing import Any

from fhir_server.context import RequestContext
from fhir_server.errors import gone, invalid, not_found, precondition_failed, processing
from fhir_server.fhir.json import loads
from fhir_server.fhir.patch import apply_fhirpath_patch, apply_json_patch
from fhir_server.fhir.resource import valid_id
from fhir_server.interactions.common import WriteResult, check_resource, check_type, store_version
from fhir_server.interactions.conditional import criteria, resolve
from fhir_server.interactions.update import check_version
from fhir_server.storage import Storage, StoredResource, WriteTx

__all__ = ["conditional_patch", "parse_patch", "patch", "patch_in"]

JSON_PATCH = "json-patch"
FHIRPATH_PATCH = "fhirpath-patch"


def parse_patch(kind: str, body: Any) -> Any:
    if kind == JSON_PATCH:
        if not isinstance(body, list):
            raise invalid("A JSON Patch document must be a JSON array of operations")
        return body
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise invalid("A FHIRPath Patch must be a Parameters resource")
    return body


def _apply(ctx: RequestContext, current: StoredResource, kind: str, document: Any) -> dict[str, Any]:
    assert current.body is not None
    resource = loads(current.body)
    patched = apply_json_patch(resource, document) if kind == JSON_PATCH else apply_fhirpath_patch(resource, document)
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
    document = parse_patch(kind, body)

    result = await store.write(lambda tx: patch_in(tx, ctx, type_, id_, kind, document, if_match), ctx)
    return result


async def conditional_patch(
    ctx: RequestContext, store: Storage, type_: str, query: str, kind: str, body: Any, if_match: int | None = None
) -> WriteResult:
    check_type(type_)
    params = criteria(query)
    document = parse_patch(kind, body)

    def run(tx: WriteTx) -> WriteResult:
        matches = resolve(tx, type_, params, limit=2)
        if not matches:
            raise not_found(f"No {type_} matches '{query}'")
        if len(matches) > 1:
            raise precondition_failed(f"Criteria '{query}' match more than one {type_}: be more selective")
        return patch_in(tx, ctx, type_, matches[0][1], kind, document, if_match)

    result = await store.write(run, ctx)
    return result
