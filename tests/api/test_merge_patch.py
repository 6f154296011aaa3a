"""JSON Merge Patch over HTTP (RFC 7386), and a partial resource sent as FHIR JSON (Aidbox, fhirpy)."""

from __future__ import annotations

import base64
import json

import httpx

from fhir_server.fhir.merge_patch import apply_merge_patch
from tests.api.test_crud import PATIENT

MERGE = {"content-type": "application/merge-patch+json"}


def test_merge_rules_of_rfc_7386() -> None:
    target = {"a": "b", "c": {"d": "e", "f": "g"}, "l": [1, 2]}
    patched = apply_merge_patch(target, {"a": "z", "c": {"f": None}, "l": [3]})
    assert patched == {"a": "z", "c": {"d": "e"}, "l": [3]}
    assert target["c"] == {"d": "e", "f": "g"}  # the argument is untouched


async def test_merge_patch_changes_removes_and_versions(client: httpx.AsyncClient) -> None:
    pid = (await client.post("/Patient", json=PATIENT)).json()["id"]
    r = await client.patch(f"/Patient/{pid}", json={"gender": "male", "birthDate": None, "active": True}, headers=MERGE)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["gender"] == "male" and body["active"] is True and "birthDate" not in body
    assert body["name"] == PATIENT["name"] and body["meta"]["versionId"] == "2"
    hist = (await client.get(f"/Patient/{pid}/_history")).json()
    assert hist["entry"][0]["request"]["method"] == "PATCH"


async def test_partial_resource_as_fhir_json_is_a_merge_patch(client: httpx.AsyncClient) -> None:
    """What fhirpy's resource.patch() sends: the resource type and the changed elements."""
    pid = (await client.post("/Patient", json=PATIENT)).json()["id"]
    for ctype in ("application/fhir+json", "application/json"):
        partial = {"resourceType": "Patient", "id": pid, "active": ctype == "application/json"}
        r = await client.patch(f"/Patient/{pid}", json=partial, headers={"content-type": ctype})
        assert r.status_code == 200, r.text
        assert r.json()["active"] is (ctype == "application/json") and r.json()["gender"] == "female"


async def test_fhirpy_patch_body_without_resource_type(client: httpx.AsyncClient) -> None:
    """fhirpy's resource.patch(active=True) and client.patch(...) send only the changed elements."""
    pid = (await client.post("/Patient", json=PATIENT)).json()["id"]
    r = await client.patch(f"/Patient/{pid}", json={"active": True, "birthDate": None})
    assert r.status_code == 200, r.text
    assert r.json()["active"] is True and "birthDate" not in r.json() and r.json()["name"] == PATIENT["name"]


async def test_merge_patch_result_is_validated(client: httpx.AsyncClient) -> None:
    pid = (await client.post("/Patient", json=PATIENT)).json()["id"]
    r = await client.patch(f"/Patient/{pid}", json={"birthDate": "not a date"}, headers=MERGE)
    assert r.status_code in (400, 422) and r.json()["resourceType"] == "OperationOutcome"
    assert (await client.get(f"/Patient/{pid}")).json()["meta"]["versionId"] == "1"


async def test_merge_patch_may_not_change_id_or_type(client: httpx.AsyncClient) -> None:
    pid = (await client.post("/Patient", json=PATIENT)).json()["id"]
    r = await client.patch(f"/Patient/{pid}", json={"id": "other"}, headers=MERGE)
    assert r.status_code == 422 and "id" in r.json()["issue"][0]["diagnostics"]
    r = await client.patch(f"/Patient/{pid}", json={"resourceType": "Observation"}, headers=MERGE)
    assert r.status_code == 400


async def test_unknown_patch_body_names_the_accepted_formats(client: httpx.AsyncClient) -> None:
    pid = (await client.post("/Patient", json=PATIENT)).json()["id"]
    r = await client.patch(f"/Patient/{pid}", json={"resourceType": "Observation", "status": "final"})
    assert r.status_code == 400
    text = r.json()["issue"][0]["diagnostics"]
    assert "application/merge-patch+json" in text and "json-patch+json" in text and "Parameters" in text
    r = await client.patch(f"/Patient/{pid}", json=[1], headers=MERGE)
    assert r.status_code == 400
    r = await client.patch(f"/Patient/{pid}", content=b"x", headers={"content-type": "text/plain"})
    assert r.status_code == 415 and "merge-patch+json" in r.json()["issue"][0]["diagnostics"]


async def test_conditional_merge_patch(client: httpx.AsyncClient) -> None:
    pid = (await client.post("/Patient", json=PATIENT)).json()["id"]
    ident = PATIENT["identifier"][0]
    r = await client.patch(
        f"/Patient?identifier={ident['system']}|{ident['value']}", json={"active": False}, headers=MERGE
    )
    assert r.status_code == 200 and r.json()["id"] == pid and r.json()["active"] is False


async def test_merge_patch_in_a_transaction(client: httpx.AsyncClient) -> None:
    pid = (await client.post("/Patient", json=PATIENT)).json()["id"]
    data = base64.b64encode(json.dumps({"gender": "other"}).encode()).decode()
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": {"resourceType": "Binary", "contentType": "application/merge-patch+json", "data": data},
                "request": {"method": "PATCH", "url": f"Patient/{pid}"},
            }
        ],
    }
    r = await client.post("", json=bundle)
    assert r.status_code == 200, r.text
    assert (await client.get(f"/Patient/{pid}")).json()["gender"] == "other"
