"""FHIR batch and transaction interactions.

https://hl7.org/fhir/R4/http.html#transaction

A transaction runs every write entry in one database transaction: all succeed or none is
kept. Entries are processed in the order the spec sets (DELETE, POST, PUT, PATCH, then GET),
ids are chosen for the POSTs first so that `urn:uuid` references and conditional references can
be rewritten before any resource is validated and stored. Reads run once the writes have
committed. A batch runs each entry on its own, through the same functions as plain HTTP, and
reports each failure in that entry's response.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

from fhir_server.bundles.entries import BundleEntry, annotate, parse_bundle
from fhir_server.bundles.references import conditional_references, rewrite_references
from fhir_server.context import RequestContext
from fhir_server.errors import FhirError, invalid, issue, outcome, precondition_failed
from fhir_server.fhir.bundles import bundle_bytes, entry_bytes
from fhir_server.fhir.json import loads
from fhir_server.fhir.resource import instant, new_id
from fhir_server.interactions import create, delete, patch, update
from fhir_server.interactions.common import WriteResult, check_resource, store_version
from fhir_server.interactions.conditional import criteria, resolve
from fhir_server.storage import Storage, StoredResource, WriteTx

__all__ = ["Dispatch", "EntryResult", "process_bundle"]

# The processing order of a transaction's entries (R4 http.html#trules).
ORDER = ("DELETE", "POST", "PUT", "PATCH", "GET")


# Serves one entry as the API serves the same HTTP request: (status, headers, body).
Dispatch = Callable[[BundleEntry], Awaitable[tuple[int, dict[str, str], bytes]]]


@dataclass
class EntryResult:
    status: str
    stored: StoredResource | None = None
    body: bytes | None = None  # a read's or an error's answer
    outcome: dict[str, Any] | None = None
    location: str | None = None  # the answer of a routed entry
    etag: str | None = None
    last_modified: str | None = None


async def process_bundle(
    ctx: RequestContext, store: Storage, body: Any, prefer_return: str, dispatch: Dispatch
) -> bytes:
    """A batch serves every entry through `dispatch` (the route table); a transaction writes its
    write entries in one database transaction, then serves its reads through `dispatch`."""
    kind, entries = parse_bundle(body, ctx.base_url, ctx.settings.max_bundle_entries)
    if kind == "transaction":
        results = await _transaction(ctx, store, entries, dispatch)
    else:
        results = [await _routed(dispatch, e) for e in entries]
    return _response(ctx, f"{kind}-response", entries, results, prefer_return)


# -- transaction -------------------------------------------------------------------------
async def _transaction(
    ctx: RequestContext, store: Storage, entries: list[BundleEntry], dispatch: Dispatch
) -> list[EntryResult]:
    _check_overlap(entries)
    by_method = {m: [e for e in entries if e.method == m] for m in ORDER}
    results: dict[int, EntryResult] = {}

    def run(tx: WriteTx) -> dict[int, EntryResult]:
        results.clear()
        for e in by_method["DELETE"]:
            results[e.index] = _guarded(e, lambda e=e: _delete(ctx, tx, e))
        ids = {
            e.index: _guarded(e, lambda e=e: _choose_id(tx, e, results)) for e in by_method["POST"] + by_method["PUT"]
        }
        mapping = _mapping(tx, entries, ids)
        for e in by_method["POST"] + by_method["PUT"]:
            if e.index not in results:
                results[e.index] = _guarded(e, lambda e=e: _write(ctx, tx, e, ids[e.index], mapping))
        for e in by_method["PATCH"]:
            results[e.index] = _guarded(e, lambda e=e: _written(_patch(ctx, tx, e)))
        return dict(results)

    done = await store.write(run, ctx)
    for e in by_method["GET"]:
        done[e.index] = await _routed(dispatch, e)
    return [done[e.index] for e in entries]


def _guarded(entry: BundleEntry, step: Any) -> Any:
    try:
        return step()
    except FhirError as exc:
        raise annotate(exc, entry) from None


def _check_overlap(entries: list[BundleEntry]) -> None:
    seen: dict[str, int] = {}
    for e in entries:
        if e.method == "GET" or not e.id_:
            continue
        key = f"{e.type_}/{e.id_}"
        if key in seen:
            raise invalid(f"Bundle.entry[{seen[key]}] and Bundle.entry[{e.index}] both write {key} in one transaction")
        seen[key] = e.index


def _delete(ctx: RequestContext, tx: WriteTx, e: BundleEntry) -> EntryResult:
    if e.query is not None:
        deleted = delete.conditional_delete_in(tx, ctx.settings, e.type_, criteria(e.query), e.query)
    else:
        assert e.id_ is not None
        one = delete.delete_in(tx, e.type_, e.id_, e.if_match)
        deleted = [one] if one else []
    return _deleted(e, deleted)


def _deleted(e: BundleEntry, deleted: list[StoredResource]) -> EntryResult:
    """As plain REST answers: 204 when something was deleted, else 200 with an OperationOutcome."""
    if deleted:
        return EntryResult("204 No Content", deleted[0] if len(deleted) == 1 else None)
    what = f"{e.type_}?{e.query}" if e.query is not None else f"{e.type_}/{e.id_}"
    return EntryResult("200 OK", outcome=delete.deletion_outcome([], what))


def _choose_id(tx: WriteTx, e: BundleEntry, results: dict[int, EntryResult]) -> str:
    """The id a POST or PUT entry writes; a matching conditional create is answered right away."""
    assert e.resource is not None
    if e.method == "POST":
        if e.if_none_exist:
            existing = create.find_existing(tx, e.type_, criteria(e.if_none_exist), e.if_none_exist)
            if existing is not None:
                results[e.index] = EntryResult("200 OK", existing)
                return existing.id
        return new_id()
    if e.query is not None:
        id_, _matched = update.conditional_target(tx, e.type_, criteria(e.query), e.query, e.resource.get("id"))
        return id_
    assert e.id_ is not None
    if e.resource.get("id") != e.id_:
        raise invalid(f"The resource id '{e.resource.get('id')}' must equal the url's id '{e.id_}'")
    return e.id_


def _mapping(tx: WriteTx, entries: list[BundleEntry], ids: dict[int, str]) -> dict[str, str]:
    """fullUrl -> Type/id for the entries written, and conditional references -> Type/id."""
    mapping: dict[str, str] = {}
    for e in entries:
        if e.index in ids and e.full_url:
            mapping[e.full_url] = f"{e.type_}/{ids[e.index]}"
    for e in entries:
        if e.index not in ids:
            continue
        for ref in conditional_references(e.resource):
            type_, _, query = ref.partition("?")
            matches = _guarded(e, lambda t=type_, q=query: resolve(tx, t, criteria(q), limit=2))
            if len(matches) != 1:
                found = "no" if not matches else "several"
                raise annotate(precondition_failed(f"The conditional reference {ref} matches {found} resources"), e)
            mapping[ref] = f"{type_}/{matches[0][1]}"
    return mapping


def _write(ctx: RequestContext, tx: WriteTx, e: BundleEntry, id_: str, mapping: dict[str, str]) -> EntryResult:
    resource = rewrite_references({**(e.resource or {}), "id": id_}, mapping)
    resource = check_resource(ctx, e.type_, resource)
    if e.method == "POST":
        return EntryResult("201 Created", store_version(tx, None, e.type_, id_, resource, "POST"))
    return _written(update.update_in(tx, e.type_, id_, resource, e.if_match))


def _patch(ctx: RequestContext, tx: WriteTx, e: BundleEntry) -> WriteResult:
    id_ = e.id_
    if id_ is None:
        assert e.query is not None
        matches = resolve(tx, e.type_, criteria(e.query), limit=2)
        if len(matches) != 1:
            raise precondition_failed(f"Criteria '{e.query}' must match exactly one {e.type_}")
        id_ = matches[0][1]
    return patch.patch_in(tx, ctx, e.type_, id_, str(e.patch_kind), e.resource, e.if_match)


def _written(result: WriteResult) -> EntryResult:
    return EntryResult("201 Created" if result.created else "200 OK", result.stored)


# -- batch and reads: through the route table ---------------------------------------------
async def _routed(dispatch: Dispatch, e: BundleEntry) -> EntryResult:
    """An entry served by the same route, handler and headers as the plain HTTP request."""
    status, headers, body = await dispatch(e)
    result = EntryResult(_status_text(status))
    if status >= 400:
        result.outcome = loads(body) if body else outcome([issue(f"HTTP {status}", "processing")])
    elif body and e.method != "GET" and "$" not in e.path and b'"resourceType":"OperationOutcome"' in body[:48]:
        result.outcome = loads(body)  # a write's Prefer: return=OperationOutcome, or a delete's message
    elif body:
        result.body = body
    result.location = headers.get("location")
    result.etag = headers.get("etag")
    modified = headers.get("last-modified")
    if modified:
        result.last_modified = instant(int(parsedate_to_datetime(modified).timestamp() * 1_000_000))
    return result


# -- response ----------------------------------------------------------------------------
_REASONS = {
    200: "OK",
    201: "Created",
    204: "No Content",
    304: "Not Modified",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    410: "Gone",
    412: "Precondition Failed",
    413: "Payload Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Entity",
}


def _status_text(status: int) -> str:
    return f"{status} {_REASONS.get(status, '')}".strip()


def _response(
    ctx: RequestContext, kind: str, entries: list[BundleEntry], results: list[EntryResult], prefer_return: str
) -> bytes:
    out = []
    for e, r in zip(entries, results, strict=True):
        response: dict[str, Any] = {"status": r.status}
        fields: dict[str, Any] = {}
        body = r.body
        if r.stored is not None:
            s = r.stored
            fields["fullUrl"] = f"{ctx.base_url}/{s.type}/{s.id}"
            response["location"] = f"{s.type}/{s.id}/_history/{s.version}"
            response["etag"] = f'W/"{s.version}"'
            response["lastModified"] = instant(s.last_updated)
            if prefer_return == "representation" and not s.deleted:
                body = s.body
            elif prefer_return == "OperationOutcome":
                response["outcome"] = outcome(
                    [issue(f"{e.method} {e.url}: {r.status}", "informational", "information")]
                )
        elif r.location is not None:
            path = r.location.removeprefix(ctx.base_url + "/")
            fields["fullUrl"] = f"{ctx.base_url}/{path.split('/_history/')[0]}"
            response["location"] = path
        if r.stored is None and r.etag:
            response["etag"] = r.etag
        if r.stored is None and r.last_modified:
            response["lastModified"] = r.last_modified
        if r.outcome is not None:
            response["outcome"] = r.outcome
        out.append(entry_bytes(fields, body, {"response": response}))
    header = {"resourceType": "Bundle", "type": kind, "link": [{"relation": "self", "url": ctx.base_url}]}
    return bundle_bytes(header, out)
