"""Shared steps of the write interactions: check the body, store a version, index it.

https://hl7.org/fhir/R4/http.html#create
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from fhir_server.context import RequestContext
from fhir_server.definitions import resource_types
from fhir_server.errors import FhirError, invalid, not_found, processing
from fhir_server.fhir.resource import new_id, stamp
from fhir_server.search.indexer import write_index, write_indexes
from fhir_server.search.reindex import indexable, register_search_parameter
from fhir_server.search.writes import check_write
from fhir_server.storage import StoredResource, WriteTx
from fhir_server.storage.backend import now_micros
from fhir_server.validation.structure import validate_structure

__all__ = ["WriteResult", "check_resource", "check_type", "store_server_records", "store_version"]

log = logging.getLogger("fhir_server")


@dataclass(frozen=True, slots=True)
class WriteResult:
    stored: StoredResource
    created: bool  # 201 rather than 200
    existing: bool = False  # conditional create matched: nothing was written


# Never changed through the API once written: the audit trail.
APPEND_ONLY = frozenset({"AuditEvent"})


def check_type(type_: str) -> None:
    if type_ not in resource_types():
        raise not_found(f"Unknown resource type '{type_}': not an R4 resource type")


def check_resource(ctx: RequestContext, type_: str, body: Any) -> dict[str, Any]:
    """Structural and profile validation of a request body; 400/422 with every issue found."""
    if not isinstance(body, dict):
        raise invalid("The body must be a JSON object holding a FHIR resource")
    actual = body.get("resourceType")
    if actual != type_:
        raise invalid(
            f"resourceType '{actual}' does not match the URL's type '{type_}'", expression="resourceType"
        )
    issues = validate_structure(body)
    if _errors(issues):
        raise FhirError(400, _summary(issues), "structure", issues=issues)
    issues = ctx.validate_profiles(body)
    if _errors(issues):
        raise processing(_summary(issues), issues=issues)
    for found in (i for i in issues if i.get("severity") == "warning"):
        ctx.warnings.append(found)
        log.warning("%s accepted with a warning: %s (request %s)", type_, found.get("diagnostics"),
                    ctx.request_id or "-")
    return body


def _errors(issues: list[dict[str, Any]]) -> bool:
    return any(i.get("severity") in ("error", "fatal") for i in issues)


def _summary(issues: list[dict[str, Any]]) -> str:
    errors = [i for i in issues if i.get("severity") in ("error", "fatal")]
    return errors[0].get("diagnostics", "Invalid resource")


def store_version(
    tx: WriteTx,
    previous: StoredResource | None,
    type_: str,
    id_: str,
    resource: dict[str, Any] | None,
    method: str,
    system: bool = False,
) -> StoredResource:
    """Write the next version of `type_/id_` (None = a deletion) and its index rows.

    The one function every stored version passes through, whichever interaction writes it:
    it checks the writer's access (`search.writes.check_write`), stores the version, indexes
    it and records it on the transaction (`WriteTx.record`, which runs the write hooks).
    """
    version = previous.version + 1 if previous else 1
    last_updated = now_micros()
    if previous and last_updated <= previous.last_updated:
        last_updated = previous.last_updated + 1  # versions of one resource keep strict time order
    stored, body = stamp(resource, id_, version, last_updated) if resource is not None else (None, None)
    if tx.ctx is not None and not system:  # the server's own records (audit) are not the caller's writes
        fresh = previous is None or previous.deleted
        if type_ in APPEND_ONLY and not fresh:
            raise FhirError(405, f"{type_} is append-only: it cannot be updated or deleted", "not-supported")
        tx.ctx.require(type_, "d" if resource is None else ("c" if fresh else "u"))
        if not tx.ctx.access.unrestricted:
            check_write(tx, tx.ctx.access, previous, type_, id_, stored)
    rid = tx.put(previous, type_, id_, version, last_updated, method, body)
    write_index(tx.conn, rid, type_, stored)
    if type_ == "SearchParameter" and stored is not None and indexable(stored):
        register_search_parameter(tx.conn, stored)
    return tx.record(StoredResource(rid, type_, id_, version, last_updated, body is None, body))


def store_server_records(tx: WriteTx, type_: str, resources: list[dict[str, Any]]) -> list[StoredResource]:
    """The bulk form of `store_version` for the server's own new records (AuditEvents queued by
    reads): server ids, first versions, one INSERT per table for the whole batch. Each version
    is recorded on the transaction like any other (`WriteTx.record`)."""
    rows = []
    stamped = []
    for resource in resources:
        id_, last_updated = new_id(), now_micros()
        stored, body = stamp(resource, id_, 1, last_updated)
        rows.append((type_, id_, last_updated, "POST", body))
        stamped.append(stored)
    rids = tx.put_new(rows)
    write_indexes(tx.conn, [(rid, type_, stored, True) for rid, stored in zip(rids, stamped, strict=True)])
    return [
        tx.record(StoredResource(rid, type_, id_, 1, last_updated, False, body))
        for rid, (_t, id_, last_updated, _m, body) in zip(rids, rows, strict=True)
    ]
