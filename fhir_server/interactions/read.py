"""FHIR read and vread interactions.

https://hl7.org/fhir/R4/http.html#read

A caller with unrestricted access reads through the storage's point-read fast path; anyone
else through `search.reads`, whose SQL carries the access clause: a resource they may not see
is not found (404), so its existence does not leak.
"""

from __future__ import annotations

from fhir_server.context import RequestContext
from fhir_server.errors import gone, not_found
from fhir_server.fhir.resource import valid_id
from fhir_server.interactions.common import check_type
from fhir_server.search.reads import read_statement, vread_statement
from fhir_server.storage import HistoryEntry, Storage, StoredResource
from fhir_server.storage.backend import current_row, version_row

__all__ = ["read", "vread"]


async def read(ctx: RequestContext, store: Storage, type_: str, id_: str) -> StoredResource:
    check_type(type_)
    ctx.require(type_, "r")
    found = None
    if valid_id(id_):
        access = ctx.access
        if access.unrestricted:
            found = await store.read(type_, id_)
        else:
            stmt = read_statement(access, type_, store.dialect)
            found = current_row(await store.point_select(stmt, {"i": id_}))
    if found is None:
        raise not_found(f"{type_}/{id_} is not known")
    if found.deleted:
        raise gone(f"{type_}/{id_} was deleted", headers={"ETag": f'W/"{found.version}"'})
    return found


async def vread(ctx: RequestContext, store: Storage, type_: str, id_: str, vid: str) -> HistoryEntry:
    check_type(type_)
    ctx.require(type_, "r")
    found = None
    if valid_id(id_) and vid.isdigit() and len(vid) < 10:
        access, version = ctx.access, int(vid)
        if access.unrestricted:
            found = await store.vread(type_, id_, version)
        else:
            stmt = vread_statement(access, type_, store.dialect)
            found = version_row(await store.point_select(stmt, {"i": id_, "v": version}))
    if found is None:
        raise not_found(f"{type_}/{id_}/_history/{vid} is not known")
    if found.deleted:
        raise gone(f"Version {vid} of {type_}/{id_} is a deletion", headers={"ETag": f'W/"{found.version}"'})
    return found
