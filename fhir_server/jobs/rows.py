"""Job rows: create, read, advance, cancel and claim, each inside the caller's transaction.

https://hl7.org/fhir/R4/async.html

These functions take a `Connection` so that a step's own writes and the job's new cursor
commit together. Claiming locks the candidate row with `FOR UPDATE SKIP LOCKED` on
PostgreSQL, so two nodes claiming at once take different jobs (or one takes it and the other
none); SQLite has one writer at a time (`BEGIN IMMEDIATE`), which gives the same guarantee.
The claim's UPDATE also re-checks the lease, so it never takes a lease another node holds.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Connection, insert, or_, select, update

from fhir_server.errors import not_found
from fhir_server.storage.job_schema import job as job_table

__all__ = ["FINAL_STATES", "Job", "Step", "advance", "cancel", "claim", "claimable", "create", "load", "release"]

FINAL_STATES = frozenset({"done", "failed", "cancelled"})


@dataclass(frozen=True, slots=True)
class Job:
    """A job as read from its row; `params` and `cursor` are decoded JSON."""

    job_id: str
    type: str
    state: str
    params: Any
    cursor: Any
    processed: int
    total: int
    lease_owner: str | None
    lease_expires: int | None
    attempts: int
    error: str | None


@dataclass(frozen=True, slots=True)
class Step:
    """What one step of a handler did: the next cursor, the work done, and whether it is over."""

    cursor: Any
    processed: int = 0
    done: bool = False
    total: int | None = None


def _job(row: Any) -> Job:
    return Job(
        job_id=row.job_id, type=row.type, state=row.state, params=orjson.loads(row.params),
        cursor=None if row.cursor is None else orjson.loads(row.cursor), processed=int(row.processed),
        total=int(row.total), lease_owner=row.lease_owner,
        lease_expires=None if row.lease_expires is None else int(row.lease_expires),
        attempts=int(row.attempts), error=row.error,
    )


def create(conn: Connection, type_: str, params: Any, now_us: int, total: int = 0, cursor: Any = None) -> str:
    """Queue a new job (state `running`, no lease): any node's runner may claim it."""
    job_id = str(uuid.uuid4())
    conn.execute(insert(job_table).values(
        job_id=job_id, type=type_, state="running", params=orjson.dumps(params).decode(),
        cursor=None if cursor is None else orjson.dumps(cursor).decode(), processed=0, total=total,
        lease_owner=None, lease_expires=None, attempts=0, created=now_us, updated=now_us, error=None))
    return job_id


def load(conn: Connection, job_id: str, lock: bool = False, type_: str | None = None) -> Job:
    """The job `job_id` (of `type_` when given); with `lock`, its row stays locked (PostgreSQL)."""
    stmt = select(job_table).where(job_table.c.job_id == job_id)
    if type_ is not None:
        stmt = stmt.where(job_table.c.type == type_)
    row = conn.execute(stmt.with_for_update() if lock else stmt).first()
    if row is None:
        raise not_found(f"No {type_ or 'background'} job {job_id}")
    return _job(row)


def advance(conn: Connection, job: Job, step: Step, now_us: int, lease_us: int | None = None) -> Job:
    """Record a step: new cursor and progress, `done` when over, the lease renewed (or let go)."""
    values: dict[str, Any] = {
        "cursor": None if step.cursor is None else orjson.dumps(step.cursor).decode(),
        "processed": job.processed + step.processed, "updated": now_us, "attempts": 0,
    }
    if step.total is not None:
        values["total"] = step.total
    if step.done:
        values.update(state="done", lease_owner=None, lease_expires=None)
    elif lease_us is not None:
        values["lease_expires"] = now_us + lease_us
    conn.execute(update(job_table).where(job_table.c.job_id == job.job_id).values(**values))
    return load(conn, job.job_id)


def cancel(conn: Connection, job_id: str, now_us: int, type_: str | None = None) -> Job:
    """Cancel a running job: its runner stops before its next step. A finished job is left as is."""
    job = load(conn, job_id, lock=True, type_=type_)
    if job.state in FINAL_STATES:
        return job
    conn.execute(update(job_table).where(job_table.c.job_id == job_id).values(
        state="cancelled", lease_owner=None, lease_expires=None, updated=now_us))
    return load(conn, job_id)


def _free(now_us: int) -> Any:
    return or_(job_table.c.lease_owner.is_(None), job_table.c.lease_expires < now_us)


def claimable(conn: Connection, types: list[str], now_us: int) -> bool:
    """Whether some job could be claimed now (a read: an idle runner writes nothing)."""
    t = job_table
    stmt = select(t.c.job_id).where(t.c.state == "running", t.c.type.in_(types), _free(now_us)).limit(1)
    return conn.execute(stmt).first() is not None


def claim(conn: Connection, owner: str, types: list[str], now_us: int, lease_us: int) -> Job | None:
    """Take the lease of the oldest running job of `types` that nobody holds (or whose lease expired)."""
    t = job_table
    free = _free(now_us)
    candidate = conn.execute(
        select(t.c.job_id).where(t.c.state == "running", t.c.type.in_(types), free)
        .order_by(t.c.created, t.c.job_id).limit(1).with_for_update(skip_locked=True)
    ).first()
    if candidate is None:
        return None
    taken = conn.execute(
        update(t).where(t.c.job_id == candidate.job_id, t.c.state == "running", free)
        .values(lease_owner=owner, lease_expires=now_us + lease_us, updated=now_us)
    )
    if taken.rowcount != 1:
        return None
    return load(conn, candidate.job_id)


def release(conn: Connection, job_id: str, owner: str, now_us: int, error: str | None = None,
            max_attempts: int | None = None) -> None:
    """Give the lease back (at shutdown, or after a failed step: the job fails after `max_attempts`)."""
    t = job_table
    values: dict[str, Any] = {"lease_owner": None, "lease_expires": None, "updated": now_us}
    if error is not None:
        values.update(error=error, attempts=t.c.attempts + 1)
        if max_attempts is not None:
            row = conn.execute(select(t.c.attempts).where(t.c.job_id == job_id)).first()
            if row is not None and int(row.attempts) + 1 >= max_attempts:
                values["state"] = "failed"
    conn.execute(update(t).where(t.c.job_id == job_id, t.c.lease_owner == owner, t.c.state == "running")
                 .values(**values))
