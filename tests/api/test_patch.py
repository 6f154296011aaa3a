"""PATCH over HTTP: JSON Patch and FHIRPath Patch share the update path (versions, validation)."""

from __future__ import annotations

import httpx

from tests.api.test_crud import PATIENT

JSON_PATCH = {"content-type": "application/json-patch+json"}


async def test_json_patch_creates_a_new_version(client: httpx.AsyncClient) -> None:
    pid = (await client.post("/Patient", json=PATIENT)).json()["id"]
    ops = [{"op": "replace", "path": "/gender", "value": "male"}, {"op": "add", "path": "/active", "value": True}]
    r = await client.patch(f"/Patient/{pid}", json=ops, headers=JSON_PATCH)
    assert r.status_code == 200, r.text
    assert r.json()["gender"] == "male" and r.json()["active"] is True
    assert r.json()["meta"]["versionId"] == "2" and r.headers["etag"] == 'W/"2"'
    hist = (await client.get(f"/Patient/{pid}/_history")).json()
    assert hist["entry"][0]["request"]["method"] == "PATCH"


async def test_fhirpath_patch_with_parameters_body(client: httpx.AsyncClient) -> None:
    pid = (await client.post("/Patient", json=PATIENT)).json()["id"]
    params = {
        "resourceType": "Parameters",
        "parameter": [
            {
                "name": "operation",
                "part": [
                    {"name": "type", "valueCode": "replace"},
                    {"name": "path", "valueString": "Patient.birthDate"},
                    {"name": "value", "valueDate": "1981-02-03"},
                ],
            }
        ],
    }
    r = await client.patch(f"/Patient/{pid}", json=params, headers={"content-type": "application/fhir+json"})
    assert r.status_code == 200, r.text
    assert r.json()["birthDate"] == "1981-02-03"


async def test_patch_that_breaks_the_resource_is_rejected_without_new_version(client: httpx.AsyncClient) -> None:
    pid = (await client.post("/Patient", json=PATIENT)).json()["id"]
    bad = [{"op": "replace", "path": "/birthDate", "value": "not a date"}]
    r = await client.patch(f"/Patient/{pid}", json=bad, headers=JSON_PATCH)
    assert r.status_code in (400, 422)
    assert r.json()["resourceType"] == "OperationOutcome"
    assert (await client.get(f"/Patient/{pid}")).json()["meta"]["versionId"] == "1"


async def test_patch_errors(client: httpx.AsyncClient) -> None:
    pid = (await client.post("/Patient", json=PATIENT)).json()["id"]
    r = await client.patch(f"/Patient/{pid}", json={"op": "add"}, headers=JSON_PATCH)
    assert r.status_code == 400
    r = await client.patch(
        f"/Patient/{pid}", json=[{"op": "test", "path": "/gender", "value": "male"}], headers=JSON_PATCH
    )
    assert r.status_code == 422
    r = await client.patch(f"/Patient/{pid}", json=[{"op": "replace", "path": "/id", "value": "x"}], headers=JSON_PATCH)
    assert r.status_code == 422
    r = await client.patch("/Patient/missing", json=[], headers=JSON_PATCH)
    assert r.status_code == 404
    r = await client.patch(f"/Patient/{pid}", json=[], headers={**JSON_PATCH, "If-Match": 'W/"5"'})
    assert r.status_code == 412
    r = await client.patch(f"/Patient/{pid}", content=b"x", headers={"content-type": "text/plain"})
    assert r.status_code == 415


async def test_conditional_patch(client: httpx.AsyncClient) -> None:
    pid = (await client.post("/Patient", json=PATIENT)).json()["id"]
    sys = PATIENT["identifier"][0]["system"]
    value = PATIENT["identifier"][0]["value"]
    ops = [{"op": "add", "path": "/active", "value": False}]
    r = await client.patch(f"/Patient?identifier={sys}|{value}", json=ops, headers=JSON_PATCH)
    assert r.status_code == 200 and r.json()["id"] == pid
    r = await client.patch(f"/Patient?identifier={sys}|nope", json=ops, headers=JSON_PATCH)
    assert r.status_code == 404
