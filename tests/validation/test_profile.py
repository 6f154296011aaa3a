"""The compiled profile validator: each rule type once satisfied and once broken, with the exact issue path."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from fhir_server.validation.conformance import ConformanceRegistry

BASE = "http://example.org/fhir/StructureDefinition/"
CORE = "http://hl7.org/fhir/StructureDefinition/"
NIR = "urn:oid:1.2.250.1.213.1.4.8"
NIR_VALUE = "184037512345690"  # key = 97 - (1840375123456 mod 97)
V2 = "http://terminology.hl7.org/CodeSystem/v2-0203"


def sd(id_: str, type_: str, elements: list[dict[str, Any]], base: str | None = None) -> dict[str, Any]:
    return {
        "resourceType": "StructureDefinition", "id": id_, "url": BASE + id_, "name": id_, "status": "draft",
        "kind": "complex-type" if type_ == "Extension" else "resource", "abstract": False, "type": type_,
        "baseDefinition": base or CORE + type_, "derivation": "constraint", "differential": {"element": elements},
    }  # fmt: skip


@pytest.fixture(scope="module")
def registry() -> ConformanceRegistry:
    reg = ConformanceRegistry(profiles_dir=None)
    reg.add({"resourceType": "CodeSystem", "url": "http://example.org/cs", "status": "active",
             "content": "complete", "concept": [{"code": "a", "display": "A"}, {"code": "b", "display": "B"}]})
    reg.add({"resourceType": "ValueSet", "url": "http://example.org/vs", "status": "active",
             "compose": {"include": [{"system": "http://example.org/cs", "concept": [{"code": "a"}]}]}})
    reg.add(sd("ext-code", "Extension", [
        {"id": "Extension.url", "path": "Extension.url", "fixedUri": BASE + "ext-code"},
        {"id": "Extension.value[x]", "path": "Extension.value[x]", "type": [{"code": "code"}]},
    ]))
    reg.add(sd("pat", "Patient", [
        {"id": "Patient", "path": "Patient", "constraint": [
            {"key": "tst-1", "severity": "error", "human": "A name or an identifier",
             "expression": "name.exists() or identifier.exists()"}]},
        {"id": "Patient.extension", "path": "Patient.extension",
         "slicing": {"discriminator": [{"type": "value", "path": "url"}], "rules": "closed"}},
        {"id": "Patient.extension:code", "path": "Patient.extension", "sliceName": "code", "min": 0, "max": "1",
         "type": [{"code": "Extension", "profile": [BASE + "ext-code"]}]},
        {"id": "Patient.identifier", "path": "Patient.identifier", "max": "2",
         "slicing": {"discriminator": [{"type": "value", "path": "system"}], "rules": "closed"}},
        {"id": "Patient.identifier:nir", "path": "Patient.identifier", "sliceName": "nir", "min": 1, "max": "1"},
        {"id": "Patient.identifier:nir.system", "path": "Patient.identifier.system", "min": 1, "fixedUri": NIR},
        {"id": "Patient.identifier:nir.type", "path": "Patient.identifier.type",
         "patternCodeableConcept": {"coding": [{"system": V2, "code": "MR"}]}},
        {"id": "Patient.identifier:local", "path": "Patient.identifier", "sliceName": "local"},
        {"id": "Patient.identifier:local.system", "path": "Patient.identifier.system", "fixedUri": "urn:local"},
        {"id": "Patient.birthDate", "path": "Patient.birthDate", "min": 1, "constraint": [
            {"key": "tst-3", "severity": "error", "human": "Born after 1900", "expression": "$this >= @1900-01-01"}]},
        {"id": "Patient.deceased[x]", "path": "Patient.deceased[x]", "type": [{"code": "boolean"}]},
        {"id": "Patient.maritalStatus", "path": "Patient.maritalStatus",
         "binding": {"strength": "required", "valueSet": "http://example.org/vs"}},
        {"id": "Patient.language", "path": "Patient.language",
         "binding": {"strength": "extensible", "valueSet": "http://example.org/vs"}},
        {"id": "Patient.contact.relationship", "path": "Patient.contact.relationship",
         "binding": {"strength": "required", "valueSet": "http://example.org/not-here"}},
        {"id": "Patient.contact", "path": "Patient.contact", "constraint": [
            {"key": "tst-2", "severity": "warning", "human": "A contact has a name",
             "expression": "name.exists()"}]},
        {"id": "Patient.generalPractitioner", "path": "Patient.generalPractitioner",
         "type": [{"code": "Reference", "targetProfile": [CORE + "Practitioner"]}]},
    ]))
    return reg


def patient(**changes: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Patient",
        "text": {"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml">P</div>'},
        "identifier": [{"system": NIR, "value": NIR_VALUE, "type": {"coding": [
            {"system": V2, "code": "MR"}, {"system": "urn:other", "code": "z"}]}}],
        "birthDate": "1970-01-01",
    }
    resource.update(changes)
    return {k: v for k, v in resource.items() if v is not None}


def issues(registry: ConformanceRegistry, resource: dict[str, Any]) -> list[tuple[str, str]]:
    return [(i["severity"], i["expression"][0]) for i in registry.validate(resource, [BASE + "pat"])
            if i["severity"] != "information"]


def test_a_conforming_patient_has_no_issues(registry: ConformanceRegistry) -> None:
    assert issues(registry, patient()) == []


def test_missing_required_element_is_reported_at_its_path(registry: ConformanceRegistry) -> None:
    assert issues(registry, patient(birthDate=None)) == [("error", "Patient.birthDate")]


def test_too_many_repetitions_are_reported(registry: ConformanceRegistry) -> None:
    ids = [{"system": "urn:local", "value": str(n)} for n in range(2)]
    found = registry.validate(patient(identifier=patient()["identifier"] + ids), [BASE + "pat"])
    assert ("error", "Patient.identifier") in [(i["severity"], i["expression"][0]) for i in found]
    assert any("maximum allowed = 2" in i["diagnostics"] for i in found)


def test_choice_type_outside_the_profile_is_rejected(registry: ConformanceRegistry) -> None:
    assert issues(registry, patient(deceasedBoolean=True)) == []
    assert issues(registry, patient(deceasedDateTime="2020-01-01")) == [("error", "Patient.deceased")]


def test_reference_to_a_type_outside_target_profiles_is_rejected(registry: ConformanceRegistry) -> None:
    assert issues(registry, patient(generalPractitioner=[{"reference": "Practitioner/1"}])) == []
    bad = patient(generalPractitioner=[{"reference": "Practitioner/1"}, {"reference": "Organization/2"}])
    assert issues(registry, bad) == [("error", "Patient.generalPractitioner[1]")]


def test_contained_reference_resolves_to_the_contained_type(registry: ConformanceRegistry) -> None:
    org = {"resourceType": "Organization", "id": "o1", "name": "CHU"}
    bad = patient(contained=[org], generalPractitioner=[{"reference": "#o1"}])
    assert issues(registry, bad) == [("error", "Patient.generalPractitioner[0]")]


def test_fixed_value_mismatch_inside_a_slice_is_reported(registry: ConformanceRegistry) -> None:
    # A wrong system no longer matches the nir slice (value discriminator): closed slicing + slice min.
    found = issues(registry, patient(identifier=[{"system": "urn:wrong", "value": NIR_VALUE}]))
    assert ("error", "Patient.identifier") in found and ("error", "Patient.identifier[0]") in found


def test_pattern_requires_the_pattern_coding_but_allows_more(registry: ConformanceRegistry) -> None:
    bad = patient(identifier=[{"system": NIR, "value": NIR_VALUE, "type": {"coding": [{"system": V2, "code": "DL"}]}}])
    assert issues(registry, bad) == [("error", "Patient.identifier[0].type")]


def test_slice_cardinality_counts_matching_items(registry: ConformanceRegistry) -> None:
    two = patient(identifier=patient()["identifier"] * 2)
    found = registry.validate(two, [BASE + "pat"])
    assert [i["expression"] for i in found if "Slice 'nir'" in i["diagnostics"]] == [["Patient.identifier"]]


def test_known_extension_is_validated_against_its_definition(registry: ConformanceRegistry) -> None:
    ok = patient(extension=[{"url": BASE + "ext-code", "valueCode": "a"}])
    assert issues(registry, ok) == []
    bad = patient(extension=[{"url": BASE + "ext-code", "valueString": "a"}])
    assert ("error", "Patient.extension[0].value") in issues(registry, bad)


def test_unknown_extension_is_rejected_when_the_profile_closes_extensions(registry: ConformanceRegistry) -> None:
    bad = patient(extension=[{"url": "http://example.org/unknown", "valueString": "a"}])
    assert issues(registry, bad) == [("error", "Patient.extension[0]")]


def test_unknown_extension_is_accepted_by_the_base_definition(registry: ConformanceRegistry) -> None:
    resource = patient(extension=[{"url": "http://example.org/unknown", "valueString": "a"}])
    assert [i for i in registry.validate(resource) if i["severity"] == "error"] == []


def test_required_binding_violation_is_an_error(registry: ConformanceRegistry) -> None:
    ok = patient(maritalStatus={"coding": [{"system": "http://example.org/cs", "code": "a"}]})
    assert issues(registry, ok) == []
    bad = patient(maritalStatus={"coding": [{"system": "http://example.org/cs", "code": "b"}]})
    assert issues(registry, bad) == [("error", "Patient.maritalStatus")]


def test_extensible_binding_violation_is_a_warning(registry: ConformanceRegistry) -> None:
    assert issues(registry, patient(language="b")) == [("warning", "Patient.language")]


def test_binding_to_an_unavailable_value_set_is_reported_as_not_checked(registry: ConformanceRegistry) -> None:
    resource = patient(contact=[{"name": {"family": "X"}, "relationship": [{"coding": [{"code": "q"}]}]}])
    found = registry.validate(resource, [BASE + "pat"])
    assert [(i["severity"], i["expression"][0]) for i in found] == [
        ("information", "Patient.contact[0].relationship[0]")]


def test_resource_level_invariant_is_evaluated(registry: ConformanceRegistry) -> None:
    bad = patient(identifier=None)
    found = registry.validate(bad, [BASE + "pat"])
    assert ("error", "Patient") in [(i["severity"], i["expression"][0]) for i in found]
    assert any(i["diagnostics"].startswith("tst-1") for i in found)


def test_element_invariant_is_evaluated_on_each_instance(registry: ConformanceRegistry) -> None:
    bad = patient(contact=[{"name": {"family": "A"}}, {"telecom": [{"system": "phone", "value": "1"}]}])
    assert issues(registry, bad) == [("warning", "Patient.contact[1]")]


def test_base_datatype_invariant_applies_inside_a_profile(registry: ConformanceRegistry) -> None:
    bad = patient(telecom=[{"system": "phone", "value": "1", "period": {"start": "2021", "end": "2020"}}])
    assert issues(registry, bad) == [("error", "Patient.telecom[0].period")]


def test_unknown_elements_and_bad_primitives_are_reported(registry: ConformanceRegistry) -> None:
    bad = patient(birthDate="1970-13-01", active="yes", nickname="x")
    assert sorted(issues(registry, bad)) == [
        ("error", "Patient.active"), ("error", "Patient.birthDate"), ("error", "Patient.nickname")]


def test_decimal_values_are_accepted_as_decimals(registry: ConformanceRegistry) -> None:
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "weight"},
           "valueQuantity": {"value": Decimal("72.50"), "unit": "kg"}}
    assert [i for i in registry.validate(obs) if i["severity"] == "error"] == []


def test_repeating_element_must_be_an_array(registry: ConformanceRegistry) -> None:
    assert issues(registry, patient(name={"family": "X"})) == [("error", "Patient.name")]


def test_french_identifier_check_runs_on_identifiers(registry: ConformanceRegistry) -> None:
    found = registry.validate({"resourceType": "Patient", "identifier": [{"system": NIR, "value": "123"}]})
    assert ("error", "Patient.identifier[0].value") in [(i["severity"], i["expression"][0]) for i in found]


def test_meta_profile_claims_select_the_profile(registry: ConformanceRegistry) -> None:
    claimed = patient(birthDate=None, meta={"profile": [BASE + "pat"]})
    assert ("error", "Patient.birthDate") in [(i["severity"], i["expression"][0]) for i in registry.validate(claimed)]
    unclaimed = patient(birthDate=None)
    assert [i for i in registry.validate(unclaimed) if i["severity"] == "error"] == []


def test_unknown_profile_severity_follows_configuration() -> None:
    for severity in ("warning", "error"):
        reg = ConformanceRegistry(profiles_dir=None, unknown_profile=severity)
        found = reg.validate({"resourceType": "Patient"}, ["http://example.org/nope"])
        assert [(i["severity"], i["diagnostics"]) for i in found] == [(severity, "Unknown profile http://example.org/nope")]


def test_profile_for_another_type_is_an_error(registry: ConformanceRegistry) -> None:
    found = registry.validate({"resourceType": "Organization", "name": "x"}, [BASE + "pat"])
    assert [i["severity"] for i in found] == ["error"]


def test_contained_resources_are_validated_against_their_type(registry: ConformanceRegistry) -> None:
    bad = patient(contained=[{"resourceType": "Organization", "id": "o", "name": "CHU", "active": "yes"}],
                  managingOrganization={"reference": "#o"})
    assert issues(registry, bad) == [("error", "Patient.contained[0].active")]


def test_local_reference_must_name_a_contained_resource(registry: ConformanceRegistry) -> None:
    bad = patient(managingOrganization={"reference": "#missing"})
    found = registry.validate(bad, [BASE + "pat"])
    assert [(i["expression"][0], i["diagnostics"][:5]) for i in found if i["severity"] == "error"] == [
        ("Patient.managingOrganization", "ref-1")]


def test_invariant_on_a_primitive_element_is_evaluated(registry: ConformanceRegistry) -> None:
    assert issues(registry, patient(birthDate="1899-12-31")) == [("error", "Patient.birthDate")]


def test_range_low_must_not_exceed_high(registry: ConformanceRegistry) -> None:
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
           "valueRange": {"low": {"value": Decimal("5"), "unit": "kg"}, "high": {"value": 4, "unit": "kg"}}}
    assert [(i["expression"][0], i["diagnostics"][:5]) for i in registry.validate(obs) if i["severity"] == "error"] == [
        ("Observation.value", "rng-2")]


def test_invariant_fails_on_an_instance_holding_none_of_the_elements_it_reads(registry: ConformanceRegistry) -> None:
    # Evaluated through the "empty element" shortcut: it must still fail (base pat-1, profile tst-2).
    found = registry.validate(patient(contact=[{"gender": "male"}, {"gender": "female"}]), [BASE + "pat"])
    assert sorted((i["severity"], i["expression"][0], i["diagnostics"][:5]) for i in found) == [
        ("error", "Patient.contact[0]", "pat-1"), ("error", "Patient.contact[1]", "pat-1"),
        ("warning", "Patient.contact[0]", "tst-2"), ("warning", "Patient.contact[1]", "tst-2")]


def test_min_and_max_values_bound_numbers_dates_and_same_unit_quantities() -> None:
    reg = ConformanceRegistry(profiles_dir=None)
    reg.add(sd("bounded", "Observation", [
        {"id": "Observation.valueQuantity", "path": "Observation.valueQuantity",
         "minValueQuantity": {"value": 0, "system": "http://unitsofmeasure.org", "code": "kg"},
         "maxValueQuantity": {"value": 300, "system": "http://unitsofmeasure.org", "code": "kg"}},
        {"id": "Observation.effective[x]", "path": "Observation.effective[x]", "type": [{"code": "date"}],
         "minValueDate": "2000-01-01"},
    ]))

    def paths(weight: Any, unit: str = "kg", day: str = "2020-01-01") -> list[str]:
        obs = {"resourceType": "Observation", "status": "final", "code": {"text": "weight"}, "effectiveDate": day,
               "valueQuantity": {"value": weight, "system": "http://unitsofmeasure.org", "code": unit}}
        return [i["expression"][0] for i in reg.validate(obs, [BASE + "bounded"]) if i["severity"] == "error"]

    assert paths(Decimal("72.5")) == []
    assert paths(-1) == ["Observation.value"] and paths(301) == ["Observation.value"]
    assert paths(301000, unit="g") == []  # another unit needs UCUM conversion: not compared
    assert paths(72, day="1999-12-31") == ["Observation.effective"]


def test_resource_id_must_be_a_fhir_id(registry: ConformanceRegistry) -> None:
    assert issues(registry, patient(id="ok-1.2")) == []
    assert issues(registry, patient(id="not/ok")) == [("error", "Patient.id")]


@pytest.mark.parametrize("div", [
    '<div xmlns="http://www.w3.org/1999/xhtml"><script>alert(1)</script>x</div>',
    '<div xmlns="http://www.w3.org/1999/xhtml"><p onclick="steal()">x</p></div>',
    '<div xmlns="http://www.w3.org/1999/xhtml"><a href="javascript:steal()">x</a></div>',
    '<div xmlns="http://www.w3.org/1999/xhtml"><iframe src="https://evil.example"></iframe>x</div>',
])
def test_narrative_with_unsafe_html_is_rejected(registry: ConformanceRegistry, div: str) -> None:
    found = issues(registry, patient(text={"status": "generated", "div": div}))
    assert found == [("error", "Patient.text.div")]


def test_narrative_must_have_content(registry: ConformanceRegistry) -> None:
    empty = patient(text={"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml"> <p/> </div>'})
    assert issues(registry, empty) == [("error", "Patient.text.div")]
    fine = ('<div xmlns="http://www.w3.org/1999/xhtml"><table><tr><td><b>Né</b> le 1<sup>er</sup></td></tr>'
            "</table></div>")
    assert issues(registry, patient(text={"status": "generated", "div": fine})) == []


def test_required_binding_needs_a_code_not_just_text(registry: ConformanceRegistry) -> None:
    assert issues(registry, patient(maritalStatus={"text": "married"})) == [("error", "Patient.maritalStatus")]
