"""The write seam: every stored version, whatever wrote it, passes `store_version` exactly once,
runs the in-transaction hooks once and reaches the after-commit hooks once."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import func, select

from fhir_server import clock
from fhir_server.app import create_app
from fhir_server.context import EVERYTHING, RequestContext
from fhir_server.interactions.load import load_resources
from fhir_server.storage import Storage, StoredResource, WriteTx
from fhir_server.storage.schema import resource_history

pytestmark = pytest.mark.anyio
BASE = "http://testserver/fhir"


class Counter:
    def __init__(self) -> None:
        self.in_tx: list[tuple[str, str, int]] = []
        self.committed: list[tuple[str, str, int]] = []

    def hook(self, tx: WriteTx, stored: StoredResource) -> None:
        assert tx.written[-1] is stored  # recorded before the hooks run
        self.in_tx.append((stored.type, stored.id, stored.version))

    def after(self, _ctx: Any, written: list[StoredResource]) -> None:
        self.committed.extend((s.type, s.id, s.version) for s in written)


@pytest.fixture
async def seam(settings_factory: Any) -> AsyncIterator[tuple[httpx.AsyncClient, Storage, Counter]]:
    app = create_app(settings_factory())
    async with app.router.lifespan_context(app):
        store: Storage = app.state.storage
        counter = Counter()
        store.hooks.in_tx.append(counter.hook)
        store.hooks.after_commit.append(counter.after)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as http:
            yield http, store, counter


async def _versions(store: Storage) -> int:
    return int(await store.run_read(lambda c: c.execute(select(func.count()).select_from(resource_history)).scalar()))


def _patient(family: str, **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "name": [{"family": family}], **extra}


async def test_every_write_interaction_passes_the_seam_once_per_version(seam: Any) -> None:
    http, store, counter = seam
    ident = {"identifier": [{"system": "urn:s", "value": "1"}]}
    patch_doc = [{"op": "replace", "path": "/gender", "value": "female"}]
    binary = base64.b64encode(orjson.dumps([{"op": "add", "path": "/active", "value": True}])).decode()
    steps: list[tuple[str, Any]] = [
        ("create", lambda: http.post("/Patient", json=_patient("A", gender="male"))),
        ("conditional create (new)", lambda: http.post("/Patient", json=_patient("B", **ident),
                                                      headers={"If-None-Exist": "identifier=urn:s|1"})),
        ("conditional create (match)", lambda: http.post("/Patient", json=_patient("B", **ident),
                                                        headers={"If-None-Exist": "identifier=urn:s|1"})),
        ("update", lambda: http.put("/Patient/u1", json=_patient("U", id="u1", gender="male"))),
        ("update (create)", lambda: http.put("/Patient/keep", json=_patient("K", id="keep"))),
        ("conditional update", lambda: http.put("/Patient?identifier=urn:s|1",
                                                json=_patient("B2", gender="male", **ident))),
        ("patch", lambda: http.patch("/Patient/u1", content=orjson.dumps(patch_doc),
                                     headers={"Content-Type": "application/json-patch+json"})),
        ("conditional patch", lambda: http.patch("/Patient?identifier=urn:s|1", content=orjson.dumps(patch_doc),
                                                 headers={"Content-Type": "application/json-patch+json"})),
        ("delete", lambda: http.delete("/Patient/u1")),
        ("conditional delete", lambda: http.delete("/Patient?identifier=urn:s|1")),
        ("transaction", lambda: http.post("", json={"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": _patient("T1"), "request": {"method": "POST", "url": "Patient"}},
            {"resource": _patient("T2", id="t2"), "request": {"method": "PUT", "url": "Patient/t2"}},
            {"resource": {"resourceType": "Binary", "contentType": "application/json-patch+json", "data": binary},
             "request": {"method": "PATCH", "url": "Patient/keep"}},
        ]})),
        ("batch", lambda: http.post("", json={"resourceType": "Bundle", "type": "batch", "entry": [
            {"resource": _patient("B1"), "request": {"method": "POST", "url": "Patient"}},
            {"request": {"method": "DELETE", "url": "Patient/t2"}},
            {"request": {"method": "GET", "url": "Patient/t2"}},
        ]})),
    ]
    for name, step in steps:
        before, hooked, committed = await _versions(store), len(counter.in_tx), len(counter.committed)
        r = await step()
        assert r.status_code < 300, (name, r.text)
        added = await _versions(store) - before
        assert len(counter.in_tx) - hooked == added, name
        assert counter.committed[committed:] == counter.in_tx[hooked:], name
    assert len(set(counter.in_tx)) == len(counter.in_tx)  # no version twice
    assert len(counter.in_tx) == await _versions(store)


async def test_load_passes_the_seam_with_its_context(seam: Any, settings_factory: Any) -> None:
    _http, store, counter = seam
    seen: list[Any] = []
    store.hooks.after_commit.append(lambda ctx, written: seen.append((ctx, len(written))))
    ctx = RequestContext(settings=settings_factory(), base_url=BASE, access=EVERYTHING, request_id="load-1")
    await load_resources(ctx, store, [_patient("L1", id="l1"), _patient("L2", id="l2")])
    assert counter.in_tx[-2:] == [("Patient", "l1", 1), ("Patient", "l2", 1)]
    assert seen == [(ctx, 2)]


async def test_the_clock_and_ids_are_injected(seam: Any) -> None:
    http, _store, _counter = seam
    with clock.use(clock.FixedClock(start_us=1_700_000_000_000_000, prefix="fixed-")):
        r = await http.post("/Patient", json=_patient("Clock"))
        again = await http.post("/Patient", json=_patient("Clock"))
    assert r.json()["id"] == "fixed-1" and again.json()["id"] == "fixed-2"
    assert r.json()["meta"]["lastUpdated"] == "2023-11-14T22:13:20.000000Z"
    assert again.json()["meta"]["lastUpdated"] == "2023-11-14T22:13:20.000001Z"
