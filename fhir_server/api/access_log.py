"""Access log: one line per request, written when the response has been sent.

https://hl7.org/fhir/R4/http.html#custom (X-Request-Id)

`GET /fhir/Patient?name=*** 200 3.1ms id=4f1c...`: method, path, query parameter *names* only
(values may identify a patient: `identifier=...|280017512345610`), status, duration and the
request id. The request id is the client's `X-Request-Id` when it sent one, else a new one; it is
returned in the `X-Request-Id` response header, so a client can quote it.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any
from urllib.parse import parse_qsl

__all__ = ["AccessLogMiddleware", "masked_query"]

log = logging.getLogger("fhir_server.access")

_MAX_ID = 200


def masked_query(query: str) -> str:
    """`name=martin&_count=5` -> `name=***&_count=***`: the parameters without their values."""
    names = [name for name, _value in parse_qsl(query, keep_blank_values=True)]
    return "&".join(f"{name}=***" for name in names)


class AccessLogMiddleware:
    """Pure ASGI middleware (no body buffering, streaming responses untouched)."""

    def __init__(self, app: Any, enabled: bool = True) -> None:
        self.app = app
        self.enabled = enabled

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        start = time.perf_counter()
        status = 500  # what the client sees when the app fails before answering

        async def send_with_id(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = [h for h in message.get("headers", []) if h[0].lower() != b"x-request-id"]
                message = {**message, "headers": [*headers, (b"x-request-id", request_id.encode("latin-1"))]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if self.enabled:
                query = scope.get("query_string", b"").decode("latin-1")
                path = scope.get("path", "") + (f"?{masked_query(query)}" if query else "")
                millis = (time.perf_counter() - start) * 1000
                log.info("%s %s %d %.1fms id=%s", scope.get("method", ""), path, status, millis, request_id)


def _request_id(scope: dict[str, Any]) -> str:
    """The client's X-Request-Id (printable ASCII, bounded), else a new random one.

    The id travels on to the RequestContext in the request's headers, so a replaced one is
    written back into the scope.
    """
    headers = scope.get("headers", [])
    for name, value in headers:
        if name.lower() == b"x-request-id":
            text = value.decode("latin-1").strip()
            if text and len(text) <= _MAX_ID and text.isascii() and text.isprintable():
                return text
    request_id = uuid.uuid4().hex
    scope["headers"] = [*(h for h in headers if h[0].lower() != b"x-request-id"),
                        (b"x-request-id", request_id.encode())]
    return request_id
