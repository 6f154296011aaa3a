"""Tests for the JSON Patch and FHIRPath Patch engines.

https://hl7.org/fhir/R4/fhirpatch.html

The FHIRPath Patch oracle is HL7's own r4/patch/fhir-patch-tests.xml (FHIR/fhir-test-cases,
Apache-2.0), converted once to tests/data/fhir-patch-tests.json by
tests/data/fhir_patch_tests_to_json.py.
"""

from __future__ import annotations

import copy
import decimal
import pathlib
from typing import Any

import pytest

from fhir_server.errors import FhirError
from fhir_server.fhir.json import loads
from fhir_server.fhir.patch import apply_fhirpath_patch, apply_json_patch

ORACLE = loads((pathlib.Path(__file__).parents[1] / "data" / "fhir-patch-tests.json").read_bytes())
CASES = ORACLE["cases"]


def test_oracle_file_holds_the_33_official_cases() -> None:
    assert len(CASES) == 33


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_official_fhirpath_patch_case(case: dict[str, Any]) -> None:
    before = copy.deepcopy(case["input"])
    if "error" in case:
        with pytest.raises(FhirError) as err:
            apply_fhirpath_patch(case["input"], case["diff"])
        assert err.value.status == 422
        assert str(err.value).startswith(case["error"])
    else:
        assert apply_fhirpath_patch(case["input"], case["diff"]) == case["output"]
    assert case["input"] == before


# ---------------------------------------------------------------------------------------------
# FHIRPath Patch beyond the oracle


def op(type_: str, path: str, **parts: Any) -> dict[str, Any]:
    """One `operation` parameter; keyword arguments are `name=valueX` pairs or raw parts."""
    items: list[dict[str, Any]] = [
        {"name": "type", "valueCode": type_},
        {"name": "path", "valueString": path},
    ]
    for name, part in parts.items():
        items.append({"name": name, **part})
    return {"name": "operation", "part": items}


def params(*operations: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": list(operations)}


PATIENT: dict[str, Any] = {
    "resourceType": "Patient",
    "id": "123",
    "identifier": [
        {"use": "official", "system": "urn:oid:1.2.250.1.213.1.4.8", "value": "255082B20616183"},
        {"use": "usual", "system": "urn:oid:1.2.3", "value": "IPP-1"},
    ],
    "name": [{"family": "Martin", "given": ["Anne", "Marie"], "_given": [None, {"id": "g2"}]}],
    "deceasedBoolean": False,
}


def status_of(resource: dict[str, Any], parameters: dict[str, Any]) -> int:
    with pytest.raises(FhirError) as err:
        apply_fhirpath_patch(resource, parameters)
    return err.value.status


def test_replace_with_where_criterion_targets_the_matching_item() -> None:
    body = params(op("replace", "Patient.identifier.where(use = 'usual').value", value={"valueString": "IPP-2"}))
    out = apply_fhirpath_patch(PATIENT, body)
    assert [i["value"] for i in out["identifier"]] == ["255082B20616183", "IPP-2"]
    assert PATIENT["identifier"][1]["value"] == "IPP-1"


def test_where_on_primitives_uses_this() -> None:
    out = apply_fhirpath_patch(PATIENT, params(op("delete", "Patient.name.given.where($this.startsWith('M'))")))
    assert out["name"][0]["given"] == ["Anne"] and "_given" not in out["name"][0]


def test_other_fhirpath_functions_locate_elements_by_identity() -> None:
    out = apply_fhirpath_patch(PATIENT, params(op("delete", "Patient.identifier.skip(1)")))
    assert [i["value"] for i in out["identifier"]] == ["255082B20616183"]


def test_delete_of_a_path_that_matches_nothing_changes_nothing() -> None:
    body = params(op("delete", "Patient.telecom.where(system = 'fax')"))
    assert apply_fhirpath_patch(PATIENT, body) == PATIENT


def test_delete_of_a_path_matching_two_elements_is_422() -> None:
    assert status_of(PATIENT, params(op("delete", "Patient.identifier"))) == 422


def test_replace_of_a_missing_element_is_422() -> None:
    assert status_of(PATIENT, params(op("replace", "Patient.gender", value={"valueCode": "female"}))) == 422


def test_deleting_a_primitive_list_item_keeps_its_extensions_aligned() -> None:
    out = apply_fhirpath_patch(PATIENT, params(op("delete", "Patient.name[0].given[0]")))
    assert out["name"][0]["given"] == ["Marie"]
    assert out["name"][0]["_given"] == [{"id": "g2"}]


def test_inserting_into_a_primitive_list_pads_its_extensions() -> None:
    body = params(op("insert", "Patient.name[0].given", index={"valueInteger": 0}, value={"valueString": "Zoé"}))
    out = apply_fhirpath_patch(PATIENT, body)
    assert out["name"][0]["given"] == ["Zoé", "Anne", "Marie"]
    assert out["name"][0]["_given"] == [None, None, {"id": "g2"}]


def test_replacing_a_choice_element_with_another_type_renames_it() -> None:
    body = params(op("replace", "Patient.deceased", value={"valueDateTime": "2024-01-02"}))
    out = apply_fhirpath_patch(PATIENT, body)
    assert out["deceasedDateTime"] == "2024-01-02" and "deceasedBoolean" not in out


def test_adding_a_choice_element_uses_the_value_type_suffix() -> None:
    body = params(op("add", "Patient", name={"valueString": "multipleBirth"}, value={"valueInteger": 2}))
    assert apply_fhirpath_patch(PATIENT, body)["multipleBirthInteger"] == 2


def test_adding_a_single_valued_element_that_exists_is_422() -> None:
    body = params(op("add", "Patient", name={"valueString": "deceased"}, value={"valueBoolean": True}))
    assert status_of(PATIENT, body) == 422


def test_adding_an_unknown_element_is_422() -> None:
    body = params(op("add", "Patient", name={"valueString": "colour"}, value={"valueString": "blue"}))
    assert status_of(PATIENT, body) == 422


def test_decimal_values_keep_their_precision() -> None:
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "weight"}}
    value = {"valueQuantity": {"value": decimal.Decimal("70.50"), "unit": "kg"}}
    out = apply_fhirpath_patch(obs, params(op("add", "Observation", name={"valueString": "value"}, value=value)))
    assert str(out["valueQuantity"]["value"]) == "70.50"


def test_primitive_value_extensions_travel_with_the_value() -> None:
    ext = {"extension": [{"url": "http://example.org/source", "valueCode": "declared"}]}
    value = {"valueDate": "1980-01-17", "_valueDate": ext}
    out = apply_fhirpath_patch(PATIENT, params(op("add", "Patient", name={"valueString": "birthDate"}, value=value)))
    assert out["birthDate"] == "1980-01-17" and out["_birthDate"] == ext
    replaced = apply_fhirpath_patch(out, params(op("replace", "Patient.birthDate", value={"valueDate": "1980"})))
    assert replaced["birthDate"] == "1980" and "_birthDate" not in replaced


def test_primitive_extension_is_reachable_through_the_primitive() -> None:
    body = params(op("delete", "Patient.name[0].given[1].id"))
    out = apply_fhirpath_patch(PATIENT, body)
    assert "_given" not in out["name"][0]


def test_move_with_source_out_of_range_is_422() -> None:
    body = params(op("move", "Patient.identifier", source={"valueInteger": 5}, destination={"valueInteger": 0}))
    assert status_of(PATIENT, body) == 422


def test_insert_with_index_past_the_end_is_422() -> None:
    value = {"valueIdentifier": {"value": "x"}}
    body = params(op("insert", "Patient.identifier", index={"valueInteger": 3}, value=value))
    assert status_of(PATIENT, body) == 422


@pytest.mark.parametrize(
    "body",
    [
        {"resourceType": "Patient"},
        params({"name": "not-an-operation"}),
        params(op("explode", "Patient")),
        params(op("add", "Patient", name={"valueString": "gender"})),
        params(op("insert", "Patient.identifier", index={"valueString": "1"}, value={"valueString": "x"})),
        params(op("delete", "Patient.name[")),
        params(op("replace", "Patient.gender", value={"valueCode": "male", "valueString": "male"})),
    ],
    ids=[
        "not-parameters",
        "not-operation",
        "unknown-type",
        "missing-value",
        "index-not-integer",
        "bad-fhirpath",
        "two-values",
    ],
)
def test_malformed_fhirpath_patch_is_400(body: dict[str, Any]) -> None:
    assert status_of(PATIENT, body) == 400


def test_changing_the_resource_type_is_refused() -> None:
    body = params(op("replace", "Patient.name[0].family", value={"valueString": "X"}))
    assert apply_fhirpath_patch(PATIENT, body)["resourceType"] == "Patient"
    with pytest.raises(FhirError) as err:
        apply_json_patch(PATIENT, [{"op": "replace", "path": "/resourceType", "value": "Group"}])
    assert err.value.status == 422


# ---------------------------------------------------------------------------------------------
# JSON Patch


def test_json_patch_add_replace_remove() -> None:
    ops = [
        {"op": "add", "path": "/gender", "value": "female"},
        {"op": "replace", "path": "/name/0/family", "value": "Durand"},
        {"op": "remove", "path": "/identifier/1"},
        {"op": "add", "path": "/name/0/given/-", "value": "Lou"},
    ]
    out = apply_json_patch(PATIENT, ops)
    assert out["gender"] == "female"
    assert out["name"][0]["family"] == "Durand"
    assert out["name"][0]["given"] == ["Anne", "Marie", "Lou"]
    assert len(out["identifier"]) == 1
    assert PATIENT["name"][0]["family"] == "Martin" and "gender" not in PATIENT


def test_json_patch_keeps_decimals() -> None:
    obs = {"resourceType": "Observation", "valueQuantity": {"value": decimal.Decimal("1.50")}}
    ops = [{"op": "add", "path": "/valueQuantity/unit", "value": "mg"}]
    assert str(apply_json_patch(obs, ops)["valueQuantity"]["value"]) == "1.50"


def test_json_patch_failing_test_is_422_and_names_the_operation() -> None:
    ops = [{"op": "add", "path": "/active", "value": True}, {"op": "test", "path": "/id", "value": "999"}]
    with pytest.raises(FhirError) as err:
        apply_json_patch(PATIENT, ops)
    assert err.value.status == 422
    assert "operation 1 (test)" in str(err.value) and "/id" in str(err.value)


def test_json_patch_on_a_missing_path_is_422() -> None:
    with pytest.raises(FhirError) as err:
        apply_json_patch(PATIENT, [{"op": "remove", "path": "/telecom/0"}])
    assert err.value.status == 422
    assert "operation 0 (remove)" in str(err.value)


@pytest.mark.parametrize(
    "ops",
    [
        {"op": "add", "path": "/gender", "value": "male"},
        [{"op": "frobnicate", "path": "/gender"}],
        [{"op": "add", "value": "male"}],
        [{"op": "add", "path": "gender", "value": "male"}],
        [{"op": "add", "path": "/gender"}],
        ["add"],
    ],
    ids=["not-array", "unknown-op", "no-path", "pointer-without-slash", "no-value", "string-op"],
)
def test_malformed_json_patch_is_400(ops: Any) -> None:
    with pytest.raises(FhirError) as err:
        apply_json_patch(PATIENT, ops)
    assert err.value.status == 400
