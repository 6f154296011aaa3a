"""HTTP details of the FHIR REST API: formats, Prefer, ETags, bodies and responses.

https://hl7.org/fhir/R4/http.html#mime-type

Only JSON is served: `application/fhir+json` (and `application/json`, which real clients
send). XML and RDF requests are answered 406 (Accept/_format) or 415 (Content-Type) with an
OperationOutcome, as the spec asks of a server that does not support a format.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from fhir_server.context import RequestContext
from fhir_server.errors import (
    FhirError,
    invalid,
    not_acceptable,
    too_large,
    unsupported_media_type,
)
from fhir_server.fhir.json import dumps, dumps_pretty, loads
from fhir_server.fhir.resource import etag_version, http_date
from fhir_server.storage import Storage

__all__ = [
    "FHIR_JSON",
    "context",
    "query_params",
    "storage",
    "error_response",
    "fhir_response",
    "if_match",
    "prefer",
    "read_body",
    "response_type",
    "version_headers",
]

FHIR_JSON = "application/fhir+json"
_JSON_TYPES = {"application/fhir+json", "application/json", "application/json+fhir", "json", "text/json"}
_FORMAT_ALIASES = {"json": FHIR_JSON, "application/fhir+json": FHIR_JSON, "application/json+fhir": FHIR_JSON}
JSON_PATCH_TYPE = "application/json-patch+json"
MERGE_PATCH_TYPE = "application/merge-patch+json"
_PATCH_KINDS = {JSON_PATCH_TYPE: "json-patch", MERGE_PATCH_TYPE: "merge-patch"}


def _media_types(header: str) -> list[str]:
    return [part.split(";")[0].strip().lower() for part in header.split(",") if part.strip()]


def response_type(request: Request) -> str:
    """The media type to answer with, from `_format` (which wins) or `Accept`; 406 otherwise."""
    fmt = request.query_params.get("_format")
    if fmt is not None:
        kind = fmt.split(";")[0].strip().lower().replace(" ", "+")  # '+' arrives decoded as a space
        if kind in _FORMAT_ALIASES:
            return FHIR_JSON
        if kind in ("application/json", "text/json"):
            return "application/json"
        raise not_acceptable(f"_format={fmt} is not supported: this server speaks JSON only (_format=json)")
    accept = request.headers.get("accept")
    if not accept:
        return FHIR_JSON
    types = _media_types(accept)
    if any(t in ("application/fhir+json", "application/json+fhir") for t in types):
        return FHIR_JSON
    if "application/json" in types:
        return "application/json"
    if any(t in ("*/*", "application/*") or t.startswith("*/") for t in types):
        return FHIR_JSON
    raise not_acceptable(f"Accept: {accept} cannot be served: this server answers application/fhir+json only")


def context(request: Request) -> RequestContext:
    factory: Callable[[Request], RequestContext] = request.app.state.context_factory
    return factory(request)


def storage(request: Request) -> Storage:
    store: Storage = request.app.state.storage
    return store


def query_params(request: Request) -> list[tuple[str, str]]:
    return list(request.query_params.multi_items())


def pretty(request: Request) -> bool:
    return request.query_params.get("_pretty") == "true"


def prefer(request: Request) -> dict[str, str]:
    """Prefer header tokens (`return`, `handling`, `respond-async`) as a dict."""
    out: dict[str, str] = {}
    for header in request.headers.getlist("prefer"):
        for token in header.split(","):
            name, _, value = token.strip().partition("=")
            if name:
                out[name.strip().lower()] = value.strip().strip('"')
    return out


def if_match(request: Request) -> int | None:
    """The version an If-Match header names (`W/"3"` or `"3"`); 400 when malformed."""
    value = request.headers.get("if-match")
    if value is None:
        return None
    version = etag_version(value)
    if version is None:
        raise invalid(f"If-Match: {value} is not a version ETag such as W/\"3\"")
    return version


async def read_body(request: Request, max_bytes: int, patch: bool = False) -> tuple[Any, str]:
    """Parse a JSON request body; return it with its kind ('resource', 'json-patch' or 'merge-patch')."""
    ctype = request.headers.get("content-type")
    kind = "resource"
    if ctype:
        media = ctype.split(";")[0].strip().lower()
        if patch and media in _PATCH_KINDS:
            kind = _PATCH_KINDS[media]
        elif media not in _JSON_TYPES:
            allowed = f"{FHIR_JSON}, application/json" + (f", {JSON_PATCH_TYPE} or {MERGE_PATCH_TYPE}" if patch else "")
            raise unsupported_media_type(f"Content-Type {media} is not supported: send {allowed}")
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > max_bytes:
        raise too_large(f"The body is {length} bytes; this server accepts at most {max_bytes}")
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > max_bytes:
            raise too_large(f"The body exceeds {max_bytes} bytes, the most this server accepts")
    if not raw.strip():
        raise invalid("The request has no body: send a FHIR resource as JSON")
    return loads(raw), kind


def fhir_response(
    request: Request,
    body: bytes | None,
    status: int = 200,
    headers: dict[str, str] | None = None,
    media_type: str | None = None,
) -> Response:
    media = media_type or response_type(request)
    if body is not None and pretty(request):
        body = dumps_pretty(loads(body))
    return Response(
        content=body if body is not None else b"",
        status_code=status,
        headers=headers,
        media_type=f"{media}; charset=utf-8" if body is not None else None,
    )


def version_headers(version: int, last_updated: int) -> dict[str, str]:
    return {"ETag": f'W/"{version}"', "Last-Modified": http_date(last_updated)}


def error_response(request: Request, error: FhirError) -> Response:
    try:
        media = response_type(request)
    except FhirError:
        media = FHIR_JSON  # the error is about Accept itself: still answer in our one format
    body = dumps_pretty(error.outcome) if pretty(request) else None

    return Response(
        content=body or dumps(error.outcome),
        status_code=error.status,
        headers=error.headers,
        media_type=f"{media}; charset=utf-8",
    )
