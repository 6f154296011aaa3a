"""Create, read, vread, update and delete through HTTP on both backends."""

from __future__ import annotations

from typing import Any

import httpx

PATIENT: dict[str, Any] = {
    "resourceType": "Patient",
    "identifier": [{"system": "urn:oid:1.2.250.1.213.1.4.10", "value": "180017512345601"}],
    "name": [{"family": "Martin", "given": ["Claire"]}],
    "gender": "female",
    "birthDate": "1980-01-17",
}


async def test_create_assigns_id_and_returns_location_etag_last_modified(client: httpx.AsyncClient) -> None:
    r = await client.post("/Patient", json={**PATIENT, "id": "ignored-by-server"})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["id"] != "ignored-by-server"
    assert body["meta"]["versionId"] == "1"
    assert r.headers["etag"] == 'W/"1"'
    assert r.headers["location"] == f"http://testserver/fhir/Patient/{body['id']}/_history/1"
    assert r.headers["last-modified"].endswith("GMT")
    assert r.headers["content-type"].startswith("application/fhir+json")


async def test_read_returns_stored_resource_with_headers(client: httpx.AsyncClient) -> None:
    created = (await client.post("/Patient", json=PATIENT)).json()
    r = await client.get(f"/Patient/{created['id']}")
    assert r.status_code == 200
    assert r.json() == created
    assert r.headers["etag"] == 'W/"1"'


async def test_read_unknown_id_is_404_with_operation_outcome(client: httpx.AsyncClient) -> None:
    r = await client.get("/Patient/does-not-exist")
    assert r.status_code == 404
    assert r.json()["resourceType"] == "OperationOutcome"
    assert r.json()["issue"][0]["code"] == "not-found"


async def test_unknown_resource_type_is_404(client: httpx.AsyncClient) -> None:
    r = await client.get("/Patientz/1")
    assert r.status_code == 404
    assert "Patientz" in r.json()["issue"][0]["diagnostics"]


async def test_update_creates_new_version_and_vread_keeps_old(client: httpx.AsyncClient) -> None:
    created = (await client.post("/Patient", json=PATIENT)).json()
    pid = created["id"]
    r = await client.put(f"/Patient/{pid}", json={**PATIENT, "id": pid, "gender": "other"})
    assert r.status_code == 200, r.text
    assert r.json()["meta"]["versionId"] == "2"
    assert r.headers["etag"] == 'W/"2"'
    old = await client.get(f"/Patient/{pid}/_history/1")
    assert old.status_code == 200
    assert old.json()["gender"] == "female"
    assert old.headers["etag"] == 'W/"1"'
    assert (await client.get(f"/Patient/{pid}")).json()["gender"] == "other"


async def test_update_as_create_with_client_id_returns_201(client: httpx.AsyncClient) -> None:
    r = await client.put("/Patient/client-chosen-1", json={**PATIENT, "id": "client-chosen-1"})
    assert r.status_code == 201
    assert r.json()["id"] == "client-chosen-1"
    assert r.headers["location"].endswith("/Patient/client-chosen-1/_history/1")


async def test_update_with_mismatched_id_is_400(client: httpx.AsyncClient) -> None:
    r = await client.put("/Patient/a1", json={**PATIENT, "id": "b2"})
    assert r.status_code == 400
    assert r.json()["issue"][0]["expression"] == ["id"]
    assert (await client.get("/Patient/a1")).status_code == 404


async def test_update_without_id_in_body_is_400(client: httpx.AsyncClient) -> None:
    r = await client.put("/Patient/a1", json=PATIENT)
    assert r.status_code == 400


async def test_update_with_invalid_id_is_400(client: httpx.AsyncClient) -> None:
    r = await client.put("/Patient/bad_id!", json={**PATIENT, "id": "bad_id!"})
    assert r.status_code == 400


async def test_delete_then_read_is_410_and_history_keeps_versions(client: httpx.AsyncClient) -> None:
    pid = (await client.post("/Patient", json=PATIENT)).json()["id"]
    r = await client.delete(f"/Patient/{pid}")
    assert r.status_code == 204
    assert r.headers["etag"] == 'W/"2"'
    gone = await client.get(f"/Patient/{pid}")
    assert gone.status_code == 410
    assert gone.json()["issue"][0]["code"] == "deleted"
    assert (await client.get(f"/Patient/{pid}/_history/1")).status_code == 200
    assert (await client.get(f"/Patient/{pid}/_history/2")).status_code == 410
    hist = (await client.get(f"/Patient/{pid}/_history")).json()
    assert [e["request"]["method"] for e in hist["entry"]] == ["DELETE", "POST"]
    assert "resource" not in hist["entry"][0]


async def test_delete_of_deleted_or_absent_resource_succeeds_without_new_version(client: httpx.AsyncClient) -> None:
    pid = (await client.post("/Patient", json=PATIENT)).json()["id"]
    assert (await client.delete(f"/Patient/{pid}")).status_code == 204
    again = await client.delete(f"/Patient/{pid}")
    assert again.status_code == 200
    assert again.json()["issue"][0]["severity"] == "information"
    absent = await client.delete("/Patient/never-existed")
    assert absent.status_code == 200
    hist = (await client.get(f"/Patient/{pid}/_history")).json()
    assert len(hist["entry"]) == 2


async def test_update_after_delete_recreates_with_next_version(client: httpx.AsyncClient) -> None:
    pid = (await client.post("/Patient", json=PATIENT)).json()["id"]
    await client.delete(f"/Patient/{pid}")
    r = await client.put(f"/Patient/{pid}", json={**PATIENT, "id": pid})
    assert r.status_code == 201
    assert r.json()["meta"]["versionId"] == "3"


async def test_vread_of_unknown_version_is_404(client: httpx.AsyncClient) -> None:
    pid = (await client.post("/Patient", json=PATIENT)).json()["id"]
    assert (await client.get(f"/Patient/{pid}/_history/9")).status_code == 404
    assert (await client.get(f"/Patient/{pid}/_history/abc")).status_code == 404


async def test_every_r4_type_is_accepted_including_types_absent_from_r4b(client: httpx.AsyncClient) -> None:
    # EffectEvidenceSynthesis exists in R4 but not in R4B: validated by the R4 JSON schema.
    ees = {
        "resourceType": "EffectEvidenceSynthesis",
        "status": "draft",
        "population": {"reference": "Group/1"},
        "exposure": {"reference": "EvidenceVariable/1"},
        "exposureAlternative": {"reference": "EvidenceVariable/2"},
        "outcome": {"reference": "EvidenceVariable/3"},
    }
    r = await client.post("/EffectEvidenceSynthesis", json=ees)
    assert r.status_code == 201, r.text
    for type_ in ("CareTeam", "CarePlan", "ServiceRequest", "Task", "Consent", "Provenance"):
        r = await client.get(f"/{type_}/nope")
        assert r.status_code == 404 and "not known" in r.json()["issue"][0]["diagnostics"]
