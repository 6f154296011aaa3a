"""Conditional create, update, delete and read, and If-Match version checks."""

from __future__ import annotations

import httpx

from tests.api.test_crud import PATIENT

SYS = "urn:oid:1.2.250.1.213.1.4.10"


def _patient(nir: str) -> dict:  # type: ignore[type-arg]
    return {**PATIENT, "identifier": [{"system": SYS, "value": nir}]}


async def test_if_none_exist_with_no_match_creates(client: httpx.AsyncClient) -> None:
    r = await client.post("/Patient", json=_patient("1"), headers={"If-None-Exist": f"identifier={SYS}|1"})
    assert r.status_code == 201


async def test_if_none_exist_with_one_match_returns_it_with_200(client: httpx.AsyncClient) -> None:
    first = (await client.post("/Patient", json=_patient("1"))).json()
    r = await client.post("/Patient", json=_patient("1"), headers={"If-None-Exist": f"identifier={SYS}|1"})
    assert r.status_code == 200
    assert r.json()["id"] == first["id"]
    assert r.json()["meta"]["versionId"] == "1"


async def test_if_none_exist_with_two_matches_is_412(client: httpx.AsyncClient) -> None:
    await client.post("/Patient", json=_patient("1"))
    await client.post("/Patient", json=_patient("1"))
    r = await client.post("/Patient", json=_patient("1"), headers={"If-None-Exist": f"identifier={SYS}|1"})
    assert r.status_code == 412


async def test_if_none_exist_with_unsupported_parameter_is_400(client: httpx.AsyncClient) -> None:
    r = await client.post("/Patient", json=_patient("1"), headers={"If-None-Exist": "no-such-param=1"})
    assert r.status_code == 400


async def test_conditional_update_creates_updates_or_refuses(client: httpx.AsyncClient) -> None:
    r = await client.put(f"/Patient?identifier={SYS}|7", json=_patient("7"))
    assert r.status_code == 201
    pid = r.json()["id"]
    r = await client.put(f"/Patient?identifier={SYS}|7", json={**_patient("7"), "gender": "male"})
    assert r.status_code == 200
    assert r.json()["id"] == pid and r.json()["meta"]["versionId"] == "2"
    await client.post("/Patient", json=_patient("7"))
    r = await client.put(f"/Patient?identifier={SYS}|7", json=_patient("7"))
    assert r.status_code == 412


async def test_conditional_update_with_other_id_in_body_is_400(client: httpx.AsyncClient) -> None:
    await client.post("/Patient", json=_patient("8"))
    r = await client.put(f"/Patient?identifier={SYS}|8", json={**_patient("8"), "id": "other"})
    assert r.status_code == 400


async def test_conditional_delete_single_and_multiple(client_factory) -> None:  # type: ignore[no-untyped-def]
    async with client_factory() as client:
        pid = (await client.post("/Patient", json=_patient("3"))).json()["id"]
        r = await client.delete(f"/Patient?identifier={SYS}|3")
        assert r.status_code == 204
        assert (await client.get(f"/Patient/{pid}")).status_code == 410
        await client.post("/Patient", json=_patient("4"))
        await client.post("/Patient", json=_patient("4"))
        assert (await client.delete(f"/Patient?identifier={SYS}|4")).status_code == 412
        r = await client.delete(f"/Patient?identifier={SYS}|none")
        assert r.status_code == 200 and r.json()["issue"][0]["severity"] == "information"
    async with client_factory(allow_multiple_delete=True) as client:
        r = await client.delete(f"/Patient?identifier={SYS}|4")
        assert r.status_code == 204
        r = await client.post("/Patient", json=_patient("4"), headers={"If-None-Exist": f"identifier={SYS}|4"})
        assert r.status_code == 201


async def test_if_match_mismatch_is_412_and_match_updates(client: httpx.AsyncClient) -> None:
    pid = (await client.post("/Patient", json=PATIENT)).json()["id"]
    body = {**PATIENT, "id": pid}
    r = await client.put(f"/Patient/{pid}", json=body, headers={"If-Match": 'W/"2"'})
    assert r.status_code == 412
    r = await client.put(f"/Patient/{pid}", json=body, headers={"If-Match": 'W/"1"'})
    assert r.status_code == 200
    r = await client.delete(f"/Patient/{pid}", headers={"If-Match": 'W/"1"'})
    assert r.status_code == 412
    r = await client.put(f"/Patient/{pid}", json=body, headers={"If-Match": "garbage"})
    assert r.status_code == 400


async def test_conditional_read_answers_304(client: httpx.AsyncClient) -> None:
    r = await client.post("/Patient", json=PATIENT)
    pid, modified = r.json()["id"], r.headers["last-modified"]
    assert (await client.get(f"/Patient/{pid}", headers={"If-None-Match": 'W/"1"'})).status_code == 304
    assert (await client.get(f"/Patient/{pid}", headers={"If-None-Match": 'W/"0"'})).status_code == 200
    assert (await client.get(f"/Patient/{pid}", headers={"If-Modified-Since": modified})).status_code == 304
    old = "Mon, 01 Jan 2001 00:00:00 GMT"
    assert (await client.get(f"/Patient/{pid}", headers={"If-Modified-Since": old})).status_code == 200
