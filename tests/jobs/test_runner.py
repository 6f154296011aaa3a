"""Background jobs on both databases: one node per job, resume after a lost lease, cancel, failure."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import Connection

from fhir_server import jobs
from fhir_server.storage import Storage, open_storage

pytestmark = pytest.mark.anyio


class Counter(jobs.JobHandler):
    """Counts to params["n"], one per step, and notes which node ran which step."""

    def __init__(self, log: list[tuple[str, str, int]], owner: str, pause: float = 0.0,
                 fail: bool = False) -> None:
        self.log, self.owner, self.pause, self.fail = log, owner, pause, fail

    def step(self, conn: Connection, job: jobs.Job) -> jobs.Step:
        if self.fail:
            raise RuntimeError("broken handler")
        if self.pause:
            time.sleep(self.pause)  # inside the step's transaction, as a real batch would be
        at = int(job.cursor or 0)
        self.log.append((job.job_id, self.owner, at))
        return jobs.Step(cursor=at + 1, processed=1, done=at + 1 >= job.params["n"])


class Clock:
    def __init__(self) -> None:
        self.t = 1_700_000_000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
async def other_store(settings_factory: Any) -> AsyncIterator[Storage]:
    """A second node on the same database."""
    storage = open_storage(settings_factory())
    await storage.start()
    try:
        yield storage
    finally:
        await storage.close()


def _runner(store: Storage, owner: str, log: list[Any], **kw: Any) -> jobs.JobRunner:
    handler_kw = {k: kw.pop(k) for k in ("pause", "fail") if k in kw}
    runner = jobs.JobRunner(store, owner, **kw)
    runner.register("count", Counter(log, owner, **handler_kw))
    return runner


async def _create(store: Storage, n: int) -> str:
    job_id: str = await store.write(lambda tx: jobs.create(tx.conn, "count", {"n": n}, 0, total=n, cursor=0))
    return job_id


async def _load(store: Storage, job_id: str) -> jobs.Job:
    job: jobs.Job = await store.run_read(lambda conn: jobs.load(conn, job_id))
    return job


async def test_two_nodes_never_run_the_same_job(store: Storage, other_store: Storage) -> None:
    log: list[tuple[str, str, int]] = []
    ids = [await _create(store, 4) for _ in range(4)]
    a = _runner(store, "node-a", log, pause=0.01)
    b = _runner(other_store, "node-b", log, pause=0.01)

    async def drain(runner: jobs.JobRunner) -> None:
        while await runner.run_once() is not None:
            pass

    await asyncio.gather(drain(a), drain(b), drain(a), drain(b))
    for job_id in ids:
        steps = [(owner, at) for j, owner, at in log if j == job_id]
        assert [at for _o, at in steps] == [0, 1, 2, 3], steps  # every step once, in order
        assert len({owner for owner, _at in steps}) == 1, steps  # by one node
        job = await _load(store, job_id)
        assert job.state == "done" and job.processed == 4 and job.lease_owner is None


async def test_an_expired_lease_lets_another_node_resume_from_the_cursor(store: Storage,
                                                                           other_store: Storage) -> None:
    log: list[tuple[str, str, int]] = []
    clock = Clock()
    a = _runner(store, "node-a", log, lease_seconds=10, now=clock)
    b = _runner(other_store, "node-b", log, lease_seconds=10, now=clock)
    job_id = await _create(store, 5)
    claimed = await a.claim()
    assert claimed is not None and claimed.job_id == job_id and claimed.lease_owner == "node-a"
    after = await a.step(claimed)
    assert after is not None and after.cursor == 1
    # node-a goes silent; its lease holds for 10 s
    clock.t += 9
    assert await b.claim() is None
    clock.t += 2
    taken = await b.claim()
    assert taken is not None and taken.cursor == 1 and taken.lease_owner == "node-b"
    assert await a.step(after) is None  # node-a comes back: the job is not its own any more
    done = await b.run(taken)
    assert done is not None and done.state == "done"
    assert [(owner, at) for _j, owner, at in log] == [("node-a", 0), *(("node-b", i) for i in range(1, 5))]


async def test_a_cancelled_job_stops_before_its_next_step(store: Storage) -> None:
    log: list[tuple[str, str, int]] = []
    a = _runner(store, "node-a", log)
    job_id = await _create(store, 5)
    claimed = await a.claim()
    assert claimed is not None
    after = await a.step(claimed)
    assert after is not None
    cancelled = await store.write(lambda tx: jobs.cancel(tx.conn, job_id, a.now_us()))
    assert cancelled.state == "cancelled"
    assert await a.step(after) is None
    assert await a.claim() is None  # nobody takes it up again
    assert len(log) == 1 and (await _load(store, job_id)).processed == 1
    done_again = await store.write(lambda tx: jobs.cancel(tx.conn, job_id, a.now_us()))
    assert done_again.state == "cancelled"


async def test_a_failing_step_is_retried_then_the_job_fails(store: Storage) -> None:
    log: list[Any] = []
    a = _runner(store, "node-a", log, fail=True, max_attempts=2)
    job_id = await _create(store, 3)
    assert await a.run_once() == job_id  # first failure: the lease is given back
    job = await _load(store, job_id)
    assert job.state == "running" and job.attempts == 1 and job.lease_owner is None
    assert await a.run_once() == job_id
    job = await _load(store, job_id)
    assert job.state == "failed" and "broken handler" in (job.error or "")
    assert await a.run_once() is None


async def test_the_background_runner_runs_new_jobs_and_lets_go_at_stop(store: Storage,
                                                                      other_store: Storage) -> None:
    log: list[tuple[str, str, int]] = []
    a = _runner(store, "node-a", log, poll_seconds=0.05)
    await a.start()
    try:
        job_id = await _create(store, 3)
        a.wake()
        for _ in range(1000):  # up to 20 s on a loaded machine
            if (await _load(store, job_id)).state == "done":
                break
            await asyncio.sleep(0.02)
        assert (await _load(store, job_id)).state == "done"
    finally:
        await a.stop()
    # a job left half done by a stopping node is free at once for the next one
    slow = _runner(store, "node-a", log, pause=0.05, poll_seconds=0.05)
    second = await _create(store, 50)
    await slow.start()
    try:
        for _ in range(1000):  # up to 20 s on a loaded machine
            if (await _load(store, second)).processed > 0:
                break
            await asyncio.sleep(0.02)
    finally:
        await slow.stop()
    left = await _load(store, second)
    assert left.state == "running" and left.lease_owner is None and 0 < left.processed < 50
    b = _runner(other_store, "node-b", log)
    assert await b.run_once() == second
    steps = [at for j, _o, at in log if j == second]
    assert steps == list(range(50))


def test_on_postgresql_a_claim_skips_the_row_another_node_is_claiming(database_url: str) -> None:
    """SKIP LOCKED: the second claimer neither waits nor takes the locked job; it takes the next."""
    from sqlalchemy import create_engine

    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite has one writer at a time: two claims cannot overlap there")
    engine = create_engine(database_url)
    try:
        with engine.begin() as conn:
            first = jobs.create(conn, "count", {"n": 1}, 1)
            second = jobs.create(conn, "count", {"n": 1}, 2)
        with engine.connect() as a, engine.connect() as b:
            with a.begin():
                mine = jobs.claim(a, "node-a", ["count"], 10, 1_000_000)
                with b.begin():  # while node-a's claim is not committed
                    theirs = jobs.claim(b, "node-b", ["count"], 10, 1_000_000)
            assert mine is not None and mine.job_id == first
            assert theirs is not None and theirs.job_id == second
        with engine.connect() as conn:
            assert jobs.load(conn, first).lease_owner == "node-a"
            assert jobs.load(conn, second).lease_owner == "node-b"
    finally:
        engine.dispose()
