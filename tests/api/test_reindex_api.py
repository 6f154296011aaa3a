"""Custom SearchParameters over HTTP: stored, refused while pending, live after $reindex."""

from __future__ import annotations

from typing import Any

import anyio
import httpx

EXT = "http://example.org/fhir/StructureDefinition/hair-colour"
SP = {
    "resourceType": "SearchParameter", "id": "hair-colour", "url": "http://example.org/fhir/SearchParameter/hair",
    "name": "hair-colour", "status": "active", "code": "hair-colour", "base": ["Patient"], "type": "token",
    "expression": f"Patient.extension.where(url='{EXT}').value", "description": "Hair colour",
}


def _patient(colour: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "extension": [{"url": EXT, "valueCode": colour}]}


async def _wait_for(client: httpx.AsyncClient, url: str, params: dict[str, str]) -> httpx.Response:
    with anyio.fail_after(60):
        while True:
            r = await client.get(url, params=params)
            if r.status_code == 200:
                return r
            assert "not indexed yet" in r.text or "indexing" in r.text, r.text
            await anyio.sleep(0.05)


async def test_custom_parameter_needs_reindex_then_searches(client: httpx.AsyncClient) -> None:
    for colour in ("red", "brown", "red"):
        await client.post("/Patient", json=_patient(colour))
    assert (await client.put("/SearchParameter/hair-colour", json=SP)).status_code == 201
    pending = await client.get("/Patient", params={"hair-colour": "red"})
    assert pending.status_code == 400 and "not indexed yet" in pending.text
    started = await client.post("/$reindex", json={"resourceType": "Parameters", "parameter": [
        {"name": "url", "valueUri": SP["url"]}]})
    assert started.status_code == 200, started.text
    job = next(p["valueString"] for p in started.json()["parameter"] if p["name"] == "job")
    r = await _wait_for(client, "/Patient", {"hair-colour": "red"})
    assert len(r.json()["entry"]) == 2
    status = (await client.get("/$reindex", params={"job": job})).json()
    parts = {p["name"]: p for p in status["parameter"]}
    assert parts["status"]["valueCode"] == "done" and parts["processed"]["valueInteger"] == 3


async def test_reindex_errors(client: httpx.AsyncClient) -> None:
    assert (await client.get("/$reindex")).status_code == 400
    assert (await client.get("/$reindex", params={"job": "nope"})).status_code == 404
    r = await client.post("/$reindex", json={"resourceType": "Parameters", "parameter": [
        {"name": "url", "valueUri": "http://example.org/none"}]})
    assert r.status_code == 404
    assert (await client.post("/$nothing", json={})).status_code == 404


async def test_a_search_parameter_the_server_cannot_index_is_still_stored(client: httpx.AsyncClient) -> None:
    special = {**SP, "id": "near-ish", "url": "http://example.org/sp/near", "code": "near-ish", "type": "special"}
    assert (await client.put("/SearchParameter/near-ish", json=special)).status_code == 201


async def test_french_parameters_from_profiles_become_live_at_start(client_factory: Any) -> None:
    async with client_factory(load_profiles=True) as client:
        patient = {"resourceType": "Patient", "identifier": [
            {"system": "urn:oid:1.2.250.1.213.1.4.10", "value": "280017512345610"}]}
        await client.post("/Patient", json=patient)
        r = await _wait_for(client, "/Patient", {"ins": "urn:oid:1.2.250.1.213.1.4.10|280017512345610"})
        assert len(r.json()["entry"]) == 1
        cs = (await client.get("/metadata")).json()
        params = next(x for x in cs["rest"][0]["resource"] if x["type"] == "Patient")["searchParam"]
        assert "ins" in {p["name"] for p in params}


async def test_a_job_left_by_a_stopped_node_is_resumed_at_the_next_start(client_factory: Any,
                                                                         database_url: str) -> None:
    from sqlalchemy import create_engine, select, update

    from fhir_server.search.reindex import start_reindex
    from fhir_server.storage.job_schema import job

    async with client_factory() as client:
        for colour in ("red", "red", "brown"):
            await client.post("/Patient", json=_patient(colour))
        assert (await client.put("/SearchParameter/hair-colour", json=SP)).status_code == 201
    engine = create_engine(database_url)
    try:
        with engine.begin() as conn:  # a node created the job, took its lease and died
            job_id = start_reindex(conn, [("Patient", "hair-colour")])
            conn.execute(update(job).where(job.c.job_id == job_id).values(lease_owner="gone", lease_expires=1))
        async with client_factory() as client:
            r = await _wait_for(client, "/Patient", {"hair-colour": "red"})
            assert len(r.json()["entry"]) == 2
            status = (await client.get("/$reindex", params={"job": job_id})).json()
            assert {p["name"]: p.get("valueCode") for p in status["parameter"]}["status"] == "done"
        with engine.connect() as conn:  # resumed, not started again beside it
            assert conn.execute(select(job.c.job_id).where(job.c.type == "reindex")).scalars().all() == [job_id]
    finally:
        engine.dispose()


async def test_a_reindex_job_can_be_cancelled(client: httpx.AsyncClient) -> None:
    await client.post("/Patient", json=_patient("red"))
    assert (await client.put("/SearchParameter/hair-colour", json=SP)).status_code == 201
    started = await client.post("/$reindex", json={"resourceType": "Parameters", "parameter": [
        {"name": "url", "valueUri": SP["url"]}]})
    job = next(p["valueString"] for p in started.json()["parameter"] if p["name"] == "job")
    r = await client.post("/$reindex", json={"resourceType": "Parameters", "parameter": [
        {"name": "job", "valueString": job}, {"name": "cancel", "valueBoolean": True}]})
    assert r.status_code == 200, r.text
    status = {p["name"]: p.get("valueCode") for p in r.json()["parameter"]}["status"]
    assert status in ("cancelled", "done")  # it may have finished first: one patient is one step
    empty = {"resourceType": "Parameters"}
    missing = await client.post("/$reindex", params={"job": job}, json=empty)
    assert missing.status_code == 400 and "cancel=true" in missing.text
    again = await client.post("/$reindex", params={"job": job, "cancel": "true"}, json=empty)  # query string
    assert again.status_code == 200 and status in again.text
