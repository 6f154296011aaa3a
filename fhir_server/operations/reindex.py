"""$reindex: make stored SearchParameters searchable over the resources already stored.

https://hl7.org/fhir/R4/searchparameter.html

`POST [base]/$reindex` starts a job for every pending custom parameter (or those named by `url`)
and runs it in the background, one committed batch at a time; `GET [base]/$reindex?job=ID`
reports its progress. A job interrupted by a restart is resumed at start-up.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from sqlalchemy import Connection, select

from fhir_server.errors import invalid, not_found
from fhir_server.operations.params import OperationInput
from fhir_server.search.registry import registry
from fhir_server.search.reindex import job_status, run_reindex, start_reindex
from fhir_server.storage import Storage
from fhir_server.storage.index_schema import reindex_job

__all__ = ["reindex_operation", "resume_jobs", "start_pending", "stop_jobs"]

log = logging.getLogger("fhir_server.reindex")
# Running jobs per storage (strong references: a bare task may be garbage-collected).
_tasks: dict[int, set[asyncio.Task[Any]]] = {}


def _write(store: Storage) -> Any:
    async def write(step: Any) -> dict[str, Any]:
        result: dict[str, Any] = await store.write(lambda tx: step(tx.conn))
        return result

    return write


def _run_in_background(store: Storage, job_id: str) -> None:
    async def run() -> None:
        try:
            await run_reindex(_write(store), job_id)
        except Exception:  # noqa: BLE001 - a failed job stays "running" and is resumed at the next start
            log.exception("$reindex job %s stopped", job_id)

    task = asyncio.get_running_loop().create_task(run())
    tasks = _tasks.setdefault(id(store), set())
    tasks.add(task)
    task.add_done_callback(tasks.discard)


async def stop_jobs(store: Storage) -> None:
    """At shutdown: stop this storage's jobs between two batches (they resume at the next start)."""
    tasks = _tasks.pop(id(store), set())
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def _params_for(urls: list[str]) -> list[tuple[str, str]] | None:
    if not urls:
        return None
    reg = registry()
    pairs = [(i.res_type, i.code) for t in reg.types() for i in reg.params(t) if i.url in urls]
    if not pairs:
        raise not_found(f"No stored SearchParameter with url {', '.join(urls)}")
    return pairs


async def reindex_operation(store: Storage, method: str, inputs: OperationInput) -> dict[str, Any]:
    if method == "GET":
        job = inputs.text("job")
        if not job:
            raise invalid("GET $reindex needs job=<id>; POST $reindex starts a job")
        return await store.run_read(lambda conn: job_status(conn, job))
    url = inputs.text("url")
    params = _params_for([url] if url else [])
    if params is None and not _pending():
        raise invalid("Nothing to reindex: every search parameter is already active")
    job_id: str = await store.write(lambda tx: start_reindex(tx.conn, params))
    _run_in_background(store, job_id)
    return await store.run_read(lambda conn: job_status(conn, job_id))


def _pending() -> bool:
    reg = registry()
    return any(i.custom and i.status != "active" for t in reg.types() for i in reg.params(t))


async def start_pending(store: Storage) -> str | None:
    """At start-up: index the parameters still pending (e.g. those shipped in profiles/)."""
    if not _pending():
        return None
    job_id: str = await store.write(lambda tx: start_reindex(tx.conn, None))
    _run_in_background(store, job_id)
    return job_id


async def resume_jobs(store: Storage) -> list[str]:
    """At start-up: continue the jobs a stop interrupted."""

    def running(conn: Connection) -> list[str]:
        return [r[0] for r in conn.execute(select(reindex_job.c.job_id).where(reindex_job.c.status == "running"))]

    jobs = await store.run_read(running)
    for job_id in jobs:
        _run_in_background(store, job_id)
    return jobs
