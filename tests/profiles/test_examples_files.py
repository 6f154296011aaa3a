"""Data-level checks of examples/pathway/ and of the per-profile validator fixtures in tests/profiles/data/.

FHIR R4 references: https://hl7.org/fhir/R4/references.html

The example pathway must be self-contained (every Type/id reference resolves to a file), claim
shipped profiles, satisfy every invariant of those profiles and carry identifiers with valid
French check keys. Each invalid fixture breaks one rule, described in its folder's expected.json.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
from fhirpathpy import evaluate
from profile_index import (
    CANONICALS,
    DATA,
    PATHWAY_RESOURCES,
    R4_MODEL,
    data_cases,
    holds,
    invariants,
    load,
    references,
    slice_names,
)

from fhir_server.validation.fr_identifiers import check_identifier

NAMES = sorted(PATHWAY_RESOURCES)
RULES = {"cardinality", "slice-cardinality", "fixed", "pattern", "binding", "reference", "invariant"}
INS_SYSTEMS = {f"urn:oid:1.2.250.1.213.1.4.{n}" for n in (8, 9, 10, 11)}
REFERENCE_TYPES = {
    "Patient",
    "Practitioner",
    "PractitionerRole",
    "Organization",
    "RelatedPerson",
    "CareTeam",
    "CarePlan",
    "ServiceRequest",
    "Task",
    "Consent",
    "Provenance",
}


def _model(resource: dict):
    module = importlib.import_module(f"fhir.resources.R4B.{resource['resourceType'].lower()}")
    return getattr(module, resource["resourceType"])


def _identifiers(system: str) -> list[tuple[str, dict]]:
    return [
        (name, ident)
        for name, res in PATHWAY_RESOURCES.items()
        for ident in res.get("identifier", [])
        if ident.get("system") == system
    ]


def test_pathway_holds_the_whole_story() -> None:
    types = {res["resourceType"] for res in PATHWAY_RESOURCES.values()}
    assert REFERENCE_TYPES <= types
    assert sum(res["resourceType"] == "ServiceRequest" for res in PATHWAY_RESOURCES.values()) >= 4


@pytest.mark.parametrize("name", NAMES)
def test_pathway_file_is_named_after_type_and_id(name: str) -> None:
    res = PATHWAY_RESOURCES[name]
    assert name == f"{res['resourceType']}-{res['id']}.json"


@pytest.mark.parametrize("name", NAMES)
def test_pathway_resource_parses_with_the_r4b_models(name: str) -> None:
    res = PATHWAY_RESOURCES[name]
    assert _model(res).model_validate(res).id == res["id"]


@pytest.mark.parametrize("name", NAMES)
def test_pathway_resource_claims_shipped_profiles(name: str) -> None:
    profiles = PATHWAY_RESOURCES[name]["meta"]["profile"]
    assert profiles and all(CANONICALS[url]["type"] == PATHWAY_RESOURCES[name]["resourceType"] for url in profiles)


@pytest.mark.parametrize("name", NAMES)
def test_pathway_references_resolve_to_files_of_the_folder(name: str) -> None:
    for ref in references(PATHWAY_RESOURCES[name]):
        res_type, _, res_id = ref.partition("/")
        assert f"{res_type}-{res_id}.json" in PATHWAY_RESOURCES, ref


@pytest.mark.parametrize("name", NAMES)
def test_pathway_resource_satisfies_the_invariants_of_its_profiles(name: str) -> None:
    res = PATHWAY_RESOURCES[name]
    for url in res["meta"]["profile"]:
        for constraint in invariants(url):
            assert holds(res, constraint["expression"]), constraint["key"]


def _type_code(ident: dict) -> str | None:
    codes = [c.get("code") for c in ident.get("type", {}).get("coding", [])]
    return codes[0] if codes else None


@pytest.mark.parametrize("name", [n for n in NAMES if PATHWAY_RESOURCES[n].get("identifier")])
def test_pathway_identifiers_pass_the_french_identifier_checks(name: str) -> None:
    for ident in PATHWAY_RESOURCES[name]["identifier"]:
        assert check_identifier(ident["system"], ident["value"], _type_code(ident)) == [], ident


def test_pathway_covers_every_french_identifier_kind() -> None:
    systems = {ident["system"] for res in PATHWAY_RESOURCES.values() for ident in res.get("identifier", [])}
    assert {
        "urn:oid:1.2.250.1.213.1.4.10",
        "https://rpps.esante.gouv.fr",
        "urn:oid:1.2.250.1.71.4.2.1",
        "https://finess.esante.gouv.fr",
        "https://sirene.fr",
        "urn:oid:1.2.250.1.71.4.2.2",
    } <= systems


def test_pathway_idnatps_is_8_plus_the_rpps_of_the_same_practitioner() -> None:
    rpps = _identifiers("https://rpps.esante.gouv.fr")
    assert len(rpps) >= 4
    for name, ident in rpps:
        idnat = [
            i["value"] for i in PATHWAY_RESOURCES[name]["identifier"] if i["system"] == "urn:oid:1.2.250.1.71.4.2.1"
        ]
        assert idnat == ["8" + ident["value"]], name


def test_pathway_idnatstruct_is_prefix_plus_finess_or_siret() -> None:
    for name, ident in _identifiers("urn:oid:1.2.250.1.71.4.2.2"):
        others = {i["system"]: i["value"] for i in PATHWAY_RESOURCES[name]["identifier"]}
        expected = {"1" + others.get("https://finess.esante.gouv.fr", ""), "3" + others.get("https://sirene.fr", "")}
        assert ident["value"] in expected, name


@pytest.mark.parametrize(
    ("code", "name", "expected"),
    [
        ("ins", "Patient-patient-durand.json", 1),
        ("rpps", "Practitioner-pr-bernard.json", 1),
        ("idnatps", "Practitioner-pr-bernard.json", 1),
        ("finess", "Organization-org-had-rhone.json", 1),
        ("siret", "Organization-org-dac-rhone-est.json", 1),
        ("thematic", "CarePlan-careplan-durand-ppcs.json", 2),
        ("participant-start", "CareTeam-careteam-durand.json", 8),
        ("participant-end", "CareTeam-careteam-durand.json", 1),
        ("birthplace", "Patient-patient-durand.json", 1),
    ],
)
def test_search_parameters_extract_the_expected_values_from_the_pathway(code: str, name: str, expected: int) -> None:
    res = PATHWAY_RESOURCES[name]
    params = [
        r
        for r in CANONICALS.values()
        if r["resourceType"] == "SearchParameter" and r["code"] == code and res["resourceType"] in r["base"]
    ]
    assert len(params) == 1
    assert len(evaluate(res, params[0]["expression"], {}, R4_MODEL)) == expected


def test_ins_search_parameter_ignores_the_billing_nir() -> None:
    patient = dict(PATHWAY_RESOURCES["Patient-patient-durand.json"])
    nss = {
        "use": "official",
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "NH"}]},
        "system": "urn:oid:1.2.250.1.213.1.4.8",
        "value": "248036938312328",
    }
    patient["identifier"] = [nss]
    param = CANONICALS["https://fhir.coordination-sante.fr/SearchParameter/fr-patient-ins"]
    assert evaluate(patient, param["expression"], {}, R4_MODEL) == []


# ------------------------------------------------------------------ validator fixtures

FOLDERS = sorted(p.name for p in DATA.iterdir() if p.is_dir()) if DATA.exists() else []


def _expected(folder: str) -> dict:
    return load(DATA / folder / "expected.json")


def _profile_url(folder: str) -> str:
    urls = [u for u, r in CANONICALS.items() if r.get("resourceType") == "StructureDefinition" and r["id"] == folder]
    assert len(urls) == 1, folder
    return urls[0]


@pytest.mark.parametrize("folder", FOLDERS)
def test_fixture_folder_has_valid_files_and_lists_every_invalid_one(folder: str) -> None:
    names = {p.name for p in (DATA / folder).glob("*.json")} - {"expected.json"}
    assert any(n.startswith("valid-") for n in names)
    assert {n for n in names if n.startswith("invalid-")} == set(_expected(folder))
    assert all(n.startswith(("valid-", "invalid-")) for n in names)


@pytest.mark.parametrize("folder", FOLDERS)
def test_expected_issues_name_a_path_a_known_rule_and_existing_keys_and_slices(folder: str) -> None:
    url = _profile_url(folder)
    keys = {c["key"] for c in invariants(url)}
    for name, issue in _expected(folder).items():
        assert issue["path"].split(".")[0] == CANONICALS[url]["type"], name
        assert issue["rule"] in RULES and issue["reason"], name
        assert issue["rule"] != "invariant" or issue["key"] in keys, name
        assert "slice" not in issue or issue["slice"] in slice_names(url), name


@pytest.mark.parametrize(("folder", "path"), data_cases(), ids=[f"{f}/{p.name}" for f, p in data_cases()])
def test_fixture_claims_its_folder_profile_and_parses(folder: str, path: Path) -> None:
    res = load(path)
    issue = _expected(folder).get(path.name, {})
    if issue.get("meta_profile", True):
        assert res["meta"]["profile"] == [_profile_url(folder)]
    assert res["resourceType"] == CANONICALS[_profile_url(folder)]["type"]
    assert _model(res).model_validate(res).get_resource_type() == res["resourceType"]


@pytest.mark.parametrize(
    ("folder", "path"),
    [c for c in data_cases() if c[1].name.startswith("valid-")],
    ids=[f"{f}/{p.name}" for f, p in data_cases() if p.name.startswith("valid-")],
)
def test_valid_fixture_identifiers_pass_the_french_identifier_checks(folder: str, path: Path) -> None:
    for ident in load(path).get("identifier", []):
        assert check_identifier(ident["system"], ident["value"], _type_code(ident)) == [], ident


@pytest.mark.parametrize(("folder", "path"), data_cases(), ids=[f"{f}/{p.name}" for f, p in data_cases()])
def test_fixture_invariants_fail_only_where_expected(folder: str, path: Path) -> None:
    res = load(path)
    broken = _expected(folder).get(path.name, {}).get("key")
    for constraint in invariants(_profile_url(folder)):
        assert holds(res, constraint["expression"]) is (constraint["key"] != broken), constraint["key"]
