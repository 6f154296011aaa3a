"""Terminology operations over the shipped ValueSets and CodeSystems (and small ones made here)."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_server.errors import FhirError
from fhir_server.validation.conformance import ConformanceRegistry
from fhir_server.validation.terminology import expand, lookup, translate, validate_code, value_set_membership

THEMATIC = "https://fhir.coordination-sante.fr/ValueSet/coord-careplan-thematic"
GENDER_INS = "https://hl7.fr/ig/fhir/core/ValueSet/fr-core-vs-patient-gender-INS"
G15 = "https://mos.esante.gouv.fr/NOS/TRE_G15-ProfessionSante/FHIR/TRE-G15-ProfessionSante"
TREE = "http://example.org/cs/tree"


@pytest.fixture(scope="module")
def registry() -> ConformanceRegistry:
    reg = ConformanceRegistry()
    reg.add({"resourceType": "CodeSystem", "url": TREE, "version": "1", "name": "Tree", "status": "active",
             "content": "complete", "concept": [
                 {"code": "care", "display": "Soins", "concept": [
                     {"code": "nursing", "display": "Soins infirmiers",
                      "designation": [{"language": "en", "value": "Nursing"}]},
                     {"code": "physio", "display": "Kinésithérapie"}]},
                 {"code": "social", "display": "Social",
                  "property": [{"code": "status", "valueCode": "retired"}]}]})
    reg.add({"resourceType": "ValueSet", "url": "http://example.org/vs/care", "status": "active",
             "compose": {"include": [{"system": TREE, "filter": [{"property": "concept", "op": "is-a",
                                                                  "value": "care"}]}],
                         "exclude": [{"system": TREE, "concept": [{"code": "physio"}]}]}})
    reg.add({"resourceType": "ValueSet", "url": "http://example.org/vs/below-care", "status": "active",
             "compose": {"include": [{"system": TREE, "filter": [{"property": "concept", "op": "descendent-of",
                                                                  "value": "care"}]}]}})
    reg.add({"resourceType": "ValueSet", "url": "http://example.org/vs/all", "status": "active",
             "compose": {"include": [{"system": TREE}]}})
    reg.add({"resourceType": "ValueSet", "url": "http://example.org/vs/import", "status": "active",
             "compose": {"include": [{"valueSet": ["http://example.org/vs/all"], "system": TREE,
                                      "filter": [{"property": "status", "op": "=", "value": "retired"}]}]}})
    reg.add({"resourceType": "ConceptMap", "url": "http://example.org/cm", "status": "active",
             "sourceUri": "http://example.org/vs/all", "targetUri": THEMATIC,
             "group": [{"source": TREE, "target": "https://fhir.coordination-sante.fr/CodeSystem/coord-careplan-thematic",
                        "element": [{"code": "social", "target": [{"code": "social", "equivalence": "equivalent"}]}],
                        "unmapped": {"mode": "fixed", "code": "autre"}}]})
    return reg


def codes(expansion: dict[str, Any]) -> list[str]:
    return [c["code"] for c in expansion["expansion"]["contains"]]


def param(parameters: dict[str, Any], name: str) -> Any:
    found = [p for p in parameters["parameter"] if p["name"] == name]
    assert found, name
    return next(v for k, v in found[0].items() if k.startswith("value") or k == "part")


def test_expand_shipped_value_set_lists_its_codes(registry: ConformanceRegistry) -> None:
    result = expand(registry, GENDER_INS)
    assert codes(result) == ["male", "female", "unknown"]
    assert result["expansion"]["total"] == 3 and "compose" not in result


def test_expand_text_filter_ignores_case_and_accents(registry: ConformanceRegistry) -> None:
    assert codes(expand(registry, THEMATIC, filter="GERONTO")) == ["gerontologie"]
    assert codes(expand(registry, THEMATIC, filter="gérontologie")) == ["gerontologie"]


def test_expand_pages_with_count_and_offset(registry: ConformanceRegistry) -> None:
    full = codes(expand(registry, THEMATIC))
    page = expand(registry, THEMATIC, count=2, offset=1)
    assert codes(page) == full[1:3] and page["expansion"]["total"] == len(full)


def test_expand_is_a_filter_with_exclude(registry: ConformanceRegistry) -> None:
    assert codes(expand(registry, "http://example.org/vs/care")) == ["care", "nursing"]


def test_expand_descendent_of_excludes_the_root(registry: ConformanceRegistry) -> None:
    assert sorted(codes(expand(registry, "http://example.org/vs/below-care"))) == ["nursing", "physio"]


def test_expand_whole_local_code_system(registry: ConformanceRegistry) -> None:
    assert codes(expand(registry, "http://example.org/vs/all")) == ["care", "nursing", "physio", "social"]


def test_expand_value_set_import_intersects_with_the_filter(registry: ConformanceRegistry) -> None:
    assert codes(expand(registry, "http://example.org/vs/import")) == ["social"]


def test_expand_unknown_value_set_is_not_found(registry: ConformanceRegistry) -> None:
    with pytest.raises(FhirError) as caught:
        expand(registry, "http://example.org/nope")
    assert caught.value.status == 404


def test_expand_value_set_on_external_system_is_refused(registry: ConformanceRegistry) -> None:
    with pytest.raises(FhirError) as caught:
        expand(registry, "http://hl7.org/fhir/ValueSet/mimetypes")
    assert caught.value.status == 400 and "cannot be expanded" in str(caught.value)
    assert value_set_membership(registry, "http://hl7.org/fhir/ValueSet/mimetypes") is None


def test_validate_code_in_value_set(registry: ConformanceRegistry) -> None:
    ok = validate_code(registry, GENDER_INS, "female", "http://hl7.org/fhir/administrative-gender")
    assert param(ok, "result") is True and param(ok, "display") == "Female"
    bad = validate_code(registry, GENDER_INS, "other", "http://hl7.org/fhir/administrative-gender")
    assert param(bad, "result") is False and "not in the value set" in param(bad, "message")


def test_validate_code_with_wrong_display_fails(registry: ConformanceRegistry) -> None:
    result = validate_code(registry, THEMATIC, "oncologie", None, display="Cardiologie")
    assert param(result, "result") is False
    assert param(validate_code(registry, THEMATIC, "oncologie", None, display="ONCOLOGIE"), "result") is True


def test_validate_code_against_a_code_system(registry: ConformanceRegistry) -> None:
    assert param(validate_code(registry, None, "10", G15), "result") is True
    assert param(validate_code(registry, None, "9999", G15), "result") is False


def test_lookup_returns_display_designations_and_hierarchy(registry: ConformanceRegistry) -> None:
    result = lookup(registry, TREE, "nursing")
    assert param(result, "name") == "Tree" and param(result, "version") == "1"
    assert param(result, "display") == "Soins infirmiers"
    designation = param(result, "designation")
    assert {"name": "value", "valueString": "Nursing"} in designation
    properties = [p["part"] for p in result["parameter"] if p["name"] == "property"]
    assert [{"name": "code", "valueCode": "parent"}, {"name": "value", "valueCode": "care"}] in properties


def test_lookup_on_shipped_code_system(registry: ConformanceRegistry) -> None:
    assert param(lookup(registry, G15, "10"), "display") == "Médecin"


def test_lookup_unknown_code_or_system_is_not_found(registry: ConformanceRegistry) -> None:
    for system, code in ((TREE, "nope"), ("http://example.org/none", "x")):
        with pytest.raises(FhirError) as caught:
            lookup(registry, system, code)
        assert caught.value.status == 404


def test_translate_by_concept_map_url(registry: ConformanceRegistry) -> None:
    result = translate(registry, "http://example.org/cm", TREE, "social")
    assert param(result, "result") is True
    match = param(result, "match")
    assert {"name": "equivalence", "valueCode": "equivalent"} in match
    assert any(p.get("valueCoding", {}).get("code") == "social" for p in match)


def test_translate_by_source_and_target_uses_unmapped_fallback(registry: ConformanceRegistry) -> None:
    result = translate(registry, None, TREE, "care", source="http://example.org/vs/all", target=THEMATIC)
    match = param(result, "match")
    assert any(p.get("valueCoding", {}).get("code") == "autre" for p in match)


def test_translate_without_a_matching_map_is_not_found(registry: ConformanceRegistry) -> None:
    with pytest.raises(FhirError) as caught:
        translate(registry, None, TREE, "care", source="http://example.org/other")
    assert caught.value.status == 404
    with pytest.raises(FhirError):
        translate(registry, "http://example.org/cm", TREE, None)


def test_malformed_value_set_is_invalid_not_a_crash(registry: ConformanceRegistry) -> None:
    broken = {"resourceType": "ValueSet", "url": "http://example.org/vs/broken", "status": "active",
              "compose": {"include": [{"system": TREE, "filter": [{"property": "concept", "op": "regex",
                                                                   "value": "(["}]}]}}
    with pytest.raises(FhirError) as caught:
        expand(registry, broken)
    assert caught.value.status == 400


def test_value_set_given_inline_or_by_its_expansion_only(registry: ConformanceRegistry) -> None:
    inline = {"resourceType": "ValueSet", "status": "active",
              "compose": {"include": [{"system": TREE, "concept": [{"code": "social"}]}]}}
    assert codes(expand(registry, inline)) == ["social"]
    assert param(validate_code(registry, inline, "social", TREE), "display") == "Social"
    expanded = {"resourceType": "ValueSet", "url": "http://example.org/vs/pre-expanded", "status": "active",
                "expansion": {"timestamp": "2024-01-01", "contains": [
                    {"system": TREE, "code": "care", "display": "Soins",
                     "contains": [{"system": TREE, "code": "nursing", "display": "Soins infirmiers"}]}]}}
    assert codes(expand(registry, expanded, filter="infirm")) == ["nursing"]
