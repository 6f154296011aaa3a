"""Tests of the vendored R4 definitions and their loaders (fhir_server.definitions)."""

from __future__ import annotations

import fnmatch
import gzip
import importlib.util
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from fhir_server import definitions as defs

ROOT = Path(__file__).resolve().parents[2]
R4_DIR = ROOT / "fhir_server" / "definitions" / "r4"


def test_resource_types_are_the_146_concrete_r4_types() -> None:
    types = defs.resource_types()
    assert len(types) == 146
    assert {"Patient", "CarePlan", "CareTeam", "MedicinalProduct", "EffectEvidenceSynthesis"} <= types
    assert not {"Resource", "DomainResource", "MetadataResource", "Ingredient"} & types


def test_search_parameters_hold_the_official_set_without_xpath() -> None:
    params = defs.search_parameters()
    assert len(params) == 1375
    by_id = {p["id"]: p for p in params}
    identifier = by_id["Patient-identifier"]
    assert identifier["code"] == "identifier"
    assert identifier["base"] == ["Patient"]
    assert identifier["type"] == "token"
    assert identifier["expression"] == "Patient.identifier"
    assert by_id["individual-family"]["base"] == ["Patient", "Practitioner"]
    assert by_id["Observation-code-value-quantity"]["component"]
    assert not any("xpath" in p for p in params)
    # Examples and extension-defined parameters are not part of the official R4 list.
    assert "example" not in by_id


def test_patient_compartment_lists_careplan_by_patient_and_performer() -> None:
    compartment = defs.patient_compartment()
    assert compartment["code"] == "Patient"
    members = {r["code"]: r.get("param", []) for r in compartment["resource"]}
    assert members["CarePlan"] == ["patient", "performer"]
    assert "subject" in members["Observation"]
    assert "Practitioner" in members and not members["Practitioner"]


def test_structure_definitions_cover_resources_types_and_extensions() -> None:
    sds = defs.structure_definitions()
    patient = sds["http://hl7.org/fhir/StructureDefinition/Patient"]
    assert patient["snapshot"]["element"][0]["path"] == "Patient"
    assert patient["differential"]["element"]
    assert sds["http://hl7.org/fhir/StructureDefinition/HumanName"]["kind"] == "complex-type"
    assert sds["http://hl7.org/fhir/StructureDefinition/patient-birthPlace"]["type"] == "Extension"
    assert "text" not in patient  # narratives are dropped when vendoring


@pytest.mark.parametrize(
    ("type_name", "kind"),
    [("Patient", "resource"), ("HumanName", "complex-type"), ("dateTime", "primitive-type")],
)
def test_structure_definition_for_type_finds_base_definitions(type_name: str, kind: str) -> None:
    sd = defs.structure_definition_for_type(type_name)
    assert sd is not None
    assert (sd["type"], sd["kind"]) == (type_name, kind)


@pytest.mark.parametrize("name", ["vitalsigns", "Nope", ""])
def test_structure_definition_for_type_is_none_for_profiles_and_unknown_names(name: str) -> None:
    assert defs.structure_definition_for_type(name) is None


def test_value_sets_and_code_systems_include_fhir_v2_and_v3() -> None:
    urls = {r["url"]: r["resourceType"] for r in defs.value_sets_and_code_systems()}
    assert urls["http://hl7.org/fhir/ValueSet/administrative-gender"] == "ValueSet"
    assert urls["http://hl7.org/fhir/administrative-gender"] == "CodeSystem"
    assert urls["http://terminology.hl7.org/CodeSystem/v3-ActCode"] == "CodeSystem"
    assert urls["http://terminology.hl7.org/CodeSystem/v2-0203"] == "CodeSystem"
    assert len(urls) > 2000


def test_json_schema_is_the_r4_schema_without_medplum_types() -> None:
    schema = defs.r4_json_schema()
    assert schema["$schema"] == "http://json-schema.org/draft-06/schema#"
    assert schema["id"] == "http://hl7.org/fhir/json-schema/4.0"
    names = {ref["$ref"].rsplit("/", 1)[1] for ref in schema["oneOf"]}
    assert names == defs.resource_types()
    assert "Project" not in schema["definitions"] and "Bot" not in schema["definitions"]


def test_r4b_divergent_types_are_r4_types_without_an_r4b_equivalent() -> None:
    divergent = defs.r4b_divergent_types()
    assert divergent <= defs.resource_types()
    assert {"MedicinalProduct", "EffectEvidenceSynthesis", "SubstanceSpecification"} <= divergent
    assert (
        not {"Patient", "Practitioner", "CarePlan", "CareTeam", "ServiceRequest", "Task", "Consent"}
        & divergent
    )


def test_loaders_parse_once_and_share_the_result() -> None:
    assert defs.search_parameters() is defs.search_parameters()
    assert defs.structure_definitions() is defs.structure_definitions()


def test_every_vendored_file_ships_as_package_data() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    globs = config["tool"]["setuptools"]["package-data"]["fhir_server"]
    packaged = resources.files("fhir_server.definitions").joinpath("r4")
    for path in R4_DIR.iterdir():
        relative = f"definitions/r4/{path.name}"
        assert any(fnmatch.fnmatch(relative, g) for g in globs), relative
        assert packaged.joinpath(path.name).is_file()


def test_vendored_files_stay_small_and_are_all_described_in_source_md() -> None:
    files = [p for p in R4_DIR.iterdir() if p.name != "SOURCE.md"]
    assert sum(p.stat().st_size for p in files) < 15_000_000
    source = (R4_DIR / "SOURCE.md").read_text(encoding="utf-8")
    for path in files:
        assert f"`{path.name}`" in source
    assert "CC0" in source and "hl7.fhir.r4.examples@4.0.1" in source


def _vendor_script() -> Any:
    spec = importlib.util.spec_from_file_location("vendor_r4", ROOT / "scripts" / "vendor_r4_definitions.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_divergent_list_still_matches_the_installed_r4b_models(capsys: pytest.CaptureFixture[str]) -> None:
    # Guards an upgrade of fhir.resources: a changed R4B model must send its type to the schema path.
    script = _vendor_script()

    def load(name: str) -> list[dict[str, Any]]:
        from fhir_server.fhir.json import loads

        return loads(gzip.decompress((R4_DIR / name).read_bytes()))  # type: ignore[no-any-return]

    divergent, reasons = script.divergent_types(
        load("profiles-resources.json.gz"), load("profiles-types.json.gz")
    )
    capsys.readouterr()
    assert frozenset(divergent) == defs.r4b_divergent_types()
    assert reasons["MedicinalProduct"] == "no R4B model"
    assert "subjectCanonical" in reasons["PlanDefinition"]


def test_r4_children_expands_choice_types_into_json_names() -> None:
    script = _vendor_script()
    sd = defs.structure_definition_for_type("Patient")
    assert sd is not None
    elements = {e["path"]: e for e in sd["snapshot"]["element"]}
    children = script.r4_children(elements, "Patient")
    assert children["deceasedBoolean"] == ("boolean", False, None)
    assert children["deceasedDateTime"] == ("dateTime", False, None)
    assert children["name"] == ("HumanName", True, None)
    assert children["contact"] == ("BackboneElement", True, "Patient.contact")
    assert "deceased[x]" not in children
