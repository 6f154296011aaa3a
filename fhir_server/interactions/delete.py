"""FHIR delete interaction, by id and conditional.

https://hl7.org/fhir/R4/http.html#delete

Deletion writes a new version marked deleted: reads then answer 410 and history keeps every
earlier version. Deleting an absent or already deleted resource succeeds and changes nothing:
over plain REST and inside a batch or transaction alike it answers 200 with an informational
OperationOutcome saying so (HAPI's answer), and 204 when something was deleted.
"""

from __future__ import annotations

from typing import Any

from fhir_server.config import Settings
from fhir_server.context import RequestContext
from fhir_server.errors import invalid, issue, outcome, precondition_failed
from fhir_server.fhir.resource import valid_id
from fhir_server.interactions.common import check_type, store_version
from fhir_server.interactions.conditional import criteria, resolve
from fhir_server.interactions.update import check_version
from fhir_server.storage import Storage, StoredResource, WriteTx

__all__ = ["conditional_delete", "conditional_delete_in", "delete", "delete_in", "deletion_outcome"]


def deletion_outcome(deleted: list[StoredResource], what: str) -> dict[str, Any]:
    """The informational OperationOutcome of a delete of `what`: who was deleted, or that none was."""
    if not deleted:
        text = f"Nothing to delete: {what} matches no current resource"
    else:
        text = "Deleted " + ", ".join(f"{d.type}/{d.id}" for d in deleted)
    return outcome([issue(text, "informational", "information")])


def delete_in(tx: WriteTx, type_: str, id_: str, if_match: int | None) -> StoredResource | None:
    """The deletion version written inside a transaction, or None when nothing was current."""
    current = tx.current(type_, id_)
    check_version(current, if_match, f"{type_}/{id_}")
    if current is None or current.deleted:
        return None
    return store_version(tx, current, type_, id_, None, "DELETE")


def conditional_delete_in(
    tx: WriteTx, settings: Settings, type_: str, params: list[tuple[str, str]], query: str
) -> list[StoredResource]:
    multiple = settings.allow_multiple_delete
    limit = settings.max_multiple_delete + 1 if multiple else 2
    matches = resolve(tx, type_, params, limit=limit)
    if len(matches) > 1 and not multiple:
        raise precondition_failed(f"Criteria '{query}' match more than one {type_}; this server deletes one at a time")
    if len(matches) >= limit:
        raise precondition_failed(f"Criteria '{query}' match more than {limit - 1} {type_}: narrow the criteria")
    deleted = (delete_in(tx, type_, id_, None) for _rid, id_ in matches)
    return [d for d in deleted if d is not None]


async def delete(
    ctx: RequestContext, store: Storage, type_: str, id_: str, if_match: int | None = None
) -> StoredResource | None:
    """The deletion version written, or None when there was nothing to delete."""
    check_type(type_)
    if not valid_id(id_):
        raise invalid(f"'{id_}' is not a valid resource id")

    return await store.write(lambda tx: delete_in(tx, type_, id_, if_match), ctx)


async def conditional_delete(
    ctx: RequestContext, store: Storage, type_: str, query: str
) -> list[StoredResource]:
    """DELETE [type]?[criteria]: one match, or several when the server is configured for it."""
    check_type(type_)
    params = criteria(query)
    return await store.write(lambda tx: conditional_delete_in(tx, ctx.settings, type_, params, query), ctx)
