"""$reindex: make stored SearchParameters searchable over the resources already stored.

https://hl7.org/fhir/R4/searchparameter.html

`POST [base]/$reindex` creates a `reindex` job for every pending custom parameter (or those
named by `url`); the node's `JobRunner` (`fhir_server.jobs`) runs it, one committed batch per
step; `GET [base]/$reindex?job=ID` reports its progress, and `POST [base]/$reindex` with
`job=ID` and `cancel=true` cancels it. A job interrupted by a restart is taken up again by the
first node whose runner finds its lease free or expired.
"""

from __future__ import annotations

import time
from typing import Any

from fhir_server import jobs
from fhir_server.errors import invalid, not_found
from fhir_server.operations.params import OperationInput
from fhir_server.search.registry import registry
from fhir_server.search.reindex import JOB_TYPE, ReindexHandler, job_status, params_to_start, start_reindex
from fhir_server.storage import Storage, WriteTx

__all__ = ["reindex_operation", "register", "start_pending"]


def register(runner: jobs.JobRunner) -> None:
    """Let `runner` run `$reindex` jobs."""
    runner.register(JOB_TYPE, ReindexHandler())


def _params_for(urls: list[str]) -> list[tuple[str, str]] | None:
    if not urls:
        return None
    reg = registry()
    pairs = [(i.res_type, i.code) for t in reg.types() for i in reg.params(t) if i.url in urls]
    if not pairs:
        raise not_found(f"No stored SearchParameter with url {', '.join(urls)}")
    return pairs


async def reindex_operation(
    store: Storage, method: str, inputs: OperationInput, runner: jobs.JobRunner | None = None
) -> dict[str, Any]:
    job = inputs.text("job")
    if method == "GET":
        if not job:
            raise invalid("GET $reindex needs job=<id>; POST $reindex starts a job")
        return await store.run_read(lambda conn: job_status(conn, job))
    if job:
        if (inputs.text("cancel") or "").lower() != "true":
            raise invalid("POST $reindex with job=<id> needs cancel=true")
        now = runner.now_us() if runner else time.time_ns() // 1000
        await store.write(lambda tx: jobs.cancel(tx.conn, job, now, type_=JOB_TYPE))
        return await store.run_read(lambda conn: job_status(conn, job))
    url = inputs.text("url")
    params = _params_for([url] if url else [])
    if params is None and not _pending():
        raise invalid("Nothing to reindex: every search parameter is already active")
    job_id: str = await store.write(lambda tx: start_reindex(tx.conn, params))
    if runner is not None:
        runner.wake()
    return await store.run_read(lambda conn: job_status(conn, job_id))


def _pending() -> bool:
    reg = registry()
    return any(i.custom and i.status != "active" for t in reg.types() for i in reg.params(t))


async def start_pending(store: Storage, runner: jobs.JobRunner | None = None) -> str | None:
    """At start-up: index the parameters still pending (e.g. those shipped in profiles/).

    Parameters whose job is still running are left to it (a runner resumes it). Two nodes
    starting together serialise here (advisory lock on PostgreSQL, the single writer on
    SQLite), and the second finds nothing left to start.
    """
    if not _pending():
        return None

    def start(tx: WriteTx) -> str | None:
        tx.lock("$reindex:start-pending")
        params = params_to_start(tx.conn)
        return start_reindex(tx.conn, params) if params else None

    job_id: str | None = await store.write(start)
    if job_id is not None and runner is not None:
        runner.wake()
    return job_id
