"""FHIR read and vread interactions.

https://hl7.org/fhir/R4/http.html#read
"""

from __future__ import annotations

from fhir_server.errors import gone, not_found
from fhir_server.fhir.resource import valid_id
from fhir_server.interactions.common import check_type
from fhir_server.storage import HistoryEntry, Storage, StoredResource

__all__ = ["read", "vread"]


async def read(store: Storage, type_: str, id_: str) -> StoredResource:
    check_type(type_)
    found = await store.read(type_, id_) if valid_id(id_) else None
    if found is None:
        raise not_found(f"{type_}/{id_} is not known")
    if found.deleted:
        raise gone(f"{type_}/{id_} was deleted", headers={"ETag": f'W/"{found.version}"'})
    return found


async def vread(store: Storage, type_: str, id_: str, vid: str) -> HistoryEntry:
    check_type(type_)
    found = None
    if valid_id(id_) and vid.isdigit() and len(vid) < 10:
        found = await store.vread(type_, id_, int(vid))
    if found is None:
        raise not_found(f"{type_}/{id_}/_history/{vid} is not known")
    if found.deleted:
        raise gone(f"Version {vid} of {type_}/{id_} is a deletion", headers={"ETag": f'W/"{found.version}"'})
    return found
