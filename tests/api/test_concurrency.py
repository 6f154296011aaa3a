"""Concurrent writers: version checks and conditional creates decide exactly once."""

from __future__ import annotations

import anyio
import httpx
import pytest

from fhir_server.storage.sqlite import SqliteStorage
from tests.api.test_crud import PATIENT


async def test_two_concurrent_updates_with_same_if_match_exactly_one_succeeds(client: httpx.AsyncClient) -> None:
    for _ in range(5):
        pid = (await client.post("/Patient", json=PATIENT)).json()["id"]
        statuses: list[int] = []

        async def put(gender: str, pid: str = pid, statuses: list[int] = statuses) -> None:
            r = await client.put(
                f"/Patient/{pid}", json={**PATIENT, "id": pid, "gender": gender}, headers={"If-Match": 'W/"1"'}
            )
            statuses.append(r.status_code)

        async with anyio.create_task_group() as tg:
            tg.start_soon(put, "male")
            tg.start_soon(put, "other")
        assert sorted(statuses) == [200, 412]
        assert (await client.get(f"/Patient/{pid}")).json()["meta"]["versionId"] == "2"


async def test_32_concurrent_identical_conditional_creates_make_one_resource(client: httpx.AsyncClient) -> None:
    body = {**PATIENT, "identifier": [{"system": "urn:x", "value": "race-1"}]}
    statuses: list[int] = []
    ids: set[str] = set()

    async def create() -> None:
        r = await client.post("/Patient", json=body, headers={"If-None-Exist": "identifier=urn:x|race-1"})
        statuses.append(r.status_code)
        ids.add(r.json()["id"])

    async with anyio.create_task_group() as tg:
        for _ in range(32):
            tg.start_soon(create)
    assert statuses.count(201) == 1 and statuses.count(200) == 31
    assert len(ids) == 1
    hist = (await client.get("/Patient/_history")).json()
    assert len(hist["entry"]) == 1


async def test_concurrent_creates_of_same_new_id_version_in_order(client: httpx.AsyncClient) -> None:
    statuses: list[int] = []

    async def put() -> None:
        r = await client.put("/Patient/same-id", json={**PATIENT, "id": "same-id"})
        statuses.append(r.status_code)

    async with anyio.create_task_group() as tg:
        for _ in range(8):
            tg.start_soon(put)
    assert sorted(statuses) == [200] * 7 + [201]
    versions = [e["response"]["etag"] for e in (await client.get("/Patient/same-id/_history")).json()["entry"]]
    assert versions == [f'W/"{v}"' for v in range(8, 0, -1)]


async def test_sqlite_group_commit_shares_commits_between_concurrent_writes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from fhir_server.storage import migrate
    from fhir_server.storage.backend import WriteTx

    url = f"sqlite:///{tmp_path / 'gc.db'}"
    migrate(url)
    store = SqliteStorage(url)
    await store.start()
    try:

        def write(tx: WriteTx, n: int) -> int:
            return tx.put(None, "Basic", f"b{n}", 1, 1, "POST", b"{}")

        async with anyio.create_task_group() as tg:
            for n in range(200):
                tg.start_soon(store.write, lambda tx, n=n: write(tx, n))
        assert store.commits < 200  # several writes per fsync
        assert len(await store.history("Basic", None, None, None, None, 500)) == 200
    finally:
        await store.close()


async def test_sqlite_failed_write_in_a_group_does_not_undo_the_others(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from fhir_server.storage import migrate
    from fhir_server.storage.backend import WriteTx

    url = f"sqlite:///{tmp_path / 'gc.db'}"
    migrate(url)
    store = SqliteStorage(url)
    await store.start()
    results: dict[int, str] = {}
    try:

        def write(tx: WriteTx, n: int) -> int:
            tx.put(None, "Basic", f"b{n}", 1, 1, "POST", b"{}")
            if n % 2:
                raise ValueError("odd")
            return n

        async def run(n: int) -> None:
            try:
                await store.write(lambda tx: write(tx, n))
                results[n] = "ok"
            except ValueError:
                results[n] = "failed"

        async with anyio.create_task_group() as tg:
            for n in range(20):
                tg.start_soon(run, n)
        stored = {h.id for h in await store.history("Basic", None, None, None, None, 100)}
        assert stored == {f"b{n}" for n in range(0, 20, 2)}
        assert [results[n] for n in range(4)] == ["ok", "failed", "ok", "failed"]
    finally:
        await store.close()


async def test_sqlite_writer_that_cannot_start_fails_writes_instead_of_hanging(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import create_engine

    from fhir_server.errors import FhirError

    (tmp_path / "a-folder.db").mkdir()  # a folder where the database file should be: cannot open
    store = SqliteStorage(f"sqlite:///{tmp_path / 'ok.db'}")
    store.write_engine = create_engine(f"sqlite:///{tmp_path / 'a-folder.db'}")  # the writer's own database
    await store.start()
    try:
        with anyio.fail_after(20):
            failed = False
            try:
                await store.write(lambda tx: tx.put(None, "Basic", "b", 1, 1, "POST", b"{}"))
            except Exception:  # noqa: BLE001 - the queued write gets the writer's own error
                failed = True
            assert failed
            await anyio.sleep(0.1)
            try:
                await store.write(lambda tx: 1)
                raise AssertionError("a write succeeded without a writer")
            except FhirError as exc:
                assert exc.status == 503
    finally:
        await store.close()


@pytest.mark.parametrize("mmap_bytes", [0, 1 << 28])
async def test_sqlite_readers_map_the_database_as_configured(tmp_path, mmap_bytes: int) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import text

    from fhir_server.config import Settings
    from fhir_server.storage import migrate, open_storage

    url = f"sqlite:///{tmp_path / 'mmap.db'}"
    migrate(url)
    store = open_storage(Settings(database_url=url, sqlite_mmap_bytes=mmap_bytes))
    await store.start()
    try:
        mapped = await store.run_read(lambda conn: conn.execute(text("PRAGMA mmap_size")).scalar_one())
        assert mapped == mmap_bytes
    finally:
        await store.close()
