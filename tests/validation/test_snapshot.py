"""Snapshot generation from differentials over the R4 base (and over other profiles)."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_server.errors import FhirError
from fhir_server.validation.conformance import DEFAULT_PROFILES_DIR, ConformanceRegistry, _read_dir
from fhir_server.validation.snapshot import strip_slices

BASE = "http://example.org/fhir/StructureDefinition/"


@pytest.fixture(scope="module")
def registry() -> ConformanceRegistry:
    return ConformanceRegistry(profiles_dir=None)


@pytest.fixture(scope="module")
def shipped() -> ConformanceRegistry:
    return ConformanceRegistry()


def profile(id_: str, type_: str, elements: list[dict[str, Any]], base: str | None = None) -> dict[str, Any]:
    return {
        "resourceType": "StructureDefinition",
        "id": id_,
        "url": BASE + id_,
        "name": id_,
        "status": "draft",
        "kind": "complex-type" if type_ == "Extension" else "resource",
        "abstract": False,
        "type": type_,
        "baseDefinition": base or f"http://hl7.org/fhir/StructureDefinition/{type_}",
        "derivation": "constraint",
        "differential": {"element": elements},
    }


def by_id(registry: ConformanceRegistry, url: str) -> dict[str, dict[str, Any]]:
    snapshot = registry.snapshot(url)
    assert snapshot is not None
    return {el["id"]: el for el in snapshot}


def test_cardinality_narrowing_and_must_support_override_the_base(registry: ConformanceRegistry) -> None:
    registry.add(profile("p-card", "Patient", [
        {"id": "Patient", "path": "Patient"},
        {"id": "Patient.birthDate", "path": "Patient.birthDate", "min": 1, "mustSupport": True},
        {"id": "Patient.name", "path": "Patient.name", "max": "1"},
    ]))
    els = by_id(registry, BASE + "p-card")
    assert (els["Patient.birthDate"]["min"], els["Patient.birthDate"]["mustSupport"]) == (1, True)
    assert els["Patient.name"]["max"] == "1"
    assert els["Patient.name"]["type"] == [{"code": "HumanName"}]  # untouched keys come from the base
    base = registry.snapshot("http://hl7.org/fhir/StructureDefinition/Patient")
    assert base is not None and next(e for e in base if e["id"] == "Patient.birthDate")["min"] == 0


def test_slice_is_created_with_the_datatype_children_after_the_sliced_element(registry: ConformanceRegistry) -> None:
    registry.add(profile("p-slice", "Patient", [
        {"id": "Patient.identifier", "path": "Patient.identifier",
         "slicing": {"discriminator": [{"type": "value", "path": "system"}], "rules": "open"}},
        {"id": "Patient.identifier:INS-NIR", "path": "Patient.identifier", "sliceName": "INS-NIR", "max": "1"},
        {"id": "Patient.identifier:INS-NIR.system", "path": "Patient.identifier.system", "min": 1,
         "fixedUri": "urn:oid:1.2.250.1.213.1.4.8"},
    ]))
    snapshot = registry.snapshot(BASE + "p-slice")
    assert snapshot is not None
    ids = [el["id"] for el in snapshot]
    els = {el["id"]: el for el in snapshot}
    assert els["Patient.identifier:INS-NIR.system"]["fixedUri"] == "urn:oid:1.2.250.1.213.1.4.8"
    assert els["Patient.identifier:INS-NIR.system"]["path"] == "Patient.identifier.system"
    assert els["Patient.identifier:INS-NIR"]["sliceName"] == "INS-NIR"
    assert "slicing" not in els["Patient.identifier:INS-NIR"]
    assert ids.index("Patient.identifier") < ids.index("Patient.identifier:INS-NIR") < ids.index("Patient.active")
    assert "Patient.identifier:INS-NIR.assigner" in els  # the whole Identifier was expanded


def test_constraints_are_appended_to_the_inherited_ones(registry: ConformanceRegistry) -> None:
    registry.add(profile("p-inv", "Patient", [
        {"id": "Patient", "path": "Patient",
         "constraint": [{"key": "p-1", "severity": "error", "human": "name or identifier",
                         "expression": "name.exists() or identifier.exists()"}]},
    ]))
    keys = [c["key"] for c in by_id(registry, BASE + "p-inv")["Patient"]["constraint"]]
    assert keys[:2] == ["dom-2", "dom-3"] and keys[-1] == "p-1"


def test_choice_element_named_by_type_restricts_the_choice(registry: ConformanceRegistry) -> None:
    registry.add(profile("p-choice", "Patient", [
        {"id": "Patient.deceasedBoolean", "path": "Patient.deceasedBoolean", "min": 1},
    ]))
    el = by_id(registry, BASE + "p-choice")["Patient.deceased[x]"]
    assert el["min"] == 1 and [t["code"] for t in el["type"]] == ["boolean"]


def test_profile_on_a_profile_starts_from_the_parent_snapshot(registry: ConformanceRegistry) -> None:
    registry.add(profile("p-parent", "Patient", [{"id": "Patient.gender", "path": "Patient.gender", "min": 1}]))
    registry.add(profile("p-child", "Patient", [{"id": "Patient.birthDate", "path": "Patient.birthDate", "min": 1}],
                         base=BASE + "p-parent"))
    els = by_id(registry, BASE + "p-child")
    assert els["Patient.gender"]["min"] == 1 and els["Patient.birthDate"]["min"] == 1


def test_extension_slice_children_come_from_the_extension_profile(registry: ConformanceRegistry) -> None:
    registry.add(profile("ext-code", "Extension", [
        {"id": "Extension.url", "path": "Extension.url", "fixedUri": BASE + "ext-code"},
        {"id": "Extension.value[x]", "path": "Extension.value[x]", "type": [{"code": "code"}]},
    ]))
    registry.add(profile("p-ext", "Patient", [
        {"id": "Patient.extension:code", "path": "Patient.extension", "sliceName": "code", "min": 1,
         "type": [{"code": "Extension", "profile": [BASE + "ext-code"]}]},
        {"id": "Patient.extension:code.value[x]", "path": "Patient.extension.value[x]", "min": 1},
    ]))
    els = by_id(registry, BASE + "p-ext")
    assert els["Patient.extension:code.url"]["fixedUri"] == BASE + "ext-code"
    assert els["Patient.extension:code.value[x]"]["type"] == [{"code": "code"}]
    assert els["Patient.extension:code.value[x]"]["min"] == 1


def test_differential_path_outside_the_base_is_rejected(registry: ConformanceRegistry) -> None:
    registry.add(profile("p-bad", "Patient", [{"id": "Patient.nonsense", "path": "Patient.nonsense", "min": 1}]))
    with pytest.raises(FhirError) as caught:
        registry.snapshot(BASE + "p-bad")
    assert "Patient.nonsense" in str(caught.value)


def test_strip_slices_gives_the_element_path() -> None:
    assert strip_slices("Patient.identifier:INS-NIR.type.coding:a") == "Patient.identifier.type.coding"


def _normalised(diff_id: str, ids: set[str]) -> str:
    # Choice elements named by type (`value[x]:valueCoding`, `valueCoding`) live under `value[x]`.
    parts: list[str] = []
    for part in diff_id.split("."):
        name, _, slice_name = part.partition(":")
        if name.endswith("[x]") and slice_name.startswith(name[:-3]):
            part = name
        prefix = ".".join(parts)
        if f"{prefix}.{part}" not in ids:
            part = next((i.rsplit(".", 1)[1] for i in ids if i.startswith(prefix + ".") and i.endswith("[x]")
                         and i.count(".") == prefix.count(".") + 1 and name.startswith(i.rsplit(".", 1)[1][:-3])),
                        part)
        parts.append(part)
    return ".".join(parts)


def _shipped_profiles() -> list[str]:
    return sorted(r["url"] for r in _read_dir(DEFAULT_PROFILES_DIR)
                  if r.get("resourceType") == "StructureDefinition" and r.get("differential"))


@pytest.mark.parametrize("url", _shipped_profiles())
def test_every_shipped_profile_has_a_snapshot_holding_its_differential(url: str, shipped: ConformanceRegistry) -> None:
    sd = shipped.structure_definition(url)
    snapshot = shipped.snapshot(url)
    assert sd is not None and snapshot is not None
    ids = {el["id"] for el in snapshot}
    for diff in sd["differential"]["element"]:
        assert _normalised(diff.get("id") or diff["path"], ids) in ids


def test_regenerated_snapshots_of_core_constraint_definitions_match_the_published_ones(
    registry: ConformanceRegistry,
) -> None:
    # The R4 core extensions (and profiles) ship both a differential and HL7's own snapshot.
    from fhir_server.definitions import structure_definitions
    from fhir_server.validation.snapshot import generate_snapshot

    checked, mismatches = 0, []
    for url, sd in structure_definitions().items():
        if sd.get("derivation") != "constraint" or not sd.get("differential") or not sd.get("snapshot"):
            continue
        checked += 1
        published = {el["id"]: el for el in sd["snapshot"]["element"]}
        generated = {el["id"]: el for el in generate_snapshot(sd, registry.snapshot)}
        if set(published) != set(generated):
            mismatches.append((url, sorted(set(published) ^ set(generated))[:3]))
            continue
        for el_id, el in published.items():
            mine = generated[el_id]
            for key in ("min", "max", "fixedUri"):
                if el.get(key) != mine.get(key):
                    mismatches.append((url, el_id, key))
            if [t.get("code") for t in el.get("type", [])] != [t.get("code") for t in mine.get("type", [])]:
                mismatches.append((url, el_id, "type"))
    assert checked > 300
    assert mismatches == []


def test_path_below_a_content_reference_expands_the_referenced_base_structure(registry: ConformanceRegistry) -> None:
    registry.add(profile("q-nested", "Questionnaire", [
        {"id": "Questionnaire.item", "path": "Questionnaire.item", "min": 1},
        {"id": "Questionnaire.item.item.text", "path": "Questionnaire.item.item.text", "min": 1},
    ]))
    els = by_id(registry, BASE + "q-nested")
    assert els["Questionnaire.item.item.text"]["min"] == 1
    assert "contentReference" not in els["Questionnaire.item.item"]
    # The copy is the base's item, not this profile's (whose min is 1).
    assert els["Questionnaire.item.item"]["min"] == 0
    assert els["Questionnaire.item.item.item"]["contentReference"] == "#Questionnaire.item"


def test_contradicting_an_inherited_fixed_value_is_rejected(registry: ConformanceRegistry) -> None:
    registry.add(profile("ext-fixed-base", "Extension", [
        {"id": "Extension.url", "path": "Extension.url", "fixedUri": BASE + "ext-fixed-base"},
    ]))
    registry.add(profile("ext-fixed", "Extension", [
        {"id": "Extension.url", "path": "Extension.url", "fixedUri": BASE + "ext-other"},
    ], base=BASE + "ext-fixed-base"))
    with pytest.raises(FhirError) as caught:
        registry.snapshot(BASE + "ext-fixed")
    assert "contradicts" in str(caught.value)
