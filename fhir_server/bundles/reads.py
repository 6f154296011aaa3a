"""GET entries of a batch or transaction: read, vread, history and search.

https://hl7.org/fhir/R4/http.html#transaction
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from fhir_server.bundles.entries import BundleEntry
from fhir_server.context import RequestContext
from fhir_server.interactions import history, read, search
from fhir_server.storage import Storage

__all__ = ["read_entry"]


async def read_entry(ctx: RequestContext, store: Storage, e: BundleEntry) -> tuple[str, bytes]:
    """(status, body) of a GET entry; FhirError as for the same plain HTTP request."""
    params = parse_qsl(e.query or "", keep_blank_values=True)
    if e.id_ is not None and e.vid is not None:
        version = await read.vread(ctx, store, e.type_, e.id_, e.vid)
        assert version.body is not None
        return "200 OK", version.body
    if e.operation == "_history":
        return "200 OK", await history.history(ctx, store, e.type_, e.id_, params)
    if e.id_ is not None:
        found = await read.read(ctx, store, e.type_, e.id_)
        assert found.body is not None
        return "200 OK", found.body
    return "200 OK", await search.search_type(ctx, store, e.type_, params)
