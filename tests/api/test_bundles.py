"""Batch and transaction Bundles: all-or-nothing, processing order, reference rewriting."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import orjson

from tests.api.test_crud import PATIENT


def _bundle(kind: str, *entries: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def _post(resource: dict[str, Any], full_url: str | None = None, **request: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "resource": resource,
        "request": {"method": "POST", "url": resource["resourceType"], **request},
    }
    if full_url:
        entry["fullUrl"] = full_url
    return entry


async def _count(client: httpx.AsyncClient, type_: str) -> int:
    return len((await client.get(f"/{type_}/_history", params={"_count": "500"})).json().get("entry", []))


async def test_transaction_creates_and_rewrites_urn_uuid_references(client: httpx.AsyncClient) -> None:
    patient_url = "urn:uuid:8c8b9c2e-1111-4a5b-9c3d-000000000001"
    careplan = {
        "resourceType": "CarePlan",
        "status": "active",
        "intent": "plan",
        "subject": {"reference": patient_url},
        "text": {
            "status": "generated",
            "div": f'<div xmlns="http://www.w3.org/1999/xhtml"><a href="{patient_url}">p</a></div>',
        },
    }
    r = await client.post("", json=_bundle("transaction", _post(careplan), _post(PATIENT, patient_url)))
    assert r.status_code == 200, r.text
    bundle = r.json()
    assert bundle["type"] == "transaction-response"
    assert [e["response"]["status"] for e in bundle["entry"]] == ["201 Created", "201 Created"]
    pid = bundle["entry"][1]["resource"]["id"]
    cp_location = bundle["entry"][0]["response"]["location"]
    assert cp_location.startswith("CarePlan/") and cp_location.endswith("/_history/1")
    stored = (await client.get("/" + cp_location.split("/_history")[0])).json()
    assert stored["subject"]["reference"] == f"Patient/{pid}"
    assert f'href="Patient/{pid}"' in stored["text"]["div"]


async def test_transaction_is_all_or_nothing(client: httpx.AsyncClient) -> None:
    bad = {"resourceType": "Observation", "status": "not-a-status-code-really", "code": 5}
    r = await client.post("", json=_bundle("transaction", _post(PATIENT), _post(bad)))
    assert r.status_code == 400
    outcome = r.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert "Bundle.entry[1]" in outcome["issue"][0]["diagnostics"]
    assert await _count(client, "Patient") == 0


async def test_transaction_processing_order_delete_post_put_patch_get(client: httpx.AsyncClient) -> None:
    old = (await client.post("/Patient", json=PATIENT)).json()["id"]
    keep = (await client.post("/Patient", json=PATIENT)).json()["id"]
    json_patch = base64.b64encode(orjson.dumps([{"op": "add", "path": "/active", "value": True}])).decode()
    entries = [
        {"request": {"method": "GET", "url": f"Patient/{keep}"}},
        {
            "resource": {"resourceType": "Binary", "contentType": "application/json-patch+json", "data": json_patch},
            "request": {"method": "PATCH", "url": f"Patient/{keep}"},
        },
        {"resource": {**PATIENT, "id": "put-1"}, "request": {"method": "PUT", "url": "Patient/put-1"}},
        _post(PATIENT),
        {"request": {"method": "DELETE", "url": f"Patient/{old}"}},
    ]
    r = await client.post("", json=_bundle("transaction", *entries))
    assert r.status_code == 200, r.text
    statuses = [e["response"]["status"] for e in r.json()["entry"]]
    assert statuses == ["200 OK", "200 OK", "201 Created", "201 Created", "204 No Content"]
    # The GET ran after the PATCH: it sees the new version.
    assert r.json()["entry"][0]["resource"]["active"] is True
    assert (await client.get(f"/Patient/{old}")).status_code == 410


async def test_transaction_conditional_create_and_conditional_reference(client: httpx.AsyncClient) -> None:
    existing = (await client.post("/Patient", json=PATIENT)).json()["id"]
    ident = f"{PATIENT['identifier'][0]['system']}|{PATIENT['identifier'][0]['value']}"
    obs = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
        "subject": {"reference": f"Patient?identifier={ident}"},
    }
    patient_url = "urn:uuid:8c8b9c2e-1111-4a5b-9c3d-000000000002"
    obs2 = {**obs, "subject": {"reference": patient_url}}
    r = await client.post(
        "",
        json=_bundle(
            "transaction", _post(PATIENT, patient_url, ifNoneExist=f"identifier={ident}"), _post(obs), _post(obs2)
        ),
    )
    assert r.status_code == 200, r.text
    entries = r.json()["entry"]
    assert entries[0]["response"]["status"] == "200 OK"
    for e in entries[1:]:
        assert e["resource"]["subject"]["reference"] == f"Patient/{existing}"
    bad = {**obs, "subject": {"reference": "Patient?identifier=urn:none|0"}}
    r = await client.post("", json=_bundle("transaction", _post(bad)))
    assert r.status_code == 412


async def test_transaction_refuses_two_entries_for_one_resource(client: httpx.AsyncClient) -> None:
    body = {**PATIENT, "id": "dup"}
    put = {"resource": body, "request": {"method": "PUT", "url": "Patient/dup"}}
    r = await client.post("", json=_bundle("transaction", put, put))
    assert r.status_code == 400


async def test_transaction_if_match_conflict_fails_whole_bundle(client: httpx.AsyncClient) -> None:
    pid = (await client.post("/Patient", json=PATIENT)).json()["id"]
    put = {
        "resource": {**PATIENT, "id": pid},
        "request": {"method": "PUT", "url": f"Patient/{pid}", "ifMatch": 'W/"9"'},
    }
    r = await client.post("", json=_bundle("transaction", _post(PATIENT), put))
    assert r.status_code == 412
    assert await _count(client, "Patient") == 1


async def test_batch_reports_each_entry_on_its_own(client: httpx.AsyncClient) -> None:
    entries = [
        _post(PATIENT),
        {"request": {"method": "GET", "url": "Patient/missing"}},
        _post({"resourceType": "Patient", "birthDate": "bad"}),
        {"request": {"method": "GET", "url": "Patient?gender=female"}},
    ]
    r = await client.post("", json=_bundle("batch", *entries))
    assert r.status_code == 200, r.text
    out = r.json()["entry"]
    assert r.json()["type"] == "batch-response"
    assert [e["response"]["status"] for e in out] == ["201 Created", "404 Not Found", "400 Bad Request", "200 OK"]
    assert out[1]["response"]["outcome"]["resourceType"] == "OperationOutcome"
    assert out[3]["resource"]["type"] == "searchset"
    assert await _count(client, "Patient") == 1


async def test_malformed_bundles_are_400_and_limits_apply(client_factory: Any) -> None:
    async with client_factory(max_bundle_entries=2) as client:
        assert (await client.post("", json={"resourceType": "Patient"})).status_code == 400
        assert (await client.post("", json=_bundle("collection"))).status_code == 400
        assert (
            await client.post("", json=_bundle("transaction", {"request": {"method": "FOO", "url": "Patient"}}))
        ).status_code == 400
        assert (
            await client.post(
                "",
                json=_bundle(
                    "transaction", {"request": {"method": "POST", "url": "Nope"}, "resource": {"resourceType": "Nope"}}
                ),
            )
        ).status_code == 400
        assert (
            await client.post("", json=_bundle("transaction", _post(PATIENT), _post(PATIENT), _post(PATIENT)))
        ).status_code == 413
        r = await client.post("", json=_bundle("transaction"))
        assert r.status_code == 200 and r.json()["type"] == "transaction-response"


async def test_prefer_minimal_omits_resources(client: httpx.AsyncClient) -> None:
    r = await client.post("", json=_bundle("transaction", _post(PATIENT)), headers={"Prefer": "return=minimal"})
    entry = r.json()["entry"][0]
    assert "resource" not in entry and entry["response"]["location"].startswith("Patient/")


async def test_metadata_lists_transaction_and_batch(client: httpx.AsyncClient) -> None:
    codes = [i["code"] for i in (await client.get("/metadata")).json()["rest"][0]["interaction"]]
    assert "transaction" in codes and "batch" in codes


async def test_batch_entries_go_through_the_route_table(client: httpx.AsyncClient) -> None:
    """Every interaction and operation of the API works in a batch entry, with its headers."""
    r = await client.put("/Patient/rt1", json={**PATIENT, "id": "rt1"})
    assert r.status_code == 201
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
           "subject": {"reference": "Patient/rt1"}}
    await client.post("/Observation", json=obs)
    entries = [
        {"request": {"method": "GET", "url": "Patient/rt1/Observation"}},  # compartment search
        {"request": {"method": "GET", "url": "?_type=Patient&_id=rt1"}},  # system search
        {"request": {"method": "GET", "url": "Patient/rt1?_summary=true"}},  # _summary on a read
        {"resource": {"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": PATIENT}]},
         "request": {"method": "POST", "url": "Patient/$validate"}},  # an operation
        {"request": {"method": "GET", "url": "Patient/rt1", "ifNoneMatch": 'W/"1"'}},  # conditional read
        {"resource": {**PATIENT, "id": "rt1"}, "request": {"method": "PUT", "url": "Patient/rt1",
                                                         "ifMatch": 'W/"9"'}},  # If-Match conflict
        {"request": {"method": "GET", "url": "Nope/1"}},
        {"request": {"method": "DELETE", "url": "Patient/absent"}},
    ]
    r = await client.post("", json=_bundle("batch", *entries))
    assert r.status_code == 200, r.text
    out = r.json()["entry"]
    assert [e["response"]["status"].split()[0] for e in out] == ["200", "200", "200", "200", "304", "412", "404",
                                                                 out[7]["response"]["status"].split()[0]]
    assert out[0]["resource"]["entry"][0]["resource"]["resourceType"] == "Observation"
    assert out[1]["resource"]["entry"][0]["resource"]["id"] == "rt1"
    assert out[2]["resource"]["meta"]["tag"][0]["code"] == "SUBSETTED"
    assert out[3]["resource"]["resourceType"] == "OperationOutcome"
    assert out[5]["response"]["outcome"]["resourceType"] == "OperationOutcome"
    # the same answer as the plain HTTP request
    plain = await client.delete("/Patient/absent")
    assert out[7]["response"]["status"].startswith(str(plain.status_code))


async def test_delete_of_an_absent_resource_answers_alike_over_rest_batch_and_transaction(
    client: httpx.AsyncClient,
) -> None:
    rest = await client.delete("/Patient/never-existed")
    assert rest.status_code == 200
    rest_issue = rest.json()["issue"][0]
    assert rest_issue["severity"] == "information"
    for kind in ("batch", "transaction"):
        entries = [{"request": {"method": "DELETE", "url": "Patient/never-existed"}},
                   {"request": {"method": "DELETE", "url": "Patient?identifier=urn:x|none"}}]
        r = await client.post("", json=_bundle(kind, *entries))
        assert r.status_code == 200, r.text
        for entry in r.json()["entry"]:
            assert entry["response"]["status"] == "200 OK", (kind, entry)
            assert entry["response"]["outcome"]["issue"][0]["severity"] == "information"
        first = r.json()["entry"][0]["response"]["outcome"]["issue"][0]
        assert first["diagnostics"] == rest_issue["diagnostics"]
    # Something to delete: 204 on both paths.
    pid = (await client.post("/Patient", json=PATIENT)).json()["id"]
    r = await client.post("", json=_bundle("batch", {"request": {"method": "DELETE", "url": f"Patient/{pid}"}}))
    assert r.json()["entry"][0]["response"]["status"] == "204 No Content"
