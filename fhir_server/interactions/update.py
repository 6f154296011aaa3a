"""FHIR update interaction: by id (with update-as-create and If-Match), and conditional.

https://hl7.org/fhir/R4/http.html#update
"""

from __future__ import annotations

from typing import Any

from fhir_server.context import RequestContext
from fhir_server.errors import invalid, not_found, precondition_failed
from fhir_server.fhir.resource import new_id, valid_id
from fhir_server.interactions.common import WriteResult, check_resource, check_type, store_version
from fhir_server.interactions.conditional import criteria, resolve, visible_to
from fhir_server.storage import Storage, StoredResource, WriteTx

__all__ = ["check_version", "conditional_target", "conditional_update", "update", "update_in"]


def check_version(current: StoredResource | None, if_match: int | None, what: str) -> None:
    """412 unless the current version is the one the client's If-Match names."""
    if if_match is not None and (current is None or current.version != if_match):
        have = f"version {current.version}" if current else "no version"
        raise precondition_failed(f"If-Match asks for version {if_match} of {what}, but it has {have}")


def update_in(tx: WriteTx, type_: str, id_: str, resource: dict[str, Any], if_match: int | None) -> WriteResult:
    """The update itself, inside a write transaction (also used by transaction bundles)."""
    current = tx.current(type_, id_)
    check_version(current, if_match, f"{type_}/{id_}")
    created = current is None or current.deleted
    return WriteResult(store_version(tx, current, type_, id_, resource, "PUT"), created=created)


def conditional_target(
    tx: WriteTx, type_: str, params: list[tuple[str, str]], query: str, body_id: Any
) -> tuple[str, bool]:
    """(id to write, whether it matched) for PUT [type]?[criteria]: 412 when several match."""
    matches = resolve(tx, type_, params, limit=2)
    if len(matches) > 1:
        raise precondition_failed(f"Criteria '{query}' match more than one {type_}: be more selective")
    if matches:
        id_ = matches[0][1]
        if body_id is not None and body_id != id_:
            raise invalid(f"The resource id '{body_id}' differs from the matched resource '{id_}'")
        return id_, True
    id_ = body_id or new_id()
    current = tx.current(type_, id_)
    if current is not None and not current.deleted:
        if not visible_to(tx, type_, id_):
            raise not_found(f"{type_}/{id_} is not known")  # hidden: its existence must not leak
        raise invalid(f"{type_}/{id_} exists but does not match the criteria '{query}'")
    return id_, False


async def update(
    ctx: RequestContext, store: Storage, type_: str, id_: str, body: Any, if_match: int | None = None
) -> WriteResult:
    check_type(type_)
    if not valid_id(id_):
        raise invalid(f"'{id_}' is not a valid resource id ([A-Za-z0-9-.]{{1,64}})")
    resource = check_resource(ctx, type_, body)
    if "id" not in resource:
        raise invalid(f"The resource must carry id '{id_}' to be updated at {type_}/{id_}", expression="id")
    if resource["id"] != id_:
        raise invalid(f"The resource id '{resource['id']}' differs from the URL's id '{id_}'", expression="id")

    result = await store.write(lambda tx: update_in(tx, type_, id_, resource, if_match), ctx)
    return result


async def conditional_update(
    ctx: RequestContext, store: Storage, type_: str, query: str, body: Any, if_match: int | None = None
) -> WriteResult:
    """PUT [type]?[criteria]: update the one match, create when none, 412 when several."""
    check_type(type_)
    resource = check_resource(ctx, type_, body)
    params = criteria(query)
    body_id = resource.get("id")
    if body_id is not None and not valid_id(str(body_id)):
        raise invalid(f"'{body_id}' is not a valid resource id", expression="id")

    def run(tx: WriteTx) -> WriteResult:
        id_, _matched = conditional_target(tx, type_, params, query, body_id)
        return update_in(tx, type_, id_, {**resource, "id": id_}, if_match)

    result = await store.write(run, ctx)
    return result
