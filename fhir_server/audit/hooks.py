"""Provenance and AuditEvent of every write, in the write's own transaction.

https://hl7.org/fhir/R4/provenance.html

An in-transaction hook of the write seam (`WriteTx.record`): each version a caller stores
gets a Provenance (agent, versioned target, activity) and an AuditEvent, written in the same
transaction, so a write and its record are kept or lost together. Server work (no request
context) and auth-off requests (no identity to record) are not recorded; neither are the
records themselves.
"""

from __future__ import annotations

from fhir_server import clock
from fhir_server.audit.records import audit_event, provenance
from fhir_server.interactions.common import store_version
from fhir_server.storage import StoredResource, WriteTx

__all__ = ["RECORD_TYPES", "record_write"]

RECORD_TYPES = frozenset({"AuditEvent", "Provenance"})
_INTERACTION = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


def record_write(tx: WriteTx, stored: StoredResource) -> None:
    ctx = tx.ctx
    if ctx is None or ctx.agent.kind in ("anonymous", "anonymous-off") or stored.type in RECORD_TYPES:
        return
    method = _method(tx, stored)
    target = f"{stored.type}/{stored.id}/_history/{stored.version}"
    now = clock.now_micros()
    store_version(tx, None, "Provenance", clock.new_id(), provenance(ctx.agent, target, method, now), "POST",
                  system=True)
    patient = f"Patient/{stored.id}" if stored.type == "Patient" else None
    event = audit_event(ctx.agent, _INTERACTION.get(method, "update"), method, 200, now, what=target,
                        patient=patient)
    store_version(tx, None, "AuditEvent", clock.new_id(), event, "POST", system=True)


def _method(tx: WriteTx, stored: StoredResource) -> str:
    if stored.deleted:
        return "DELETE"
    return "POST" if stored.version == 1 else "PUT"
