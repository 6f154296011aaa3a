"""FHIR create interaction, plain and conditional (If-None-Exist).

https://hl7.org/fhir/R4/http.html#create
"""

from __future__ import annotations

from typing import Any

from fhir_server.context import RequestContext
from fhir_server.errors import precondition_failed
from fhir_server.fhir.resource import new_id
from fhir_server.interactions.common import WriteResult, check_resource, check_type, store_version
from fhir_server.interactions.conditional import criteria, resolve
from fhir_server.storage import Storage, StoredResource, WriteTx

__all__ = ["create", "find_existing"]


def find_existing(tx: WriteTx, type_: str, params: list[tuple[str, str]], query: str) -> StoredResource | None:
    """The one resource If-None-Exist criteria match, None for none, 412 for several."""
    matches = resolve(tx, type_, params, limit=2)
    if len(matches) > 1:
        raise precondition_failed(f"If-None-Exist criteria '{query}' match more than one {type_}: be more selective")
    return tx.current(type_, matches[0][1]) if matches else None


async def create(
    ctx: RequestContext, store: Storage, type_: str, body: Any, if_none_exist: str | None = None
) -> WriteResult:
    """Store `body` under a new server-assigned id (any id in the body is ignored, per spec)."""
    check_type(type_)
    resource = check_resource(ctx, type_, body)
    params = criteria(if_none_exist) if if_none_exist is not None else None

    def run(tx: WriteTx) -> WriteResult:
        if params is not None:
            existing = find_existing(tx, type_, params, str(if_none_exist))
            if existing is not None:
                return WriteResult(existing, created=False, existing=True)
        return WriteResult(store_version(tx, None, type_, new_id(), resource, "POST"), created=True)

    result = await store.write(run, ctx)
    return result
