"""FHIR search interactions: type, system (`_type`) and Patient compartment searches.

https://hl7.org/fhir/R4/http.html#search and https://hl7.org/fhir/R4/search.html

Returns a searchset Bundle as bytes: each entry splices the stored resource bytes in (only
`_summary` / `_elements` re-serialise), `fullUrl` and links are absolute, `next`/`previous`
carry keyset cursors. Under `Prefer: handling=lenient` what was not understood is reported
in an OperationOutcome entry (`search.mode=outcome`); `_explain=true` adds the SQL and the
database's plan there too.
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlencode

from fhir_server import clock
from fhir_server.context import RequestContext
from fhir_server.definitions import patient_compartment
from fhir_server.errors import invalid, issue, not_found, not_supported, outcome
from fhir_server.fhir.bundles import bundle_bytes, entry_bytes
from fhir_server.fhir.json import dumps, loads
from fhir_server.fhir.resource import instant
from fhir_server.fhir.summary import subset
from fhir_server.interactions.common import check_type
from fhir_server.search import Match, SearchResult, search
from fhir_server.search.ast import Compartment, Query
from fhir_server.search.parse import Limits, parse_query
from fhir_server.search.registry import registry
from fhir_server.storage import Storage

__all__ = ["compartment_codes", "search_compartment", "search_system", "search_type"]


def _limits(ctx: RequestContext) -> Limits:
    return Limits(ctx.settings.default_page_size, ctx.settings.max_page_size)


def _parse(ctx: RequestContext, types: tuple[str, ...], params: list[tuple[str, str]], handling: str) -> Query:
    if handling not in ("strict", "lenient", ""):
        raise invalid(f"Prefer: handling={handling} is not strict or lenient")
    return parse_query(registry(), types, params, strict=handling != "lenient", limits=_limits(ctx))


async def _run(
    ctx: RequestContext, store: Storage, query: Query, base: str, compartment: Compartment | None
) -> tuple[SearchResult, tuple[str, list[str]] | None]:
    for t in query.types:
        ctx.require(t, "s")
    access = ctx.access
    return await store.run_read(lambda conn: search(conn, query, access, base, compartment))


async def search_type(
    ctx: RequestContext,
    store: Storage,
    res_type: str,
    params: list[tuple[str, str]],
    base_url: str | None = None,
    prefer_handling: str = "strict",
) -> bytes:
    """`GET [base]/[type]?...` and `POST [base]/[type]/_search`."""
    check_type(res_type)
    base = (base_url or ctx.base_url).rstrip("/")
    query = _parse(ctx, (res_type,), params, prefer_handling)
    result, plan_text = await _run(ctx, store, query, base, None)
    return _bundle(base, res_type, query, result, plan_text)


async def search_system(
    ctx: RequestContext,
    store: Storage,
    params: list[tuple[str, str]],
    base_url: str | None = None,
    prefer_handling: str = "strict",
) -> bytes:
    """`GET [base]?_type=A,B&...`: across the listed types (or every type for Resource-level params)."""
    base = (base_url or ctx.base_url).rstrip("/")
    types: list[str] = []
    for name, value in params:
        if name == "_type":
            types.extend(t.strip() for t in value.split(",") if t.strip())
    for t in types:
        check_type(t)
    query = _parse(ctx, tuple(dict.fromkeys(types)), params, prefer_handling)
    result, plan_text = await _run(ctx, store, query, base, None)
    return _bundle(base, "", query, result, plan_text)


def compartment_codes(comp_type: str, res_type: str) -> tuple[str, ...]:
    """The parameters that put a `res_type` resource in a `comp_type` compartment."""
    if comp_type != "Patient":
        raise not_supported(f"Only the Patient compartment is supported, not {comp_type}")
    for entry in patient_compartment().get("resource", []):
        if entry.get("code") == res_type:
            return tuple(entry.get("param", ()))
    return ()


async def search_compartment(
    ctx: RequestContext,
    store: Storage,
    comp_type: str,
    comp_id: str,
    res_type: str,
    params: list[tuple[str, str]],
    base_url: str | None = None,
    prefer_handling: str = "strict",
) -> bytes:
    """`GET [base]/Patient/[id]/[type]?...`: a type search scoped to the compartment."""
    check_type(res_type)
    codes = compartment_codes(comp_type, res_type)
    if not codes and res_type != comp_type:
        raise not_found(f"{res_type} resources are never in a {comp_type} compartment")
    base = (base_url or ctx.base_url).rstrip("/")
    query = _parse(ctx, (res_type,), params, prefer_handling)
    comp = Compartment(comp_type, comp_id, codes)
    result, plan_text = await _run(ctx, store, query, base, comp)
    return _bundle(base, f"{comp_type}/{comp_id}/{res_type}", query, result, plan_text)


def _url(base: str, path: str, query: Query, cursor: str | None) -> str:
    params = list(query.echo)
    if cursor:
        params.append(("_cursor", cursor))
    qs = urlencode(params)
    url = f"{base}/{path}" if path else base
    return f"{url}?{qs}" if qs else url


def _entry(base: str, m: Match, mode: str, query: Query) -> bytes:
    body = m.body
    if query.summary not in (None, "false") or query.elements:
        reduced = subset(loads(body), query.summary, ",".join(query.elements) or None)
        if reduced is not None:
            body = dumps(reduced)
    return entry_bytes({"fullUrl": f"{base}/{m.type}/{m.id}"}, body, {"search": {"mode": mode}})


def _outcome_entry(query: Query, plan_text: tuple[str, list[str]] | None) -> bytes | None:
    issues = [issue(msg, "not-supported", "warning") for msg in query.ignored]
    if plan_text is not None:
        sql, lines = plan_text
        issues.append(issue("SQL: " + sql, "informational", "information"))
        issues.append(issue("Plan: " + "\n".join(lines), "informational", "information"))
    if not issues:
        return None
    doc = outcome(issues) | {"id": str(uuid.uuid4())}
    return entry_bytes({}, dumps(doc), {"search": {"mode": "outcome"}})


def _bundle(
    base: str, path: str, query: Query, result: SearchResult, plan_text: tuple[str, list[str]] | None
) -> bytes:
    links: list[dict[str, Any]] = [{"relation": "self", "url": _url(base, path, query, query.cursor)}]
    if result.next_cursor:
        links.append({"relation": "next", "url": _url(base, path, query, result.next_cursor)})
    if result.prev_cursor:
        links.append({"relation": "previous", "url": _url(base, path, query, result.prev_cursor)})
    header: dict[str, Any] = {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "meta": {"lastUpdated": instant(clock.now_micros())},
        "type": "searchset",
    }
    if result.total is not None:
        header["total"] = result.total
    header["link"] = links
    entries = [_entry(base, m, "match", query) for m in result.matches]
    entries += [_entry(base, m, "include", query) for m in result.included]
    extra = _outcome_entry(query, plan_text)
    if extra is not None:
        entries.append(extra)
    return bundle_bytes(header, entries)
