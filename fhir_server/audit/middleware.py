"""An AuditEvent for every request that no write recorded: reads, searches, refusals, errors.

https://hl7.org/fhir/R4/auditevent.html

A pure ASGI middleware around the auth middleware (a refused token is audited as an anonymous
request; otherwise the caller the auth middleware put in the request state is read once the
response has been sent): it queues the request's AuditEvent; `AuditWriter` stores the queue in batches
(one transaction per batch, at most `FLUSH_SECONDS` later), so auditing a read costs the read
a queue append, not a database write. Successful writes are not queued here: their AuditEvent
is written in their own transaction (`audit.hooks`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fhir_server import clock
from fhir_server.audit.records import audit_event
from fhir_server.context import RequestContext
from fhir_server.interactions.common import store_server_records
from fhir_server.storage import Storage, WriteTx

__all__ = ["AuditMiddleware", "AuditWriter", "describe"]

log = logging.getLogger("fhir_server.audit")
FLUSH_SECONDS = 0.2
BATCH = 500
_PUBLIC = ("/fhir/metadata", "/fhir/.well-known/smart-configuration")
_WRITES = ("POST", "PUT", "PATCH", "DELETE")


class AuditWriter:
    """Stores queued AuditEvents in batches; `close` flushes what is left."""

    def __init__(self, store: Storage) -> None:
        self.store = store
        self.queue: list[dict[str, Any]] = []
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._flushing = asyncio.Lock()  # a flush returns once what was queued before it is stored

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="fhir-audit-writer")

    def add(self, event: dict[str, Any]) -> None:
        self.queue.append(event)
        if len(self.queue) >= BATCH:
            self._wake.set()

    async def _run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), FLUSH_SECONDS)
            except TimeoutError:
                pass
            self._wake.clear()
            await self.flush()

    async def flush(self) -> None:
        async with self._flushing:
            await self._flush()

    async def _flush(self) -> None:
        while self.queue:
            batch, self.queue = self.queue[:BATCH], self.queue[BATCH:]

            def run(tx: WriteTx, batch: list[dict[str, Any]] = batch) -> None:
                store_server_records(tx, "AuditEvent", batch)

            try:
                await self.store.write(run)
            except Exception:  # noqa: BLE001 - never lose the server over an audit batch; say so loudly
                log.exception("could not store %d AuditEvents", len(batch))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        await self.flush()


def describe(method: str, path: str) -> tuple[str, str | None, str | None]:
    """(restful-interaction code, what (Type/id...), patient reference) of a FHIR request path."""
    parts = [p for p in path.removeprefix("/fhir").split("/") if p]
    if parts and parts[-1].startswith("$"):
        what = "/".join(parts[:2]) if len(parts) >= 3 else None
        return "operation", what, None
    if not parts:
        return ("transaction" if method == "POST" else "search-system"), None, None
    type_ = parts[0]
    if len(parts) == 1:
        return ("search-type" if method == "GET" else {"POST": "create"}.get(method, "update")), None, None
    if parts[1] == "_search":
        return "search-type", None, None
    if parts[1] == "_history":
        return "history-type", None, None
    what = f"{type_}/{parts[1]}"
    patient = what if type_ == "Patient" else None
    if len(parts) == 2:
        code = {"GET": "read", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(method, "read")
        return code, what, patient
    if parts[2] == "_history":
        return ("vread" if len(parts) > 3 else "history-instance"), "/".join(parts), patient
    return "search-type", None, patient  # a compartment search: Patient/x/Observation


class AuditMiddleware:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith("/fhir") or path in _PUBLIC or scope["method"] == "OPTIONS":
            await self.app(scope, receive, send)
            return
        status = 500

        async def capture(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            self._record(scope, status)

    def _record(self, scope: dict[str, Any], status: int) -> None:
        state = scope.get("state") or {}
        ctx: RequestContext | None = state.get("fhir_context")
        writer: AuditWriter | None = getattr(scope["app"].state, "audit_writer", None)
        caller = state.get("caller")
        kind = ctx.agent.kind if ctx is not None else getattr(caller, "kind", "anonymous")
        if writer is None or kind == "anonymous-off":
            return
        method = scope["method"]
        if method in _WRITES and status < 300 and scope["path"].rstrip("/") != "/fhir":
            return  # audited in the write's own transaction
        if ctx is None:
            from fhir_server.auth import policy  # only the auth layer knows the caller's shape

            agent = policy.agent(caller, (scope.get("client") or ("",))[0]) if caller is not None else None
        else:
            agent = ctx.agent
        if agent is None:
            from fhir_server.context import ANONYMOUS

            agent = ANONYMOUS
        interaction, what, patient = describe(method, scope["path"])
        query = scope.get("query_string", b"").decode("latin-1") or None
        writer.add(audit_event(agent, interaction, method, status, clock.now_micros(), what, query, patient))
