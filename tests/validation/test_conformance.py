"""The conformance registry: loading, canonical lookup with versions, run-time additions, caching."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from fhir_server.errors import FhirError
from fhir_server.validation.conformance import ConformanceRegistry

CORE = "http://hl7.org/fhir/StructureDefinition/"
FR_PATIENT = "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-patient"


def profile(url: str, version: str | None = None, min_birth: int = 1) -> dict[str, Any]:
    resource = {
        "resourceType": "StructureDefinition", "url": url, "name": "P", "status": "draft", "kind": "resource",
        "abstract": False, "type": "Patient", "baseDefinition": CORE + "Patient", "derivation": "constraint",
        "differential": {"element": [{"id": "Patient.birthDate", "path": "Patient.birthDate", "min": min_birth}]},
    }  # fmt: skip
    if version:
        resource["version"] = version
    return resource


@pytest.fixture(scope="module")
def shipped() -> ConformanceRegistry:
    return ConformanceRegistry()


def test_base_definitions_and_shipped_profiles_are_loaded(shipped: ConformanceRegistry) -> None:
    assert shipped.structure_definition(CORE + "Patient") is not None
    assert shipped.value_set("http://hl7.org/fhir/ValueSet/administrative-gender") is not None
    assert shipped.structure_definition(FR_PATIENT) is not None
    assert shipped.base_definition_url("Patient") == CORE + "Patient"
    assert shipped.base_definition_url("vitalsigns") is None


def test_known_profiles_for_type_lists_local_profiles_only(shipped: ConformanceRegistry) -> None:
    patient_profiles = shipped.known_profiles_for_type("Patient")
    assert FR_PATIENT in patient_profiles and FR_PATIENT + "-ins" in patient_profiles
    assert all(not url.startswith(CORE) for url in patient_profiles)
    assert shipped.known_profiles_for_type("Observation") == []


def test_lookup_by_version_and_latest_without_version() -> None:
    registry = ConformanceRegistry(profiles_dir=None)
    registry.add(profile("http://example.org/p", "1.0.0", min_birth=0))
    registry.add(profile("http://example.org/p", "1.10.0", min_birth=1))
    assert registry.structure_definition("http://example.org/p|1.0.0")["version"] == "1.0.0"  # type: ignore[index]
    assert registry.structure_definition("http://example.org/p")["version"] == "1.10.0"  # type: ignore[index]
    assert registry.structure_definition("http://example.org/p|9") is None


def test_added_profile_is_used_and_replacing_it_drops_the_cached_validator() -> None:
    registry = ConformanceRegistry(profiles_dir=None)
    registry.add(profile("http://example.org/p"))
    first = registry.validator("http://example.org/p")
    found = registry.validate({"resourceType": "Patient"}, ["http://example.org/p"])
    assert [i["expression"] for i in found if i["severity"] == "error"] == [["Patient.birthDate"]]
    registry.add(profile("http://example.org/p", min_birth=0))
    assert registry.validator("http://example.org/p") is not first
    assert [i for i in registry.validate({"resourceType": "Patient"}, ["http://example.org/p"])
            if i["severity"] == "error"] == []
    assert registry.known_profiles_for_type("Patient") == ["http://example.org/p"]


def test_add_rejects_non_conformance_resources() -> None:
    registry = ConformanceRegistry(profiles_dir=None)
    with pytest.raises(FhirError):
        registry.add({"resourceType": "Patient", "id": "x"})


def test_profiles_directory_is_read_including_bundles(tmp_path: Path) -> None:
    (tmp_path / "one.json").write_text(json.dumps(profile("http://example.org/one")))
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": profile("http://example.org/two")}]}
    (tmp_path / "two.json").write_text(json.dumps(bundle))
    registry = ConformanceRegistry(tmp_path)
    assert registry.known_profiles_for_type("Patient") == ["http://example.org/one", "http://example.org/two"]


def test_validator_is_compiled_once_under_concurrency() -> None:
    registry = ConformanceRegistry(profiles_dir=None)
    registry.add(profile("http://example.org/p"))
    seen: list[Any] = []
    threads = [threading.Thread(target=lambda: seen.append(registry.validator("http://example.org/p")))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(v) for v in seen}) == 1


def test_unknown_profile_severity_must_be_error_or_warning() -> None:
    with pytest.raises(ValueError):
        ConformanceRegistry(profiles_dir=None, unknown_profile="fatal")


def test_unknown_meta_profile_claim_is_information_and_base_still_applies(shipped: ConformanceRegistry) -> None:
    found = shipped.validate({"resourceType": "Patient", "gender": "nope",
                              "meta": {"profile": ["http://example.org/unknown"]}})
    found = [(i["severity"], i["code"]) for i in found if i["severity"] != "warning"]  # dom-6: no narrative
    assert found == [("information", "not-supported"), ("error", "code-invalid")]


def test_unknown_resource_type_is_an_error(shipped: ConformanceRegistry) -> None:
    assert [i["severity"] for i in shipped.validate({"resourceType": "Nope"})] == ["error"]
    assert [i["severity"] for i in shipped.validate({"id": "x"})] == ["error"]


def test_adding_a_value_set_refreshes_bindings_but_keeps_compiled_base_definitions() -> None:
    registry = ConformanceRegistry(profiles_dir=None)
    base = registry.validator(CORE + "Patient")
    registry.add({"resourceType": "ValueSet", "url": "http://example.org/vs", "status": "active",
                  "compose": {"include": [{"system": "urn:s", "concept": [{"code": "a"}]}]}})
    from fhir_server.validation.terminology import value_set_membership

    assert value_set_membership(registry, "http://example.org/vs").contains("urn:s", "a")  # type: ignore[union-attr]
    registry.add({"resourceType": "ValueSet", "url": "http://example.org/vs", "status": "active",
                  "compose": {"include": [{"system": "urn:s", "concept": [{"code": "b"}]}]}})
    members = value_set_membership(registry, "http://example.org/vs")
    assert members is not None and not members.contains("urn:s", "a") and members.contains("urn:s", "b")
    registry.add(profile("http://example.org/p"))
    assert registry.validator(CORE + "Patient") is base


def test_a_profile_that_cannot_be_snapshotted_is_reported_as_an_issue() -> None:
    registry = ConformanceRegistry(profiles_dir=None)
    broken = profile("http://example.org/broken")
    broken["differential"]["element"] = [{"id": "Patient.nonsense", "path": "Patient.nonsense", "min": 1}]
    registry.add(broken)
    found = registry.validate({"resourceType": "Patient"}, ["http://example.org/broken"])
    assert [(i["severity"], i["code"]) for i in found] == [("error", "processing")]
    assert "Patient.nonsense" in found[0]["diagnostics"]


def test_concurrent_validations_give_the_sequential_results(shipped: ConformanceRegistry) -> None:
    from concurrent.futures import ThreadPoolExecutor

    resources = [
        {"resourceType": "Patient", "gender": "nope", "birthDate": "1970-02-30x",
         "contact": [{"gender": "male"}], "telecom": [{"system": "phone", "value": "1",
                                                        "period": {"start": "2021", "end": "2020"}}]},
        {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
         "valueRange": {"low": {"value": 5}, "high": {"value": 1}}},
        {"resourceType": "Patient", "meta": {"profile": [FR_PATIENT + "-ins"]}, "gender": "male"},
    ] * 10
    expected = [shipped.validate(r) for r in resources]
    with ThreadPoolExecutor(max_workers=8) as pool:
        assert list(pool.map(shipped.validate, resources)) == expected


def test_published_snapshot_is_used_when_the_base_is_not_held() -> None:
    registry = ConformanceRegistry(profiles_dir=None)
    base_snapshot = registry.snapshot(CORE + "Patient")
    assert base_snapshot is not None
    orphan = profile("http://example.org/orphan")
    orphan["baseDefinition"] = "http://example.org/not-held"
    orphan["snapshot"] = {"element": [dict(el, min=1) if el["id"] == "Patient.gender" else el for el in base_snapshot]}
    registry.add(orphan)
    found = registry.validate({"resourceType": "Patient"}, ["http://example.org/orphan"])
    assert [i["expression"] for i in found if i["severity"] == "error"] == [["Patient.gender"]]


def test_a_profile_deriving_from_itself_is_reported_not_looping() -> None:
    registry = ConformanceRegistry(profiles_dir=None)
    looped = profile("http://example.org/loop")
    looped["baseDefinition"] = "http://example.org/loop"
    registry.add(looped)
    found = registry.validate({"resourceType": "Patient"}, ["http://example.org/loop"])
    assert [(i["severity"], "derives from itself" in i["diagnostics"]) for i in found] == [("error", True)]
