"""The access policy on the write path: no writing what you cannot see, no attaching data to
(or yourself to the care team of) a patient you cannot see.

https://hl7.org/fhir/R4/security.html

Called by `store_version` for every version a restricted caller writes, inside the write
transaction and before anything is stored, so the checks see the database as it was before
this write (a CareTeam that adds its own author cannot grant itself the access it needs):
- the version it replaces must be visible to the writer (else 404, as for a read);
- every patient the new version links to (the Patient compartment's parameters) must be
  visible to the writer, or be a Patient created earlier in the same transaction (a new
  patient and its first CareTeam are written together, in one transaction Bundle).
Creating a new Patient is allowed: it holds no one else's data.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from fhir_server.errors import forbidden, not_found
from fhir_server.search.access import Access
from fhir_server.search.compile.access import patient_links, visible_patients
from fhir_server.search.indexer import resource_rows
from fhir_server.search.reads import read_visible
from fhir_server.search.registry import registry
from fhir_server.storage.backend import StoredResource, WriteTx

__all__ = ["check_write"]


def check_write(
    tx: WriteTx,
    access: Access,
    previous: StoredResource | None,
    type_: str,
    id_: str,
    resource: dict[str, Any] | None,
) -> None:
    if previous is not None and not previous.deleted and read_visible(tx.conn, access, type_, id_) is None:
        raise not_found(f"{type_}/{id_} is not known")
    if resource is None or access.patients == "all":
        return
    linked = _linked_patients(type_, resource)
    if type_ == "Patient" and previous is not None and not previous.deleted:
        linked.add(id_)
    new = {s.id for s in tx.written if s.type == "Patient" and s.version == 1}
    unknown = sorted(linked - new - _visible(tx, access, linked))
    if unknown:
        raise forbidden(
            f"This {type_} links to Patient/{unknown[0]}, whose data the caller may not access "
            "(no active CareTeam of that patient includes the caller)"
        )


def _linked_patients(type_: str, resource: dict[str, Any]) -> set[str]:
    codes = set(patient_links().get(type_, ()))
    if not codes:
        return set()
    rows = resource_rows(registry(), type_, resource, only=codes).get("reference", [])
    return {r["target_id"] for r in rows if r.get("target_type") == "Patient" and r.get("target_id")}


def _visible(tx: WriteTx, access: Access, ids: set[str]) -> set[str]:
    if not ids:
        return set()
    visible = visible_patients(access)
    if visible is None:
        return set()
    if isinstance(visible, list):
        return ids & set(visible)
    sub = visible.subquery()
    found = select(sub.c[0]).where(sub.c[0].in_(sorted(ids)))
    return {row[0] for row in tx.conn.execute(found)}
