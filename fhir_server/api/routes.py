"""The route table of the FHIR REST API: (method, path, interaction code, handler).

https://hl7.org/fhir/R4/http.html

Handlers only translate HTTP to an interaction call and its result back to HTTP. The table is
read by the app factory (to mount routes) and by the CapabilityStatement (to say what is
implemented), so the two cannot disagree.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response

from fhir_server.api.bundle_dispatch import entry_dispatcher
from fhir_server.api.http import (
    context,
    fhir_response,
    if_match,
    prefer,
    query_params,
    read_body,
    response_type,
    storage,
    version_headers,
)
from fhir_server.api.operation_routes import (
    instance_operation_route,
    system_operation_route,
    type_operation_route,
)
from fhir_server.bundles.transaction import process_bundle
from fhir_server.context import RequestContext
from fhir_server.errors import invalid, issue, outcome, unsupported_media_type
from fhir_server.fhir.json import dumps, loads
from fhir_server.fhir.summary import subset
from fhir_server.interactions import create, delete, history, patch, read, search, update
from fhir_server.interactions.common import WriteResult, check_type

__all__ = ["ROUTES", "Route"]

Handler = Callable[..., Awaitable[Response]]


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # below the FHIR base, e.g. "/{type}/{id}"
    interaction: str  # R4 restful-interaction code, or "operation"
    handler: Handler
    summary: str
    level: str = "type"  # "instance" | "type" | "system": where the CapabilityStatement lists it


def _query_string(request: Request) -> str:
    return request.url.query


# -- reads ---------------------------------------------------------------------------------
async def read_route(request: Request, type: str, id: str) -> Response:
    media = response_type(request)
    found = await read.read(context(request), storage(request), type, id)
    headers = version_headers(found.version, found.last_updated)
    if _not_modified(request, found.version, found.last_updated):
        return Response(status_code=304, headers=headers)
    return _resource_response(request, found.body, headers, media)


async def vread_route(request: Request, type: str, id: str, vid: str) -> Response:
    media = response_type(request)
    found = await read.vread(context(request), storage(request), type, id, vid)
    headers = version_headers(found.version, found.last_updated)
    return _resource_response(request, found.body, headers, media)


def _not_modified(request: Request, version: int, last_updated: int) -> bool:
    """Conditional read: If-None-Match on the ETag, else If-Modified-Since (second precision)."""
    none_match = request.headers.get("if-none-match")
    if none_match is not None:
        tags = {t.strip().removeprefix("W/").strip('"') for t in none_match.split(",")}
        return str(version) in tags or "*" in tags
    since = request.headers.get("if-modified-since")
    if since is not None:
        try:
            stamp = parsedate_to_datetime(since).timestamp()
        except (TypeError, ValueError):
            return False
        return last_updated // 1_000_000 <= int(stamp)
    return False


def _resource_response(request: Request, body: bytes | None, headers: dict[str, str], media: str) -> Response:
    summary = request.query_params.get("_summary")
    elements = request.query_params.get("_elements")
    if body is not None and (summary or elements):
        if summary == "count":
            raise invalid("_summary=count applies to searches, not to a read")
        part = subset(loads(body), summary, elements)
        if part is not None:
            body = dumps(part)
    return fhir_response(request, body, 200, headers, media)


# -- writes --------------------------------------------------------------------------------
def _write_response(
    request: Request, ctx: RequestContext, result: WriteResult, media: str, status: int | None = None
) -> Response:
    stored = result.stored
    headers = version_headers(stored.version, stored.last_updated)
    headers["Location"] = f"{ctx.base_url}/{stored.type}/{stored.id}/_history/{stored.version}"
    code = status or (201 if result.created else 200)
    wanted = prefer(request).get("return", "representation")
    if ctx.warnings and wanted != "OperationOutcome":
        headers["Warning"] = ", ".join(_warning_value(w) for w in ctx.warnings)
    if wanted == "minimal":
        return Response(status_code=code, headers=headers)
    if wanted == "OperationOutcome":
        verb = "matched an existing" if result.existing else ("created" if result.created else "updated")
        oo = outcome(
            [issue(f"{verb} {stored.type}/{stored.id} version {stored.version}", "informational", "information"),
             *ctx.warnings]
        )
        return fhir_response(request, dumps(oo), code, headers, media)
    return fhir_response(request, stored.body, code, headers, media)


def _warning_value(found: dict[str, Any]) -> str:
    """An RFC 7234 Warning (299: persistent): the issue's text, in latin-1 as headers must be."""
    text = str(found.get("diagnostics", "warning")).replace("\\", "\\\\").replace('"', '\\"')
    return f'299 fhir-server "{text.encode("latin-1", "replace").decode("latin-1")}"'


async def create_route(request: Request, type: str) -> Response:
    media, ctx = response_type(request), context(request)
    body, _ = await read_body(request, ctx.settings.max_body_bytes)
    result = await create.create(ctx, storage(request), type, body, request.headers.get("if-none-exist"))
    return _write_response(request, ctx, result, media, 200 if result.existing else 201)


async def update_route(request: Request, type: str, id: str) -> Response:
    media, ctx = response_type(request), context(request)
    body, _ = await read_body(request, ctx.settings.max_body_bytes)
    result = await update.update(ctx, storage(request), type, id, body, if_match(request))
    return _write_response(request, ctx, result, media)


async def conditional_update_route(request: Request, type: str) -> Response:
    media, ctx = response_type(request), context(request)
    body, _ = await read_body(request, ctx.settings.max_body_bytes)
    query = _query_string(request)
    result = await update.conditional_update(ctx, storage(request), type, query, body, if_match(request))
    return _write_response(request, ctx, result, media)


async def _patch_body(request: Request, ctx: RequestContext) -> tuple[Any, str]:
    body, kind = await read_body(request, ctx.settings.max_body_bytes, patch=True)
    kinds = {"json-patch": patch.JSON_PATCH, "merge-patch": patch.MERGE_PATCH}
    return body, kinds.get(kind, patch.RESOURCE_BODY)


async def patch_route(request: Request, type: str, id: str) -> Response:
    media, ctx = response_type(request), context(request)
    body, kind = await _patch_body(request, ctx)
    result = await patch.patch(ctx, storage(request), type, id, kind, body, if_match(request))
    return _write_response(request, ctx, result, media)


async def conditional_patch_route(request: Request, type: str) -> Response:
    media, ctx = response_type(request), context(request)
    body, kind = await _patch_body(request, ctx)
    query = _query_string(request)
    result = await patch.conditional_patch(ctx, storage(request), type, query, kind, body, if_match(request))
    return _write_response(request, ctx, result, media)


async def delete_route(request: Request, type: str, id: str) -> Response:
    media = response_type(request)
    deleted = await delete.delete(context(request), storage(request), type, id, if_match(request))
    return _delete_response(request, media, [deleted] if deleted else [], f"{type}/{id}")


async def conditional_delete_route(request: Request, type: str) -> Response:
    media = response_type(request)
    query = _query_string(request)
    deleted = await delete.conditional_delete(context(request), storage(request), type, query)
    return _delete_response(request, media, deleted, f"{type}?{query}")


def _delete_response(request: Request, media: str, deleted: list[Any], what: str) -> Response:
    headers = version_headers(deleted[0].version, deleted[0].last_updated) if len(deleted) == 1 else {}
    if prefer(request).get("return") == "OperationOutcome" or not deleted:
        return fhir_response(request, dumps(delete.deletion_outcome(deleted, what)), 200, headers, media)
    return Response(status_code=204, headers=headers)


# -- history -------------------------------------------------------------------------------
async def history_instance_route(request: Request, type: str, id: str) -> Response:
    media = response_type(request)
    body = await history.history(context(request), storage(request), type, id, query_params(request))
    return fhir_response(request, body, 200, None, media)


async def history_type_route(request: Request, type: str) -> Response:
    media = response_type(request)
    body = await history.history(context(request), storage(request), type, None, query_params(request))
    return fhir_response(request, body, 200, None, media)


async def history_system_route(request: Request) -> Response:
    media = response_type(request)
    body = await history.history(context(request), storage(request), None, None, query_params(request))
    return fhir_response(request, body, 200, None, media)


# -- search ------------------------------------------------------------------------------
def _handling(request: Request) -> str:
    handling = prefer(request).get("handling", "strict")
    if handling not in ("strict", "lenient"):
        raise invalid(f"Prefer: handling={handling} is not strict or lenient")
    return handling


async def _form_params(request: Request) -> list[tuple[str, str]]:
    """POST _search: the form body's parameters after the URL's (R4 search.html#Introduction)."""
    ctype = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if ctype not in ("application/x-www-form-urlencoded", ""):
        raise unsupported_media_type(f"POST _search takes application/x-www-form-urlencoded, not {ctype}")
    raw = await request.body()
    if len(raw) > context(request).settings.max_body_bytes:
        raise invalid("The search form is too large")
    try:
        form = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise invalid("The search form is not UTF-8") from None
    return [*query_params(request), *form]


async def search_type_route(request: Request, type: str) -> Response:
    media = response_type(request)
    body = await search.search_type(
        context(request), storage(request), type, query_params(request), prefer_handling=_handling(request)
    )
    return fhir_response(request, body, 200, None, media)


async def search_type_post_route(request: Request, type: str) -> Response:
    media = response_type(request)
    params = await _form_params(request)
    body = await search.search_type(
        context(request), storage(request), type, params, prefer_handling=_handling(request)
    )
    return fhir_response(request, body, 200, None, media)


async def search_system_route(request: Request) -> Response:
    media = response_type(request)
    params = await _form_params(request) if request.method == "POST" else query_params(request)
    body = await search.search_system(context(request), storage(request), params, prefer_handling=_handling(request))
    return fhir_response(request, body, 200, None, media)


async def search_compartment_route(request: Request, comp: str, id: str, type: str) -> Response:
    media = response_type(request)
    check_type(comp)
    body = await search.search_compartment(
        context(request), storage(request), comp, id, type, query_params(request), prefer_handling=_handling(request)
    )
    return fhir_response(request, body, 200, None, media)


# -- batch / transaction -------------------------------------------------------------------
async def bundle_route(request: Request) -> Response:
    media = response_type(request)
    body, _ = await read_body(request, context(request).settings.max_body_bytes)
    wanted = prefer(request).get("return", "representation")
    dispatch = entry_dispatcher(request, "/fhir")
    result = await process_bundle(context(request), storage(request), body, wanted, dispatch)
    return fhir_response(request, result, 200, None, media)


# -- capabilities --------------------------------------------------------------------------
async def metadata_route(request: Request) -> Response:
    media = response_type(request)
    q = request.query_params
    view = (q.get("mode", "full"), q.get("_summary"), q.get("_elements"))
    body: bytes = request.app.state.capability_statement(context(request).base_url, view)
    return fhir_response(request, body, 200, None, media)


def _operation_routes() -> tuple[Route, ...]:
    return tuple(
        Route(method, path, "operation", handler, summary, level)
        for method in ("GET", "POST")
        for path, handler, summary, level in (
            ("/${op}", system_operation_route, "System-level operation ($reindex)", "system"),
            ("/{type}/${op}", type_operation_route, "Type-level operation ($validate, $expand, ...)", "type"),
            ("/{type}/{id}/${op}", instance_operation_route, "Instance-level operation", "instance"),
        )
    )


# Literal segments before parameters: /_history and $op must win over /{id}.
ROUTES: tuple[Route, ...] = (
    Route("GET", "/metadata", "capabilities", metadata_route, "CapabilityStatement", "system"),
    *_operation_routes(),
    Route("GET", "/_history", "history-system", history_system_route, "History of all resources", "system"),
    Route("POST", "", "transaction", bundle_route, "Batch or transaction Bundle", "system"),
    Route("POST", "/", "transaction", bundle_route, "Batch or transaction Bundle", "system"),
    Route("GET", "", "search-system", search_system_route, "Search across types (_type)", "system"),
    Route("GET", "/", "search-system", search_system_route, "Search across types (_type)", "system"),
    Route("POST", "/_search", "search-system", search_system_route, "Search across types (form body)", "system"),
    Route("GET", "/{type}/_history", "history-type", history_type_route, "History of a type"),
    Route("POST", "/{type}/_search", "search-type", search_type_post_route, "Search (form body)"),
    Route("GET", "/{type}", "search-type", search_type_route, "Search"),
    Route("POST", "/{type}", "create", create_route, "Create (If-None-Exist: conditional create)"),
    Route("PUT", "/{type}", "update", conditional_update_route, "Conditional update by search criteria"),
    Route("PATCH", "/{type}", "patch", conditional_patch_route, "Conditional patch by search criteria"),
    Route("DELETE", "/{type}", "delete", conditional_delete_route, "Conditional delete by search criteria"),
    Route("GET", "/{type}/{id}", "read", read_route, "Read the current version", "instance"),
    Route("PUT", "/{type}/{id}", "update", update_route, "Update (or create with this id)", "instance"),
    Route("PATCH", "/{type}/{id}", "patch", patch_route, "JSON Patch, FHIRPath Patch or JSON Merge Patch", "instance"),
    Route("DELETE", "/{type}/{id}", "delete", delete_route, "Delete", "instance"),
    Route(
        "GET", "/{type}/{id}/_history", "history-instance", history_instance_route, "History of a resource", "instance"
    ),
    Route("GET", "/{type}/{id}/_history/{vid}", "vread", vread_route, "Read a version", "instance"),
    Route("GET", "/{comp}/{id}/{type}", "search-type", search_compartment_route, "Compartment search", "instance"),
)
