"""Reference search on both databases: Type/id, bare id, :Type, absolute URLs, :identifier, :missing,
and chains and _has through references."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_server.errors import FhirError
from fhir_server.search.access import EVERYTHING

CASES = [
    ("Observation", "subject=Patient/p1", ["o1", "o3"]),
    ("Observation", "subject=Patient/nobody", []),
    ("Observation", "subject=p2", ["o2"]),
    ("Observation", "subject:Patient=p2", ["o2"]),
    ("Observation", "subject:Group=p2", []),
    ("Observation", "patient=p1,p2", ["o1", "o2", "o3"]),
    ("Observation", "subject=http://other.example.org/fhir/Patient/p3", ["o4"]),
    ("Observation", "subject=http://other.example.org/fhir/Patient/p9", []),
    ("Observation", "subject=http://testserver/fhir/Patient/p1", ["o1", "o3"]),  # our own base
    ("Observation", "performer=Practitioner/dr1", ["o3"]),
    ("Observation", "performer:missing=true", ["o1", "o2", "o4"]),
    ("Observation", "performer:missing=false", ["o3"]),
    ("ServiceRequest", "based-on:identifier=http://example.org/plans|PLAN-9", ["sr1"]),
    ("ServiceRequest", "based-on:identifier=http://example.org/plans|PLAN-1", []),
    # forward chains, several levels
    ("Observation", "subject:Patient.name=dupont", ["o1", "o3"]),
    ("Observation", "subject:Patient.name=durand", []),
    ("Observation", "patient.gender=male", ["o2"]),
    ("Observation", "patient.general-practitioner.name=durand", ["o1", "o3"]),
    ("Observation", "patient.general-practitioner.name=martin", []),
    ("CarePlan", "care-team.participant:Practitioner.identifier=810000000001", ["cp1"]),
    ("Observation", "subject:Patient.organization.name=clinique", ["o2"]),
    # reverse chains, nested
    ("Patient", "_has:Observation:patient:code=8480-6", ["p1", "p2"]),
    ("Patient", "_has:Observation:patient:status=preliminary", ["p2"]),
    ("Patient", "_has:Observation:patient:code=0000-0", []),
    ("Practitioner", "_has:CareTeam:participant:_has:CarePlan:care-team:status=active", ["dr1"]),
    ("Practitioner", "_has:CareTeam:participant:_has:CarePlan:care-team:status=draft", []),
    ("Patient", "_has:Observation:subject:code=8480-6&_has:Condition:subject:code=I10", ["p2"]),
]


@pytest.mark.parametrize(("res_type", "qs", "expected"), CASES)
def test_reference_search(find: Any, res_type: str, qs: str, expected: list[str]) -> None:
    assert find(res_type, qs, base_url="http://testserver/fhir") == expected


@pytest.mark.parametrize("qs", ["subject=Patient/p1/x/y", "gender.name=x", "_has:Observation:code:code=1"])
def test_malformed_reference_or_chain_is_a_400(find: Any, qs: str) -> None:
    with pytest.raises(FhirError) as err:
        find("Observation" if not qs.startswith("gender") else "Patient", qs)
    assert err.value.status == 400


def test_contained_references_are_not_indexed(engine: Any, loader: Any, find: Any) -> None:
    obs = {"resourceType": "Observation", "id": "contained-ref", "status": "final", "code": {"text": "x"},
           "contained": [{"resourceType": "Patient", "id": "inner"}], "subject": {"reference": "#inner"}}
    loader.load([obs])
    assert find("Observation", "subject:missing=true&_id=contained-ref") == ["contained-ref"]
    assert find("Observation", "subject=inner") == []


def test_has_forgets_a_deleted_source(engine: Any, loader: Any, find: Any) -> None:
    loader.load([{"resourceType": "Patient", "id": "has-del"},
                  {"resourceType": "Observation", "id": "has-del-o", "status": "final",
                   "code": {"coding": [{"system": "http://loinc.org", "code": "has-del-1"}]},
                   "subject": {"reference": "Patient/has-del"}}])
    assert find("Patient", "_has:Observation:subject:code=has-del-1") == ["has-del"]
    assert find("Patient", "_id=has-del&_has:Observation:subject:code=has-del-1") == ["has-del"]
    with engine.begin() as conn:
        loader.delete(conn, "Observation", "has-del-o")
    assert find("Patient", "_has:Observation:subject:code=has-del-1") == []
    assert find("Patient", "_id=has-del&_has:Observation:subject:code=has-del-1") == []
    assert find("Patient", "_id=has-del&_has:Observation:subject:_lastUpdated=gt2000-01-01") == []


@pytest.fixture(scope="module")
def listed(loader: Any, loaded: Any) -> None:
    loader.load([
        {"resourceType": "Patient", "id": "same-id"},
        {"resourceType": "Practitioner", "id": "same-id"},
        {"resourceType": "Patient", "id": "unlisted"},
        {"resourceType": "List", "id": "watch", "status": "current", "mode": "working",
         "entry": [{"item": {"reference": "Patient/same-id"}}, {"item": {"reference": "Practitioner/dr1"}}]},
        {"resourceType": "List", "id": "empty", "status": "current", "mode": "working"},
    ])


@pytest.mark.parametrize(("res_type", "qs", "expected"), [
    ("Patient", "_list=watch", ["same-id"]),
    ("Patient", "_list=empty", []),
    ("Patient", "_list=watch,empty&_id=unlisted", []),
    ("Practitioner", "_list=watch", ["dr1"]),
    # a system search matches the listed type and id together: Practitioner/same-id is not listed
    (None, "_list=watch", ["dr1", "same-id"]),
    ("Patient,Practitioner", "_list=watch&_id=same-id", ["same-id"]),
    (None, "_has:List:item:_id=watch&_id=same-id", ["same-id"]),
])
def test_list_finds_the_resources_a_list_names(listed: None, find: Any, res_type: str | None, qs: str,
                                                expected: list[str]) -> None:
    assert find(res_type, qs) == expected


def test_system_search_with_list_keeps_types_apart(listed: None, engine: Any) -> None:
    from urllib.parse import parse_qsl

    from fhir_server.search import search
    from fhir_server.search.parse import parse_query
    from fhir_server.search.registry import registry

    with engine.connect() as conn:
        result, _ = search(conn, parse_query(registry(), (), parse_qsl("_list=watch&_id=same-id")), EVERYTHING)
    assert [(m.type, m.id) for m in result.matches] == [("Patient", "same-id")]


def test_functional_lists_are_refused(find: Any) -> None:
    with pytest.raises(FhirError) as err:
        find("Patient", "_list=$current-problems")
    assert err.value.status == 400
