"""The job runner: claims jobs under a lease and runs them step by step, on every node.

https://hl7.org/fhir/R4/async.html

Each node (each app process) has one `JobRunner`. It claims a running job nobody holds, or
whose holder's lease has expired (a node that stopped or crashed), and runs its handler one
step at a time. Every step is one write transaction: it re-reads the job row (locked), checks
that the lease is still this node's and that nobody cancelled the job, runs the handler's step
(which does its own writes there) and saves the new cursor and progress with a renewed lease.
So a step is committed with its cursor or not at all, a job resumes from its last committed
step, and two nodes never run one step twice. Handlers are registered by job type.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable

from sqlalchemy import Connection

from fhir_server.jobs import rows
from fhir_server.jobs.rows import Job, Step
from fhir_server.storage.backend import Storage

__all__ = ["JobHandler", "JobRunner", "node_id"]

log = logging.getLogger("fhir_server.jobs")


def node_id() -> str:
    """This process's name as a lease owner: host, pid and a random part (pids are reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class JobHandler(ABC):
    """What a job type does. `step` runs inside the step's transaction; keep it to one batch."""

    @abstractmethod
    def step(self, conn: Connection, job: Job) -> Step:
        """Do one batch of `job` from its cursor; the returned Step says where the next starts."""

    def after_commit(self, job: Job) -> None:  # noqa: B027 - optional hook, nothing to do by default
        """Called on the node that ran a step, once it has committed (`job` as it now stands)."""


class JobRunner:
    """Claims and runs jobs of the registered types; `start()` runs it in the background."""

    def __init__(
        self,
        store: Storage,
        owner: str | None = None,
        *,
        lease_seconds: float = 60.0,
        poll_seconds: float = 5.0,
        max_attempts: int = 3,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.owner = owner or node_id()
        self.lease_seconds = lease_seconds
        self.poll_seconds = poll_seconds
        self.max_attempts = max_attempts
        self._now = now
        self._handlers: dict[str, JobHandler] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._current: str | None = None

    def register(self, type_: str, handler: JobHandler) -> None:
        self._handlers[type_] = handler

    def now_us(self) -> int:
        return int(self._now() * 1_000_000)

    @property
    def _lease_us(self) -> int:
        return int(self.lease_seconds * 1_000_000)

    # -- background loop ---------------------------------------------------------------------
    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name=f"jobs:{self.owner}")

    def wake(self) -> None:
        """Look for work now (a job was just created) rather than at the next poll."""
        self._wake.set()

    async def stop(self) -> None:
        """Stop between two steps and hand the current job's lease back, so another node resumes it."""
        task, self._task = self._task, None
        current = self._current  # read first: cancelling the task clears it
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if current is not None:
            # After the step the cancel interrupted: SQLite's writer takes writes in order, and
            # on PostgreSQL this waits for that step's row lock.
            try:
                await self.store.write(lambda tx: rows.release(tx.conn, current, self.owner, self.now_us()))
            except Exception:  # noqa: BLE001 - the lease then simply expires
                log.exception("could not release job %s", current)

    async def _loop(self) -> None:
        while True:
            self._wake.clear()
            try:
                ran = await self.run_once()
            except Exception:  # noqa: BLE001 - the database may be away for a while: poll again
                log.exception("job runner %s", self.owner)
                ran = None
            if ran is None:
                try:
                    await asyncio.wait_for(self._wake.wait(), self.poll_seconds)
                except TimeoutError:
                    pass

    # -- one job -----------------------------------------------------------------------------
    async def claim(self) -> Job | None:
        """Take the lease of one claimable job of a registered type (None: nothing to do)."""
        if not self._handlers:
            return None
        types = sorted(self._handlers)
        if not await self.store.run_read(lambda conn: rows.claimable(conn, types, self.now_us())):
            return None
        job: Job | None = await self.store.write(
            lambda tx: rows.claim(tx.conn, self.owner, types, self.now_us(), self._lease_us))
        return job

    async def run_once(self) -> str | None:
        """Claim a job and run it until it ends, is cancelled or its lease is lost; its id, or None."""
        job = await self.claim()
        if job is None:
            return None
        await self.run(job)
        return job.job_id

    async def run(self, job: Job) -> Job | None:
        """Run a claimed job step by step; the job as it stands after the last step this node ran."""
        self._current = job.job_id
        try:
            current: Job | None = job
            while current is not None and current.state == "running":
                nxt = await self.step(current)
                if nxt is None:
                    break
                current = nxt
            return current
        finally:
            self._current = None

    async def step(self, job: Job) -> Job | None:
        """One step of a job this node holds; None when the lease is lost or the job stopped."""
        handler, job_id = self._handlers[job.type], job.job_id
        try:
            after: Job | None = await self.store.write(lambda tx: self._step(tx.conn, job_id, handler))
        except Exception as exc:  # noqa: BLE001 - recorded on the job; it fails after max_attempts
            log.exception("job %s: step failed", job_id)
            error = f"{exc.__class__.__name__}: {exc}"
            await self.store.write(lambda tx: rows.release(
                tx.conn, job_id, self.owner, self.now_us(), error=error, max_attempts=self.max_attempts))
            return None
        if after is not None:
            handler.after_commit(after)
        return after

    def _step(self, conn: Connection, job_id: str, handler: JobHandler) -> Job | None:
        job = rows.load(conn, job_id, lock=True)
        if job.state != "running" or job.lease_owner != self.owner:
            return None  # cancelled, or another node took over after our lease expired
        done: Step = handler.step(conn, job)
        return rows.advance(conn, job, done, self.now_us(), self._lease_us)

    def __repr__(self) -> str:
        return f"JobRunner(owner={self.owner!r}, types={sorted(self._handlers)!r})"
