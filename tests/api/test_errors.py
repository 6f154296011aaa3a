"""Bad input answers 4xx with an OperationOutcome that says what to fix, and writes nothing."""

from __future__ import annotations

import httpx

from tests.api.test_crud import PATIENT


async def _count_history(client: httpx.AsyncClient) -> int:
    return len((await client.get("/_history", params={"_count": "1000"})).json().get("entry", []))


async def test_malformed_json_is_400_naming_the_position(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/Patient", content=b'{"resourceType": "Patient",', headers={"content-type": "application/fhir+json"}
    )
    assert r.status_code == 400
    assert "line 1" in r.json()["issue"][0]["diagnostics"]
    assert await _count_history(client) == 0


async def test_wrong_resource_type_is_400(client: httpx.AsyncClient) -> None:
    r = await client.post("/Patient", json={"resourceType": "Observation", "status": "final", "code": {"text": "x"}})
    assert r.status_code == 400
    assert "does not match" in r.json()["issue"][0]["diagnostics"]


async def test_body_that_is_not_an_object_is_400(client: httpx.AsyncClient) -> None:
    for body in (b"[]", b'"text"', b"42", b"null"):
        r = await client.post("/Patient", content=body, headers={"content-type": "application/fhir+json"})
        assert r.status_code == 400, body


async def test_empty_body_is_400(client: httpx.AsyncClient) -> None:
    r = await client.post("/Patient", content=b"", headers={"content-type": "application/fhir+json"})
    assert r.status_code == 400


async def test_invalid_resource_lists_issue_with_path(client: httpx.AsyncClient) -> None:
    r = await client.post("/Patient", json={**PATIENT, "birthDate": "17/01/1980", "unknownElement": 1})
    assert r.status_code == 400
    issues = r.json()["issue"]
    paths = {p for i in issues for p in i.get("expression", [])}
    assert "Patient.birthDate" in paths
    assert "Patient.unknownElement" in paths
    assert await _count_history(client) == 0


async def test_oversized_body_is_413(client_factory) -> None:  # type: ignore[no-untyped-def]
    async with client_factory(max_body_bytes=2048) as client:
        big = {**PATIENT, "name": [{"family": "x" * 4000}]}
        r = await client.post("/Patient", json=big)
        assert r.status_code == 413
        assert r.json()["resourceType"] == "OperationOutcome"


async def test_unknown_endpoint_and_method_answer_operation_outcome(client: httpx.AsyncClient) -> None:
    r = await client.get("/Patient/1/_history/1/extra")
    assert r.status_code == 404 and r.json()["resourceType"] == "OperationOutcome"
    r = await client.post("/Patient/1")
    assert r.status_code == 405 and r.json()["resourceType"] == "OperationOutcome"


async def test_decimals_keep_their_precision(client: httpx.AsyncClient) -> None:
    obs = (
        b'{"resourceType":"Observation","status":"final","code":{"text":"weight"},'
        b'"valueQuantity":{"value":72.50,"unit":"kg"},"component":[{"code":{"text":"x"},"valueQuantity":{"value":1.000}}]}'
    )
    r = await client.post("/Observation", content=obs, headers={"content-type": "application/fhir+json"})
    assert r.status_code == 201, r.text
    read = await client.get(f"/Observation/{r.json()['id']}")
    assert b'"value":72.50' in read.content
    assert b'"value":1.000' in read.content
