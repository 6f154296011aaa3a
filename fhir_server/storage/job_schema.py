"""The job table: background work ($reindex, later $export and $import) shared by every node.

https://hl7.org/fhir/R4/async.html

One row per job. `state` is `running` until the job is `done`, `failed` or `cancelled`; a
running job is worked on by the node holding its lease (`lease_owner` until `lease_expires`,
renewed by every step) and may be claimed by any node once the lease is free or has expired,
which is how a job resumes after a restart or a crash. `cursor` is where the next step starts
(JSON, the handler's business), saved in the same transaction as the step's own writes.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, String, Table, Text

from fhir_server.storage.schema import metadata

__all__ = ["job"]

job = Table(
    "job",
    metadata,
    Column("job_id", String(64), primary_key=True),
    Column("type", String(32), nullable=False),  # the handler that runs it: reindex, export, import
    Column("state", String(16), nullable=False),  # running | done | failed | cancelled
    Column("params", Text, nullable=False),  # JSON: what the job was asked to do
    Column("cursor", Text, nullable=True),  # JSON: where its next step starts
    Column("processed", BigInteger, nullable=False),
    Column("total", BigInteger, nullable=False),
    Column("lease_owner", String(128), nullable=True),  # the node working on it
    Column("lease_expires", BigInteger, nullable=True),  # microseconds since the epoch, UTC
    Column("attempts", Integer, nullable=False),  # failed steps in a row
    Column("created", BigInteger, nullable=False),
    Column("updated", BigInteger, nullable=False),
    Column("error", Text, nullable=True),
)
# Claiming looks for running jobs whose lease is free or expired.
Index("ix_job_state_lease", job.c.state, job.c.lease_expires)
