"""Background jobs: one job table, leases between nodes, resumable steps, cancel.

https://hl7.org/fhir/R4/async.html

A job is a row of `job` (`storage/job_schema.py`): its type, state, parameters, cursor,
progress and lease. `rows` holds the transactional operations on it; `runner.JobRunner` claims
jobs under a lease and runs their registered `JobHandler` step by step. `$reindex` is the first
job type; `$export` and `$import` plug in the same way (`runner.register(type, handler)`).
"""

from __future__ import annotations

from fhir_server.jobs.rows import FINAL_STATES, Job, Step, advance, cancel, claim, claimable, create, load, release
from fhir_server.jobs.runner import JobHandler, JobRunner, node_id

__all__ = [
    "FINAL_STATES",
    "Job",
    "JobHandler",
    "JobRunner",
    "Step",
    "advance",
    "cancel",
    "claim",
    "claimable",
    "create",
    "load",
    "node_id",
    "release",
]
