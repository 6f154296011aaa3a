"""Custom SearchParameters: refused while pending, indexed by a resumable $reindex job, then live."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine

from fhir_server.errors import FhirError
from fhir_server.search.registry import registry
from fhir_server.search.reindex import job_status, register_search_parameter, reindex_step, start_reindex

EYE = "http://example.org/fhir/StructureDefinition/eye-colour"
SP = {
    "resourceType": "SearchParameter", "id": "eye-colour", "url": "http://example.org/fhir/SearchParameter/eye",
    "name": "eye-colour", "status": "active", "code": "eye-colour", "base": ["Patient"], "type": "token",
    "expression": f"Patient.extension.where(url='{EYE}').value",
    "description": "Eye colour",
}


def _patient(i: int, colour: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": f"eyes{i}", "extension": [{"url": EYE, "valueCode": colour}]}


def _state(progress: dict[str, Any], name: str) -> Any:
    return next(p for p in progress["parameter"] if p["name"] == name)


def test_custom_parameter_lifecycle(engine: Engine, loader: Any, find: Any) -> None:
    loader.load([_patient(i, "blue" if i % 2 else "green") for i in range(7)])
    with engine.begin() as conn:
        assert register_search_parameter(conn, SP) == ["Patient"]
    with pytest.raises(FhirError) as err:
        find("Patient", "eye-colour=blue")
    assert err.value.status == 400 and "not indexed yet" in str(err.value)

    loader.load([_patient(100, "blue")])  # written after registration: indexed at once
    with engine.begin() as conn:
        job = start_reindex(conn, [("Patient", "eye-colour")])
    with engine.begin() as conn:
        first = reindex_step(conn, job, batch=3)
    assert _state(first, "status")["valueCode"] == "running" and _state(first, "processed")["valueInteger"] == 3
    # a "restart": the next step continues from the committed position
    with engine.begin() as conn:
        while _state(progress := reindex_step(conn, job, batch=3), "status")["valueCode"] == "running":
            pass
    assert _state(progress, "processed")["valueInteger"] == _state(progress, "total")["valueInteger"]
    assert _state(progress, "parameter")["part"][2]["valueCode"] == "active"
    assert registry().get("Patient", "eye-colour").status == "active"  # type: ignore[union-attr]
    assert find("Patient", "eye-colour=blue") == ["eyes1", "eyes100", "eyes3", "eyes5"]
    assert find("Patient", "eye-colour=brown") == []
    with engine.connect() as conn:
        assert _state(job_status(conn, job), "status")["valueCode"] == "done"


@pytest.mark.parametrize(
    "change",
    [{"code": "_bad"}, {"type": "special"}, {"base": ["NotAType"]}, {"expression": None}, {"url": None}],
)
def test_invalid_custom_parameters_are_refused(engine: Engine, change: dict[str, Any]) -> None:
    with engine.begin() as conn, pytest.raises(FhirError):
        register_search_parameter(conn, {**SP, **change})


def _triple(third: str, definition: str) -> dict[str, Any]:
    return {
        "resourceType": "SearchParameter", "id": "gender-birth-flag", "name": "gender-birth-flag",
        "url": "http://example.org/fhir/SearchParameter/gender-birth-flag", "status": "active",
        "code": "gender-birth-flag", "base": ["Patient"], "type": "composite", "expression": "Patient",
        "description": "Gender, birth date and one flag, together",
        "component": [
            {"definition": "http://hl7.org/fhir/SearchParameter/individual-gender", "expression": "gender"},
            {"definition": "http://hl7.org/fhir/SearchParameter/individual-birthdate", "expression": "birthDate"},
            {"definition": definition, "expression": third},
        ],
    }


def _reindex_all(engine: Engine, code: str) -> None:
    with engine.begin() as conn:
        job = start_reindex(conn, [("Patient", code)])
    with engine.begin() as conn:
        while _state(reindex_step(conn, job, batch=50), "status")["valueCode"] == "running":
            pass


def test_reindexing_a_changed_composite_replaces_its_third_component_rows(engine: Engine, loader: Any,
                                                                           find: Any) -> None:
    loader.load([{"resourceType": "Patient", "id": "flagged", "gender": "female", "birthDate": "1961-02-03",
                  "active": True, "deceasedBoolean": False}])
    with engine.begin() as conn:
        register_search_parameter(conn, _triple("active", "http://hl7.org/fhir/SearchParameter/Patient-active"))
    _reindex_all(engine, "gender-birth-flag")
    assert find("Patient", "gender-birth-flag=female$1961-02-03$true") == ["flagged"]
    with engine.begin() as conn:  # the third component now reads deceased, which is false
        register_search_parameter(conn, _triple("deceased", "http://hl7.org/fhir/SearchParameter/Patient-deceased"))
    _reindex_all(engine, "gender-birth-flag")
    assert find("Patient", "gender-birth-flag=female$1961-02-03$false") == ["flagged"]
    assert find("Patient", "gender-birth-flag=female$1961-02-03$true") == []
