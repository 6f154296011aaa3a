"""Search through HTTP: type, POST _search, system and compartment routes, and /metadata."""

from __future__ import annotations

import httpx

from tests.api.test_crud import PATIENT


async def _setup(client: httpx.AsyncClient) -> str:
    pid = (await client.post("/Patient", json=PATIENT)).json()["id"]
    obs = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "weight"},
        "subject": {"reference": f"Patient/{pid}"},
    }
    await client.post("/Observation", json=obs)
    await client.post("/Observation", json={**obs, "subject": {"reference": "Patient/other"}})
    return pid


async def test_get_type_search_returns_searchset_with_absolute_links(client: httpx.AsyncClient) -> None:
    pid = await _setup(client)
    r = await client.get("/Patient", params={"family": "martin"})
    assert r.status_code == 200
    bundle = r.json()
    assert bundle["type"] == "searchset"
    assert [e["resource"]["id"] for e in bundle["entry"]] == [pid]
    assert bundle["entry"][0]["search"]["mode"] == "match"
    assert bundle["link"][0]["url"].startswith("http://testserver/fhir/Patient?")
    assert (await client.get("/Patient", params={"family": "dupont"})).json().get("entry") is None


async def test_post_search_with_form_body(client: httpx.AsyncClient) -> None:
    pid = await _setup(client)
    r = await client.post("/Patient/_search", data={"gender": "female"})
    assert r.status_code == 200
    assert [e["resource"]["id"] for e in r.json()["entry"]] == [pid]
    r = await client.post("/Patient/_search", content=b"{}", headers={"content-type": "application/json"})
    assert r.status_code == 415


async def test_system_search_and_compartment_search(client: httpx.AsyncClient) -> None:
    pid = await _setup(client)
    r = await client.get("", params={"_type": "Patient,Observation"})
    assert r.status_code == 200
    assert len(r.json()["entry"]) == 3
    r = await client.get(f"/Patient/{pid}/Observation")
    assert r.status_code == 200
    assert len(r.json()["entry"]) == 1


async def test_unknown_search_parameter_is_400_strict_and_reported_lenient(client: httpx.AsyncClient) -> None:
    r = await client.get("/Patient", params={"nonsense": "1"})
    assert r.status_code == 400 and r.json()["resourceType"] == "OperationOutcome"
    r = await client.get("/Patient", params={"nonsense": "1"}, headers={"Prefer": "handling=lenient"})
    assert r.status_code == 200


async def test_conditional_create_uses_the_search_engine(client: httpx.AsyncClient) -> None:
    await client.post("/Patient", json=PATIENT)
    r = await client.post("/Patient", json=PATIENT, headers={"If-None-Exist": "family=Martin&gender=female"})
    assert r.status_code == 200


async def test_metadata_lists_search_parameters_with_documentation(client: httpx.AsyncClient) -> None:
    cs = (await client.get("/metadata")).json()
    patient = next(x for x in cs["rest"][0]["resource"] if x["type"] == "Patient")
    assert {"search-type"} <= {i["code"] for i in patient["interaction"]}
    names = {p["name"]: p for p in patient["searchParam"]}
    assert names["identifier"]["type"] == "token" and names["identifier"]["documentation"]
    assert {"code": "search-system"} in cs["rest"][0]["interaction"]


async def test_wildcard_includes_follow_every_reference(client: httpx.AsyncClient) -> None:
    pid = await _setup(client)  # one Observation references the patient
    careplan = {
        "resourceType": "CarePlan",
        "status": "active",
        "intent": "plan",
        "subject": {"reference": f"Patient/{pid}"},
    }
    cp = (await client.post("/CarePlan", json=careplan)).json()["id"]
    r = await client.get("/Patient", params={"_id": pid, "_revinclude": "*"})
    assert r.status_code == 200
    included = {(e["resource"]["resourceType"], e["search"]["mode"]) for e in r.json()["entry"]}
    assert included == {("Patient", "match"), ("Observation", "include"), ("CarePlan", "include")}
    r = await client.get("/CarePlan", params={"_id": cp, "_include": "*"})
    assert [e["resource"]["id"] for e in r.json()["entry"] if e["search"]["mode"] == "include"] == [pid]
