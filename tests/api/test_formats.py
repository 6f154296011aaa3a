"""Content negotiation, _pretty, _summary, _elements and Prefer on writes."""

from __future__ import annotations

import httpx

from tests.api.test_crud import PATIENT


async def test_application_json_is_accepted_and_echoed(client: httpx.AsyncClient) -> None:
    r = await client.post("/Patient", json=PATIENT, headers={"Accept": "application/json"})
    assert r.status_code == 201
    assert r.headers["content-type"].startswith("application/json")


async def test_format_parameter_wins_over_accept(client: httpx.AsyncClient) -> None:
    pid = (await client.post("/Patient", json=PATIENT)).json()["id"]
    r = await client.get(f"/Patient/{pid}", params={"_format": "json"}, headers={"Accept": "application/fhir+xml"})
    assert r.status_code == 200
    r = await client.get(f"/Patient/{pid}", params={"_format": "application/fhir+json"})
    assert r.headers["content-type"].startswith("application/fhir+json")


async def test_xml_is_not_acceptable_406(client: httpx.AsyncClient) -> None:
    pid = (await client.post("/Patient", json=PATIENT)).json()["id"]
    r = await client.get(f"/Patient/{pid}", headers={"Accept": "application/fhir+xml"})
    assert r.status_code == 406
    assert r.json()["resourceType"] == "OperationOutcome"
    assert (await client.get(f"/Patient/{pid}", params={"_format": "xml"})).status_code == 406


async def test_xml_body_is_unsupported_media_type_415(client: httpx.AsyncClient) -> None:
    r = await client.post("/Patient", content=b"<Patient/>", headers={"content-type": "application/fhir+xml"})
    assert r.status_code == 415
    assert r.json()["resourceType"] == "OperationOutcome"


async def test_pretty_indents(client: httpx.AsyncClient) -> None:
    pid = (await client.post("/Patient", json=PATIENT)).json()["id"]
    r = await client.get(f"/Patient/{pid}", params={"_pretty": "true"})
    assert b'\n  "resourceType"' in r.content


async def test_summary_and_elements_on_read(client: httpx.AsyncClient) -> None:
    body = {
        **PATIENT,
        "text": {"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml">Claire</div>'},
        "maritalStatus": {"text": "single"},
    }
    pid = (await client.post("/Patient", json=body)).json()["id"]
    summary = (await client.get(f"/Patient/{pid}", params={"_summary": "true"})).json()
    assert "name" in summary and "maritalStatus" not in summary and "text" not in summary
    assert summary["meta"]["tag"][0]["code"] == "SUBSETTED"
    text = (await client.get(f"/Patient/{pid}", params={"_summary": "text"})).json()
    assert "text" in text and "name" not in text
    data = (await client.get(f"/Patient/{pid}", params={"_summary": "data"})).json()
    assert "text" not in data and "maritalStatus" in data
    elements = (await client.get(f"/Patient/{pid}", params={"_elements": "gender,birthDate"})).json()
    assert set(elements) == {"resourceType", "id", "meta", "gender", "birthDate"}
    assert (await client.get(f"/Patient/{pid}", params={"_summary": "bogus"})).status_code == 400


async def test_prefer_return_minimal_and_operation_outcome(client: httpx.AsyncClient) -> None:
    r = await client.post("/Patient", json=PATIENT, headers={"Prefer": "return=minimal"})
    assert r.status_code == 201 and r.content == b"" and "location" in r.headers
    r = await client.post("/Patient", json=PATIENT, headers={"Prefer": "return=OperationOutcome"})
    assert r.status_code == 201 and r.json()["resourceType"] == "OperationOutcome"
    r = await client.post("/Patient", json=PATIENT, headers={"Prefer": "return=representation"})
    assert r.json()["resourceType"] == "Patient"


async def test_metadata_is_a_capability_statement_listing_real_interactions(client: httpx.AsyncClient) -> None:
    r = await client.get("/metadata")
    assert r.status_code == 200
    cs = r.json()
    assert cs["resourceType"] == "CapabilityStatement" and cs["fhirVersion"] == "4.0.1"
    patient = next(x for x in cs["rest"][0]["resource"] if x["type"] == "Patient")
    codes = {i["code"] for i in patient["interaction"]}
    assert {"read", "vread", "update", "patch", "delete", "history-instance", "history-type", "create"} <= codes
    assert patient["conditionalCreate"] is True and patient["conditionalDelete"] == "single"
    assert {"code": "history-system"} in cs["rest"][0]["interaction"]
    assert len(cs["rest"][0]["resource"]) > 140


async def test_openapi_document_describes_every_fhir_route(client: httpx.AsyncClient) -> None:
    r = await client.get("http://testserver/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    read = doc["paths"]["/fhir/Patient/{id}"]["get"]
    assert read["tags"] == ["Patient"] and [p["name"] for p in read["parameters"]] == ["id"]
    assert "requestBody" in doc["paths"]["/fhir/Patient/{id}"]["put"]
    patch_types = doc["paths"]["/fhir/Patient/{id}"]["patch"]["requestBody"]["content"]
    assert {"application/json-patch+json", "application/merge-patch+json"} <= set(patch_types)
    assert {"get", "post"} <= set(doc["paths"]["/fhir/{type}/${op}"])
    type_param = next(p for p in doc["paths"]["/fhir/{type}/${op}"]["get"]["parameters"] if p["name"] == "type")
    assert "Patient" in type_param["schema"]["enum"]