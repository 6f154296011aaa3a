"""Slicing discriminators (value, pattern, type, profile, exists) and open/closed rules."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_server.validation.conformance import ConformanceRegistry

BASE = "http://example.org/fhir/StructureDefinition/"
CORE = "http://hl7.org/fhir/StructureDefinition/"


def sd(id_: str, type_: str, elements: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "StructureDefinition", "id": id_, "url": BASE + id_, "name": id_, "status": "draft",
        "kind": "resource", "abstract": False, "type": type_, "baseDefinition": CORE + type_,
        "derivation": "constraint", "differential": {"element": elements},
    }  # fmt: skip


def slicing(kind: str, path: str, rules: str = "closed") -> dict[str, Any]:
    return {"discriminator": [{"type": kind, "path": path}], "rules": rules}


@pytest.fixture(scope="module")
def registry() -> ConformanceRegistry:
    reg = ConformanceRegistry(profiles_dir=None)
    reg.add(sd("dated-patient", "Patient", [{"id": "Patient.birthDate", "path": "Patient.birthDate", "min": 1}]))
    reg.add(sd("by-type", "Bundle", [
        {"id": "Bundle.entry", "path": "Bundle.entry", "slicing": slicing("type", "resource")},
        {"id": "Bundle.entry:patient", "path": "Bundle.entry", "sliceName": "patient", "min": 1, "max": "1"},
        {"id": "Bundle.entry:patient.resource", "path": "Bundle.entry.resource", "type": [{"code": "Patient"}]},
        {"id": "Bundle.entry:org", "path": "Bundle.entry", "sliceName": "org"},
        {"id": "Bundle.entry:org.resource", "path": "Bundle.entry.resource", "type": [{"code": "Organization"}]},
    ]))
    reg.add(sd("by-profile", "Bundle", [
        {"id": "Bundle.entry", "path": "Bundle.entry", "slicing": slicing("profile", "resource")},
        {"id": "Bundle.entry:dated", "path": "Bundle.entry", "sliceName": "dated"},
        {"id": "Bundle.entry:dated.resource", "path": "Bundle.entry.resource",
         "type": [{"code": "Patient", "profile": [BASE + "dated-patient"]}]},
    ]))
    reg.add(sd("by-exists", "Patient", [
        {"id": "Patient.identifier", "path": "Patient.identifier", "slicing": slicing("exists", "period")},
        {"id": "Patient.identifier:dated", "path": "Patient.identifier", "sliceName": "dated", "max": "1"},
        {"id": "Patient.identifier:dated.period", "path": "Patient.identifier.period", "min": 1},
        {"id": "Patient.identifier:undated", "path": "Patient.identifier", "sliceName": "undated"},
        {"id": "Patient.identifier:undated.period", "path": "Patient.identifier.period", "max": "0"},
    ]))
    reg.add(sd("by-pattern", "Patient", [
        {"id": "Patient.identifier", "path": "Patient.identifier", "slicing": slicing("pattern", "type", "open")},
        {"id": "Patient.identifier:mr", "path": "Patient.identifier", "sliceName": "mr", "min": 1},
        {"id": "Patient.identifier:mr.type", "path": "Patient.identifier.type", "patternCodeableConcept":
            {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]}},
        {"id": "Patient.identifier:mr.value", "path": "Patient.identifier.value", "min": 1},
    ]))
    reg.add({"resourceType": "ValueSet", "url": "http://example.org/vs/home", "status": "active",
             "compose": {"include": [{"system": "http://hl7.org/fhir/contact-point-use", "concept": [
                 {"code": "home"}, {"code": "mobile"}]}]}})
    reg.add(sd("by-binding", "Patient", [
        {"id": "Patient.telecom", "path": "Patient.telecom", "slicing": slicing("value", "use")},
        {"id": "Patient.telecom:personal", "path": "Patient.telecom", "sliceName": "personal", "max": "1"},
        {"id": "Patient.telecom:personal.use", "path": "Patient.telecom.use",
         "binding": {"strength": "required", "valueSet": "http://example.org/vs/home"}},
        {"id": "Patient.telecom:work", "path": "Patient.telecom", "sliceName": "work"},
        {"id": "Patient.telecom:work.use", "path": "Patient.telecom.use", "fixedCode": "work"},
    ]))
    reg.add({**sd("ext-kind", "Extension", [
        {"id": "Extension.url", "path": "Extension.url", "fixedUri": BASE + "ext-kind"},
        {"id": "Extension.value[x]", "path": "Extension.value[x]", "type": [{"code": "code"}]},
    ]), "kind": "complex-type"})
    kind_slice: list[dict[str, Any]] = []
    for name, max_ in (("home", "*"), ("work", "1")):
        kind_slice += [
            {"id": f"Patient.address:{name}", "path": "Patient.address", "sliceName": name, "max": max_},
            {"id": f"Patient.address:{name}.extension:kind", "path": "Patient.address.extension", "sliceName": "kind",
             "min": 1, "type": [{"code": "Extension", "profile": [BASE + "ext-kind"]}]},
            {"id": f"Patient.address:{name}.extension:kind.value[x]", "path": "Patient.address.extension.value[x]",
             "fixedCode": name},
        ]
    reg.add(sd("by-extension", "Patient", [
        {"id": "Patient.address", "path": "Patient.address",
         "slicing": slicing("value", f"extension('{BASE}ext-kind').value")}, *kind_slice]))
    reg.add(sd("ordered", "Patient", [
        {"id": "Patient.identifier", "path": "Patient.identifier",
         "slicing": {"discriminator": [{"type": "value", "path": "system"}], "rules": "openAtEnd", "ordered": True}},
        {"id": "Patient.identifier:first", "path": "Patient.identifier", "sliceName": "first"},
        {"id": "Patient.identifier:first.system", "path": "Patient.identifier.system", "fixedUri": "urn:first"},
        {"id": "Patient.identifier:second", "path": "Patient.identifier", "sliceName": "second"},
        {"id": "Patient.identifier:second.system", "path": "Patient.identifier.system", "fixedUri": "urn:second"},
    ]))
    return reg


def errors(registry: ConformanceRegistry, resource: dict[str, Any], profile: str) -> list[str]:
    return [i["expression"][0] for i in registry.validate(resource, [BASE + profile]) if i["severity"] == "error"]


def bundle(*resources: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "collection",
            "entry": [{"fullUrl": f"urn:uuid:00000000-0000-0000-0000-00000000000{n}", "resource": r}
                      for n, r in enumerate(resources)]}


PATIENT = {"resourceType": "Patient", "birthDate": "1970-01-01"}
ORG = {"resourceType": "Organization", "name": "CHU"}
PRACTITIONER = {"resourceType": "Practitioner", "name": [{"family": "Martin"}]}


def test_type_discriminator_matches_by_resource_type(registry: ConformanceRegistry) -> None:
    assert errors(registry, bundle(PATIENT, ORG), "by-type") == []


def test_type_discriminator_reports_missing_slice_and_closed_mismatch(registry: ConformanceRegistry) -> None:
    assert errors(registry, bundle(ORG, PRACTITIONER), "by-type") == ["Bundle.entry", "Bundle.entry[1]"]


def test_profile_discriminator_matches_resources_conforming_to_the_profile(registry: ConformanceRegistry) -> None:
    assert errors(registry, bundle(PATIENT), "by-profile") == []
    assert errors(registry, bundle({"resourceType": "Patient", "gender": "male"}), "by-profile") == ["Bundle.entry[0]"]


def test_exists_discriminator_splits_on_presence(registry: ConformanceRegistry) -> None:
    dated = {"system": "urn:a", "value": "1", "period": {"start": "2020"}}
    undated = {"system": "urn:a", "value": "2"}
    assert errors(registry, {"resourceType": "Patient", "identifier": [dated, undated, undated]}, "by-exists") == []
    too_many = {"resourceType": "Patient", "identifier": [dated, dated]}
    assert errors(registry, too_many, "by-exists") == ["Patient.identifier"]


def test_pattern_discriminator_in_open_slicing(registry: ConformanceRegistry) -> None:
    mr = {"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]}}
    other = {"system": "urn:x", "value": "9"}
    ok = {"resourceType": "Patient", "identifier": [other, {**mr, "value": "1"}]}
    assert errors(registry, ok, "by-pattern") == []
    # the matching identifier lacks the value the slice requires; the other one is free (open slicing)
    assert errors(registry, {"resourceType": "Patient", "identifier": [other, mr]}, "by-pattern") == [
        "Patient.identifier[1].value"]
    assert errors(registry, {"resourceType": "Patient", "identifier": [other]}, "by-pattern") == ["Patient.identifier"]


def test_value_discriminator_on_a_required_binding(registry: ConformanceRegistry) -> None:
    home = {"system": "phone", "value": "1", "use": "home"}
    work = {"system": "phone", "value": "2", "use": "work"}
    mobile = {"system": "phone", "value": "3", "use": "mobile"}
    assert errors(registry, {"resourceType": "Patient", "telecom": [home, work, work]}, "by-binding") == []
    assert errors(registry, {"resourceType": "Patient", "telecom": [home, mobile]}, "by-binding") == ["Patient.telecom"]
    temp = {"system": "phone", "value": "4", "use": "temp"}
    assert errors(registry, {"resourceType": "Patient", "telecom": [temp]}, "by-binding") == ["Patient.telecom[0]"]


def test_value_discriminator_through_an_extension_call(registry: ConformanceRegistry) -> None:
    def address(kind: str | None) -> dict[str, Any]:
        extension = [{"url": BASE + "ext-kind", "valueCode": kind}] if kind else []
        return {"city": "Lyon", **({"extension": extension} if extension else {})}

    ok = {"resourceType": "Patient", "address": [address("home"), address("home"), address("work")]}
    assert errors(registry, ok, "by-extension") == []
    two_work = {"resourceType": "Patient", "address": [address("work"), address("work")]}
    assert errors(registry, two_work, "by-extension") == ["Patient.address"]
    unsliced = {"resourceType": "Patient", "address": [address("home"), address(None)]}
    assert errors(registry, unsliced, "by-extension") == ["Patient.address[1]"]


def test_discriminator_path_helpers() -> None:
    from fhir_server.validation.fhirpath import evaluate_path, split_path

    assert split_path("extension('http://a.b/c').value.ofType(Coding).code") == [
        "extension('http://a.b/c')", "value", "ofType(Coding)", "code"]
    ext = {"extension": [{"url": "http://a.b/c", "valueCoding": {"code": "x"}},
                         {"url": "http://a.b/c", "valueString": "y"}]}
    assert evaluate_path(ext, "extension('http://a.b/c').value.ofType(Coding).code") == ["x"]
    assert evaluate_path(ext, "extension('http://a.b/c').value") == [{"code": "x"}, "y"]


def test_ordered_slicing_open_at_end(registry: ConformanceRegistry) -> None:
    def ids(*systems: str) -> dict[str, Any]:
        return {"resourceType": "Patient", "identifier": [{"system": f"urn:{s}", "value": "1"} for s in systems]}

    assert errors(registry, ids("first", "first", "second", "other"), "ordered") == []
    assert errors(registry, ids("second", "first"), "ordered") == ["Patient.identifier[1]"]
    assert errors(registry, ids("first", "other", "second"), "ordered") == ["Patient.identifier[2]"]
