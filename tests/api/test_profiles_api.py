"""French profiles through the API: enforcement on write, $validate, terminology, conformance reads."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import anyio
import httpx

PATHWAY = Path(__file__).parents[2] / "examples" / "pathway"
INS = "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-patient-ins"
COORD = "https://fhir.coordination-sante.fr"


def _example(name: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads((PATHWAY / name).read_text())
    return result


def _bad_nir(patient: dict[str, Any]) -> dict[str, Any]:
    bad = copy.deepcopy(patient)
    value = bad["identifier"][0]["value"]
    bad["identifier"][0]["value"] = value[:-2] + ("00" if value[-2:] != "00" else "01")
    return bad


async def test_resource_claiming_a_profile_is_validated_on_write(client: httpx.AsyncClient) -> None:
    patient = _example("Patient-patient-durand.json")
    r = await client.put(f"/Patient/{patient['id']}", json=patient)
    assert r.status_code == 201, r.text
    r = await client.put(f"/Patient/{patient['id']}", json=_bad_nir(patient))
    assert r.status_code == 422
    issues = r.json()["issue"]
    assert any(
        "key" in i["diagnostics"].lower() and "Patient.identifier[0]" in " ".join(i.get("expression", []))
        for i in issues
    ), issues
    assert (await client.get(f"/Patient/{patient['id']}")).json()["meta"]["versionId"] == "1"


async def test_required_profiles_apply_without_a_claim(client_factory: Any) -> None:
    async with client_factory(required_profiles=f"Patient={INS}") as client:
        r = await client.post("/Patient", json={"resourceType": "Patient", "name": [{"family": "Sans INS"}]})
        assert r.status_code == 422
        assert r.json()["resourceType"] == "OperationOutcome"
        r = await client.post(
            "/Observation", json={"resourceType": "Observation", "status": "final", "code": {"text": "x"}}
        )
        assert r.status_code == 201


async def test_unknown_profile_is_a_warning_or_an_error_per_configuration(client_factory: Any) -> None:
    body = {"resourceType": "Patient", "meta": {"profile": ["https://example.org/unknown"]}}
    async with client_factory() as client:
        assert (await client.post("/Patient", json=body)).status_code == 201
    async with client_factory(unknown_profile="error") as client:
        r = await client.post("/Patient", json=body)
        assert r.status_code == 422
        assert "https://example.org/unknown" in json.dumps(r.json())


async def test_validate_operation_answers_200_with_the_verdict(client: httpx.AsyncClient) -> None:
    patient = _example("Patient-patient-durand.json")
    r = await client.post("/Patient/$validate", json=patient)
    assert r.status_code == 200
    assert all(i["severity"] not in ("error", "fatal") for i in r.json()["issue"])
    r = await client.post("/Patient/$validate", json=_bad_nir(patient))
    assert r.status_code == 200
    assert any(i["severity"] == "error" for i in r.json()["issue"])
    params = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "resource", "resource": {"resourceType": "Patient", "name": [{"family": "x"}]}},
            {"name": "profile", "valueUri": INS},
        ],
    }
    r = await client.post("/Patient/$validate", json=params)
    assert r.status_code == 200 and any(i["severity"] == "error" for i in r.json()["issue"])


async def test_validate_instance_and_delete_mode(client: httpx.AsyncClient) -> None:
    pid = (await client.post("/Patient", json={"resourceType": "Patient"})).json()["id"]
    r = await client.get(f"/Patient/{pid}/$validate")
    assert r.status_code == 200 and all(i["severity"] in ("information", "warning") for i in r.json()["issue"])
    r = await client.get(f"/Patient/{pid}/$validate", params={"mode": "delete"})
    assert r.status_code == 200
    assert (await client.get("/Patient/nobody/$validate")).status_code == 404
    assert (await client.get(f"/Patient/{pid}/$validate", params={"mode": "bogus"})).status_code == 400
    assert (await client.post("/Patient/$nonsense", json={})).status_code == 404


async def test_terminology_operations(client: httpx.AsyncClient) -> None:
    vs = f"{COORD}/ValueSet/coord-careplan-thematic"
    cs = f"{COORD}/CodeSystem/coord-careplan-thematic"
    r = await client.get("/ValueSet/$expand", params={"url": vs, "filter": "pallia"})
    assert r.status_code == 200, r.text
    codes = [c["code"] for c in r.json()["expansion"]["contains"]]
    assert codes == ["soins-palliatifs"]
    r = await client.get("/ValueSet/$validate-code", params={"url": vs, "system": cs, "code": "oncologie"})
    assert r.json()["parameter"][0] == {"name": "result", "valueBoolean": True}
    r = await client.get("/ValueSet/$validate-code", params={"url": vs, "system": cs, "code": "nope"})
    assert r.json()["parameter"][0] == {"name": "result", "valueBoolean": False}
    r = await client.get("/CodeSystem/$lookup", params={"system": cs, "code": "oncologie"})
    assert r.status_code == 200 and any(p["name"] == "display" for p in r.json()["parameter"])
    assert (await client.get("/CodeSystem/$lookup", params={"system": "urn:none", "code": "x"})).status_code == 404
    assert (await client.get("/ValueSet/$expand")).status_code == 400


async def test_concept_map_posted_at_run_time_is_used_by_translate(client: httpx.AsyncClient) -> None:
    cm = {
        "resourceType": "ConceptMap",
        "url": "https://example.org/cm/civilite",
        "status": "active",
        "group": [
            {
                "source": "urn:src",
                "target": "urn:tgt",
                "element": [{"code": "M", "target": [{"code": "MR", "equivalence": "equivalent"}]}],
            }
        ],
    }
    assert (await client.post("/ConceptMap", json=cm)).status_code == 201
    r = await client.get(
        "/ConceptMap/$translate", params={"url": "https://example.org/cm/civilite", "system": "urn:src", "code": "M"}
    )
    assert r.status_code == 200, r.text
    result = {p["name"]: p for p in r.json()["parameter"]}
    assert result["result"]["valueBoolean"] is True


async def test_conformance_resources_are_stored_readable_and_searchable(client_factory: Any) -> None:
    async with client_factory(load_profiles=True) as client:
        r = await client.get("/StructureDefinition", params={"url": f"{COORD}/StructureDefinition/coord-careplan"})
        assert r.status_code == 200
        assert [e["resource"]["id"] for e in r.json()["entry"]] == ["coord-careplan"]
        assert (await client.get("/ImplementationGuide/coordination")).status_code == 200
        cs = (await client.get("/metadata")).json()
        careplan = next(x for x in cs["rest"][0]["resource"] if x["type"] == "CarePlan")
        assert f"{COORD}/StructureDefinition/coord-careplan" in careplan["supportedProfile"]
        assert cs["implementationGuide"] == [f"{COORD}/ImplementationGuide/coordination"]
        assert {"name": "validate", "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate"} in cs[
            "rest"
        ][0]["operation"]


async def test_example_pathway_loads_and_validates(client_factory: Any) -> None:
    from fhir_server.interactions.load import read_folder

    async with client_factory() as client:
        resources = read_folder(PATHWAY)
        for resource in resources:
            r = await client.put(f"/{resource['resourceType']}/{resource['id']}", json=resource)
            assert r.status_code == 201, (resource["id"], r.text)
        careplan = (await client.get("/CarePlan/careplan-durand-ppcs")).json()
        assert careplan["meta"]["profile"] == [f"{COORD}/StructureDefinition/coord-careplan"]
        r = await client.get("/Patient/patient-durand/CarePlan")
        assert [e["resource"]["id"] for e in r.json()["entry"]] == ["careplan-durand-ppcs"]


async def test_deleted_or_moved_value_sets_leave_the_terminology_engine(client: httpx.AsyncClient) -> None:
    def vs(url: str) -> dict[str, Any]:
        return {"resourceType": "ValueSet", "id": "gone-soon", "url": url, "status": "active",
                "compose": {"include": [{"system": "http://example.org/cs", "concept": [{"code": "a"}]}]}}

    first, second = "http://example.org/fhir/ValueSet/first", "http://example.org/fhir/ValueSet/second"
    assert (await client.put("/ValueSet/gone-soon", json=vs(first))).status_code == 201
    assert (await client.get("/ValueSet/$expand", params={"url": first})).status_code == 200
    # a PUT that changes the url: the old url is no longer known
    assert (await client.put("/ValueSet/gone-soon", json=vs(second))).status_code == 200
    assert (await client.get("/ValueSet/$expand", params={"url": first})).status_code == 404
    assert (await client.get("/ValueSet/$expand", params={"url": second})).status_code == 200
    assert (await client.delete("/ValueSet/gone-soon")).status_code in (200, 204)
    assert (await client.get("/ValueSet/$expand", params={"url": second})).status_code == 404


async def test_deleting_a_copy_of_an_r4_value_set_brings_the_r4_one_back(client: httpx.AsyncClient) -> None:
    url = "http://hl7.org/fhir/ValueSet/administrative-gender"
    mine = {"resourceType": "ValueSet", "id": "my-gender", "url": url, "version": "4.0.1", "status": "active",
            "compose": {"include": [{"system": "http://hl7.org/fhir/administrative-gender",
                                     "concept": [{"code": "female"}]}]}}
    assert (await client.put("/ValueSet/my-gender", json=mine)).status_code == 201
    codes = lambda r: {c["code"] for c in r.json()["expansion"]["contains"]}  # noqa: E731
    assert codes(await client.get("/ValueSet/$expand", params={"url": url})) == {"female"}
    assert (await client.delete("/ValueSet/my-gender")).status_code in (200, 204)
    assert codes(await client.get("/ValueSet/$expand", params={"url": url})) == {"female", "male", "other", "unknown"}


async def test_unknown_profile_warning_reaches_the_client(client: httpx.AsyncClient, caplog: Any) -> None:
    body = {"resourceType": "Patient", "meta": {"profile": ["https://example.org/unknown"]}}
    with caplog.at_level("WARNING", logger="fhir_server"):
        r = await client.post("/Patient", json=body)
    assert r.status_code == 201
    assert r.headers["warning"].startswith('299 fhir-server "Unknown profile https://example.org/unknown')
    assert any("https://example.org/unknown" in rec.getMessage() for rec in caplog.records)
    r = await client.post("/Patient", json=body, headers={"Prefer": "return=OperationOutcome"})
    assert r.status_code == 201
    issues = r.json()["issue"]
    assert [i["severity"] for i in issues] == ["information", "warning"]
    assert "https://example.org/unknown" in issues[1]["diagnostics"]
    assert "warning" not in r.headers
    # Nothing to warn about: no header.
    r = await client.post("/Patient", json={"resourceType": "Patient"})
    assert "warning" not in r.headers


async def test_cds_birthplace_is_searchable(client_factory: Any) -> None:
    birth = "http://hl7.org/fhir/StructureDefinition/patient-birthPlace"
    async with client_factory(load_profiles=True) as client:
        for pid, city in (("born-lyon", "Lyon"), ("born-brest", "Brest")):
            body = {"resourceType": "Patient", "id": pid,
                    "extension": [{"url": birth, "valueAddress": {"city": city, "country": "FRA"}}]}
            assert (await client.put(f"/Patient/{pid}", json=body)).status_code == 201
        # The shipped parameters are reindexed at start: wait for that job to finish.
        for _ in range(100):
            r = await client.get("/Patient", params={"birthplace": "lyon"})
            if r.status_code == 200:
                break
            await anyio.sleep(0.1)
        assert r.status_code == 200, r.text
        assert [e["resource"]["id"] for e in r.json().get("entry", [])] == ["born-lyon"]
