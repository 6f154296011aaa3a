"""Bundle entries served through the route table, as Medplum's router serves batch entries.

https://hl7.org/fhir/R4/http.html#transaction

`entry_dispatcher(request)` turns a Bundle entry into the HTTP request it stands for (method,
url below the base, `request.ifMatch`/`ifNoneExist`/... as headers, the outer request's
Prefer, Accept and caller) and runs the handler of the route that matches, so every
interaction and operation of the API works in a batch entry with the same semantics, the
same access policy and the same errors.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match

from fhir_server.api.http import error_response
from fhir_server.bundles.entries import BundleEntry
from fhir_server.bundles.transaction import Dispatch
from fhir_server.errors import FhirError, not_found, not_supported
from fhir_server.fhir.json import dumps
from fhir_server.interactions.patch import JSON_PATCH

__all__ = ["entry_dispatcher"]

_PASSED_ON = ("prefer", "accept", "authorization", "x-request-id", "x-break-glass-reason")


def entry_dispatcher(request: Request, fhir_base: str) -> Dispatch:
    outer = {k: v for k, v in request.headers.items() if k in _PASSED_ON}

    async def dispatch(e: BundleEntry) -> tuple[int, dict[str, str], bytes]:
        path, _, query = e.path.partition("?")
        body, ctype = _body(e)
        headers = {**outer, **(e.headers or {})}
        if body is not None:
            headers["content-type"] = ctype
            headers["content-length"] = str(len(body))
        scope: dict[str, Any] = {
            **request.scope,
            "method": e.method,
            "path": f"{fhir_base}/{path.lstrip('/')}".rstrip("/") or fhir_base,
            "raw_path": f"{fhir_base}/{path.lstrip('/')}".encode(),
            "query_string": query.encode(),
            "headers": [(k.lower().encode("latin-1"), v.encode("latin-1", "replace")) for k, v in headers.items()],
            "state": request.scope.get("state", {}),  # the same caller and context
        }
        sub = Request(scope, _receive(body))
        try:
            response = await _handle(request.app, scope, sub)
        except FhirError as exc:
            response = error_response(sub, exc)
        return response.status_code, dict(response.headers), bytes(response.body)

    return dispatch


async def _handle(app: Any, scope: dict[str, Any], sub: Request) -> Response:
    partial = False
    for route in app.router.routes:
        if not getattr(route, "path", "").startswith("/fhir"):
            continue
        match, child = route.matches(scope)
        if match == Match.FULL:
            scope.update(child)
            response: Response = await route.endpoint(sub)
            return response
        partial = partial or match == Match.PARTIAL
    if partial:
        raise not_supported(f"{scope['method']} is not allowed on {scope['path']}", 405)
    raise not_found(f"No FHIR endpoint at {scope['path']}")


def _body(e: BundleEntry) -> tuple[bytes | None, str]:
    if e.resource is None:
        return None, ""
    if e.patch_kind == JSON_PATCH:
        return dumps(e.resource), "application/json-patch+json"
    return dumps(e.resource), "application/fhir+json"


def _receive(body: bytes | None) -> Any:
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body or b"", "more_body": False}

    return receive

