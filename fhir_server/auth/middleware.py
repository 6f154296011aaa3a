"""The ASGI middleware in front of the FHIR API: bearer tokens, rate limits, CORS, body size.

https://www.rfc-editor.org/rfc/rfc6750 and https://fetch.spec.whatwg.org/#http-cors-protocol

Pure ASGI (no BaseHTTPMiddleware: no task or body copy per request). For every path but
/auth/*, the API description (/docs, /openapi.json) and the two public FHIR endpoints (fail
closed: a route added later is protected by default) it verifies the bearer token and puts
the `Caller` in `scope["state"]["caller"]` (`request.state.caller`). /fhir/metadata and
/fhir/.well-known/smart-configuration stay public (their caller is `Caller.anonymous()`, which
no scope check passes). Failures are OperationOutcomes: 401 with `WWW-Authenticate`, 403, 413,
or 429 with `Retry-After`. /auth/* is rate limited per client address and its bodies kept small.
"""

from __future__ import annotations

from typing import Any

import orjson

from fhir_server.auth.caller import Caller
from fhir_server.auth.errors import invalid_token, missing_token, throttled
from fhir_server.auth.service import AuthService
from fhir_server.errors import FhirError, too_large

__all__ = ["AuthMiddleware", "PUBLIC_PATHS"]

PUBLIC_PATHS = frozenset({"/fhir/metadata", "/fhir/.well-known/smart-configuration"})
_OPEN_DOCS = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
_ALLOW_HEADERS = b"authorization, content-type, accept, prefer, if-match, if-none-match, if-none-exist, " \
    b"if-modified-since, x-request-id, x-break-glass-reason"
_EXPOSE_HEADERS = b"location, etag, last-modified, content-location, www-authenticate, retry-after, x-request-id"
_METHODS = b"GET, POST, PUT, PATCH, DELETE, OPTIONS"


class AuthMiddleware:
    def __init__(self, app: Any, service: AuthService) -> None:
        self.app = app
        self.service = service
        settings = service.settings
        origins = [o.strip().rstrip("/") for o in settings.cors_origins.split(",") if o.strip()]
        self.any_origin = "*" in origins
        self.origins = frozenset(o.encode() for o in origins if o != "*")
        self.max_body = settings.max_body_bytes
        self.max_auth_body = settings.max_auth_body_bytes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        root = scope.get("root_path", "")
        if root and path.startswith(root):  # Starlette routes on the path without the mount prefix
            path = path[len(root):]
        is_auth = path.startswith("/auth/")
        # Fail closed: every path needs a token but the authorisation server, the public FHIR
        # endpoints and the API description; a route added later is protected by default.
        if path in _OPEN_DOCS:
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        origin = headers.get(b"origin")
        cors = self._cors_headers(origin)
        if scope["method"] == "OPTIONS" and origin is not None and b"access-control-request-method" in headers:
            await _respond(send, 204 if cors else 403, b"", cors + ([
                (b"access-control-allow-methods", _METHODS), (b"access-control-allow-headers", _ALLOW_HEADERS),
                (b"access-control-max-age", b"600"),
            ] if cors else []))
            return
        if cors:
            send = _with_headers(send, cors)
        try:
            length = headers.get(b"content-length")
            limit = self.max_auth_body if is_auth else self.max_body
            if length is not None and length.isdigit() and int(length) > limit:
                raise too_large(f"The body is {int(length)} bytes; this endpoint accepts at most {limit}")
            if is_auth:
                wait = self.service.limiter.take("ip:" + (scope.get("client") or ("?",))[0])
                if wait:
                    raise throttled(wait)
                await self.app(scope, receive, send)
                return
            caller = await self._caller(scope, headers, path)
            if caller.client_id and caller.kind != "anonymous-off":
                # Per client; per person for user tokens, so one app's (or PSC's) users do not share a bucket.
                who = caller.client_id if caller.kind in ("system", "admin") else f"{caller.client_id}|{caller.subject}"
                wait = self.service.limiter.take("client:" + who)
                if wait:
                    raise throttled(wait)
        except FhirError as exc:
            await _respond(send, exc.status, orjson.dumps(exc.outcome),
                           [(b"content-type", b"application/fhir+json; charset=utf-8")]
                           + [(k.lower().encode(), v.encode()) for k, v in exc.headers.items()])
            return
        scope.setdefault("state", {})["caller"] = caller
        await self.app(scope, receive, send)

    async def _caller(self, scope: dict[str, Any], headers: dict[bytes, bytes], path: str) -> Caller:
        service = self.service
        if not service.enabled:
            return Caller.unrestricted()
        if path in PUBLIC_PATHS:
            return Caller.anonymous()
        authorization = headers.get(b"authorization")
        if authorization is None:
            raise missing_token()
        text = authorization.decode("latin-1")
        if text[:7].lower() != "bearer " or not text[7:].strip():
            raise invalid_token("use Authorization: Bearer <token>")
        store = scope["app"].state.storage
        caller = await service.authenticate(text[7:].strip(), store, service.fhir_base(_request_base(scope, headers)))
        reason = headers.get(b"x-break-glass-reason")
        return service.with_break_glass(caller, reason.decode("utf-8", "replace") if reason is not None else None)

    def _cors_headers(self, origin: bytes | None) -> list[tuple[bytes, bytes]]:
        if origin is None or not (self.any_origin or origin.rstrip(b"/") in self.origins):
            return []
        return [
            (b"access-control-allow-origin", origin),
            (b"vary", b"Origin"),
            (b"access-control-expose-headers", _EXPOSE_HEADERS),
        ]


def _headers(scope: dict[str, Any]) -> dict[bytes, bytes]:
    return {k: v for k, v in scope["headers"]}


def _request_base(scope: dict[str, Any], headers: dict[bytes, bytes]) -> str:
    """scheme://host[:port]/root_path, as Starlette's `request.base_url` gives it."""
    host = headers.get(b"host")
    if host is not None:
        netloc = host.decode("latin-1")
    else:
        server = scope.get("server") or ("localhost", 80)
        netloc = f"{server[0]}:{server[1]}"
    return f"{scope.get('scheme', 'http')}://{netloc}{scope.get('root_path', '')}"


def _with_headers(send: Any, extra: list[tuple[bytes, bytes]]) -> Any:
    async def wrapped(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), *extra]}
        await send(message)

    return wrapped


async def _respond(send: Any, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": body})
