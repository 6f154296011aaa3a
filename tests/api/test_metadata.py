"""/metadata: includes, per-type operations, and the smaller views (mode=terse, _summary, _elements)."""

from __future__ import annotations

from typing import Any

import httpx


def _resource(cs: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(r for r in cs["rest"][0]["resource"] if r["type"] == type_)


async def test_metadata_lists_includes_revincludes_and_type_operations(client: httpx.AsyncClient) -> None:
    cs = (await client.get("/metadata")).json()
    careplan = _resource(cs, "CarePlan")
    assert "CarePlan:care-team" in careplan["searchInclude"] and "*" in careplan["searchInclude"]
    patient = _resource(cs, "Patient")
    assert "CarePlan:subject" in patient["searchRevInclude"] and "CareTeam:patient" in patient["searchRevInclude"]
    assert "CarePlan:subject" not in _resource(cs, "Practitioner")["searchRevInclude"]
    ops = {o["name"]: o["definition"] for o in _resource(cs, "ValueSet")["operation"]}
    assert ops["expand"] == "http://hl7.org/fhir/OperationDefinition/ValueSet-expand" and "validate" in ops
    cs_ops = {o["name"]: o["definition"] for o in _resource(cs, "CodeSystem")["operation"]}
    assert cs_ops["validate-code"].endswith("CodeSystem-validate-code")
    assert {o["name"] for o in cs["rest"][0]["operation"]} == {"reindex", "validate"}
    assert "application/merge-patch+json" in cs["patchFormat"]


async def test_terse_summary_and_elements_shrink_the_statement(client: httpx.AsyncClient) -> None:
    full = await client.get("/metadata")
    terse = await client.get("/metadata", params={"mode": "terse"})
    summary = await client.get("/metadata", params={"_summary": "true"})
    elements = await client.get("/metadata", params={"_elements": "fhirVersion,format"})
    assert all(r.status_code == 200 for r in (terse, summary, elements))
    assert len(terse.content) < len(full.content) * 0.8
    assert len(summary.content) < len(full.content) / 10
    assert len(elements.content) < 2000
    assert "documentation" not in terse.text and "searchParam" in terse.text
    assert terse.json()["implementation"]["description"]  # 1..1: kept
    patient = _resource(summary.json(), "Patient")
    assert "searchParam" not in patient and "interaction" not in patient and patient["type"] == "Patient"
    assert summary.json()["meta"]["tag"][0]["code"] == "SUBSETTED"
    assert set(elements.json()) <= {"resourceType", "meta", "fhirVersion", "format", "status", "date", "kind"}
    assert (await client.get("/metadata", params={"mode": "terse"})).content == terse.content  # cached view


async def test_metadata_rejects_unknown_views(client: httpx.AsyncClient) -> None:
    for params in ({"mode": "brief"}, {"_summary": "count"}, {"_summary": "nope"}):
        r = await client.get("/metadata", params=params)
        assert r.status_code == 400 and r.json()["resourceType"] == "OperationOutcome"
