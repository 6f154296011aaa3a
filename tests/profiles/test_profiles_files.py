"""Data-level checks of the conformance resources in profiles/ (no validator involved).

FHIR R4 conformance resources: https://hl7.org/fhir/R4/structuredefinition.html

These tests keep the shipped JSON coherent: file names match ids and canonical URLs, versions
follow the guide that owns each resource, canonical references between our files resolve, codes
used in patterns and value sets exist, every FHIRPath expression compiles with fhirpathpy, and
the ImplementationGuide lists everything.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fhirpathpy import compile as fhirpath_compile
from profile_index import CANONICALS, DATA, PATHWAY, PROFILES, RESOURCES, ROOT, files, load

from fhir_server.definitions import structure_definition_for_type

OUR = "https://fhir.coordination-sante.fr"
FRC = "https://hl7.fr/ig/fhir/core"
CDS = "https://interop.esante.gouv.fr/ig/fhir/cds"
VERSIONS = {OUR: "0.1.0", FRC: "2.1.0", CDS: "2.0.1"}
# Canonicals we reference on purpose without shipping them; docs/profiles.md lists them.
EXTERNAL = {
    "https://interop.esante.gouv.fr/ig/fhir/annuaire/StructureDefinition/as-practitionerrole",
    "https://interop.esante.gouv.fr/ig/fhir/cds/StructureDefinition/cds-organization",
    "https://hl7.fr/ig/fhir/core/ValueSet/fr-core-vs-insee-code",
}
CORE_PREFIXES = ("http://hl7.org/fhir/", "http://terminology.hl7.org/")

PROFILE_FILES = files(PROFILES)
ALL_JSON = PROFILE_FILES + files(PATHWAY) + files(DATA)
CODE_SYSTEMS = {r["url"]: r for r in RESOURCES.values() if r["resourceType"] == "CodeSystem"}


def _ids(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(ROOT)) for p in paths]


def _strip_version(canonical: str) -> str:
    return canonical.split("|", 1)[0]


def _resolves(canonical: str) -> bool:
    url = _strip_version(canonical)
    return url in CANONICALS or url in EXTERNAL or url.startswith(CORE_PREFIXES)


def _structure_definitions() -> list[dict]:
    return [r for r in RESOURCES.values() if r["resourceType"] == "StructureDefinition"]


def _canonical_refs(sd: dict) -> Iterator[tuple[str, str]]:
    yield "baseDefinition", sd["baseDefinition"]
    for element in sd["differential"]["element"]:
        for t in element.get("type", []):
            for key in ("profile", "targetProfile"):
                for url in t.get(key, []):
                    yield f"{element['id']}.{key}", url
        if "binding" in element:
            yield f"{element['id']}.binding", element["binding"]["valueSet"]


def _codings(value: Any) -> Iterator[dict]:
    if isinstance(value, dict):
        if "system" in value and "code" in value:
            yield value
        for child in value.values():
            yield from _codings(child)
    elif isinstance(value, list):
        for child in value:
            yield from _codings(child)


def _code_known(system: str, code: str) -> bool:
    concepts = CODE_SYSTEMS[system].get("concept", [])
    return any(c["code"] == code for c in concepts)


@pytest.mark.parametrize("path", ALL_JSON, ids=_ids(ALL_JSON))
def test_every_json_file_parses_as_an_object(path: Path) -> None:
    assert isinstance(load(path), dict)


@pytest.mark.parametrize("name", sorted(RESOURCES))
def test_profile_file_name_matches_resource_type_and_id(name: str) -> None:
    res = RESOURCES[name]
    assert name == f"{res['resourceType']}-{res['id']}.json"


@pytest.mark.parametrize("name", sorted(RESOURCES))
def test_canonical_url_and_version_follow_the_owning_guide(name: str) -> None:
    res = RESOURCES[name]
    url = res["url"]
    owner = next((base for base in VERSIONS if url.startswith(base + "/")), None)
    if owner is None:  # ANS nomenclatures keep their mos.esante.gouv.fr URL and dated version
        assert url.startswith("https://mos.esante.gouv.fr/NOS/") and re.fullmatch(r"\d{14}", res["version"])
        return
    assert url == f"{owner}/{res['resourceType']}/{res['id']}"
    if res["id"] != "fr-core-cs-identity-status":  # development-only code system, see its description
        assert res["version"] == VERSIONS[owner]


@pytest.mark.parametrize("sd", _structure_definitions(), ids=lambda sd: sd["id"])
def test_structure_definition_is_a_well_formed_differential(sd: dict) -> None:
    assert sd["fhirVersion"] == "4.0.1" and sd["derivation"] == "constraint"
    assert sd["status"] in ("active", "draft") and sd["description"]
    elements = sd["differential"]["element"]
    assert elements and "snapshot" not in sd
    seen: set[str] = set()
    for element in elements:
        expected_path = ".".join(part.split(":")[0] for part in element["id"].split("."))
        assert element["path"] == expected_path, element["id"]
        assert element["path"].split(".")[0] == sd["type"], element["id"]
        assert element["id"] not in seen, f"duplicate element {element['id']}"
        seen.add(element["id"])
        last = element["id"].split(".")[-1]
        assert element.get("sliceName") == (last.split(":", 1)[1] if ":" in last else None), element["id"]
    if sd["type"] == "Extension":
        assert sd["kind"] == "complex-type" and sd["context"]
        assert any(e["id"] == "Extension.url" and e.get("fixedUri") == sd["url"] for e in elements)


@pytest.mark.parametrize("sd", _structure_definitions(), ids=lambda sd: sd["id"])
def test_canonical_references_of_structure_definitions_resolve(sd: dict) -> None:
    unresolved = [(where, url) for where, url in _canonical_refs(sd) if not _resolves(url)]
    assert unresolved == []


@pytest.mark.parametrize("sd", _structure_definitions(), ids=lambda sd: sd["id"])
def test_slice_patterns_use_codes_that_exist_in_shipped_code_systems(sd: dict) -> None:
    for element in sd["differential"]["element"]:
        for key, value in element.items():
            if key.startswith(("pattern", "fixed")):
                for coding in _codings(value):
                    if coding["system"] in CODE_SYSTEMS:
                        assert _code_known(coding["system"], coding["code"]), (element["id"], coding)


@pytest.mark.parametrize(
    "vs", [r for r in RESOURCES.values() if r["resourceType"] == "ValueSet"], ids=lambda r: r["id"]
)
def test_value_set_includes_point_to_known_systems_and_codes(vs: dict) -> None:
    for include in vs["compose"]["include"]:
        system = include["system"]
        assert system in CODE_SYSTEMS or system.startswith(CORE_PREFIXES) or include.get("concept"), system
        if system in CODE_SYSTEMS:
            for concept in include.get("concept", []):
                assert _code_known(system, concept["code"]), (system, concept["code"])


def _fhirpath_expressions() -> list[tuple[str, str]]:
    found = []
    for res in RESOURCES.values():
        if res["resourceType"] == "SearchParameter":
            found.append((res["id"], res["expression"]))
        if res["resourceType"] == "StructureDefinition":
            for element in res["differential"]["element"]:
                found += [(f"{res['id']}:{c['key']}", c["expression"]) for c in element.get("constraint", [])]
    return found


@pytest.mark.parametrize(("where", "expression"), _fhirpath_expressions(), ids=[w for w, _ in _fhirpath_expressions()])
def test_fhirpath_expressions_compile_and_run_with_fhirpathpy(where: str, expression: str) -> None:
    compiled = fhirpath_compile(expression)
    assert isinstance(compiled({"resourceType": "Basic"}), list)


def test_constraint_keys_are_unique_across_our_profiles() -> None:
    keys = [w.split(":", 1)[1] for w, _ in _fhirpath_expressions() if ":" in w]
    assert len(keys) == len(set(keys))


def test_implementation_guide_lists_every_resource_of_profiles() -> None:
    ig = RESOURCES["ImplementationGuide-coordination.json"]
    listed = [r["reference"]["reference"] for r in ig["definition"]["resource"]]
    expected = {
        f"{r['resourceType']}/{r['id']}" for n, r in RESOURCES.items() if r["resourceType"] != "ImplementationGuide"
    }
    assert sorted(listed) == sorted(expected)
    assert {d["packageId"]: d["version"] for d in ig["dependsOn"]} == {
        "hl7.fhir.fr.core": "2.1.0",
        "ans.fhir.fr.cds": "2.0.1",
    }


def _top_level_rank(sd: dict) -> list[tuple[str, int]]:
    """(element id, index of its first-level element in the base snapshot) for every differential element."""
    base = structure_definition_for_type(sd["type"])
    assert base is not None, sd["type"]
    order = {e["path"]: i for i, e in enumerate(base["snapshot"]["element"])}
    ranks = []
    for element in sd["differential"]["element"]:
        parts = element["path"].split(".")
        ranks.append((element["id"], order[".".join(parts[:2])]))
    return ranks


@pytest.mark.parametrize("sd", _structure_definitions(), ids=lambda sd: sd["id"])
def test_differential_follows_the_element_order_of_the_base_resource(sd: dict) -> None:
    ranks = _top_level_rank(sd)
    assert [rank for _, rank in ranks] == sorted(rank for _, rank in ranks), ranks
