"""Validator verdicts on real content: the official R4 examples and the shipped profiles' examples."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import pytest

from fhir_server.fhir.json import loads
from fhir_server.validation.conformance import ConformanceRegistry

ROOT = Path(__file__).resolve().parents[2]
R4_EXAMPLES = ROOT / "tests" / "data" / "r4-examples.json.gz"
PROFILE_DATA = ROOT / "tests" / "profiles" / "data"

# Official examples that break their own base definition (checked by hand, see docs/validation.md).
KNOWN_BROKEN = {
    ("DeviceMetric", "example"): "parent references a DeviceDefinition; R4 allows Device only",
    ("DeviceUseStatement", "example"): "reasonReference points to a Procedure, not allowed in R4",
    ("ImplementationGuide", "fhir"): "lacks the required name and status",
    ("MedicationRequest", "medrx0301"): "dispenseRequest.performer references a Practitioner (Organization only)",
    ("Observation", "clinical-gender"): "performer references an Encounter",
    ("Questionnaire", "bb"): "que-7: an 'exists' enableWhen with a non-boolean answer",
    ("Questionnaire", "qs1"): "nested items without the required linkId",
    ("ActivityDefinition", "blood-tubes-supply"): "txt-2: empty narrative div",
    ("ActivityDefinition", "heart-valve-replacement"): "txt-2: empty narrative div",
    ("EventDefinition", "example"): "txt-2: empty narrative div",
    ("Questionnaire", "zika-virus-exposure-assessment"): "txt-2: narrative div holds only an empty <pre>",
}


@pytest.fixture(scope="module")
def registry() -> ConformanceRegistry:
    return ConformanceRegistry()


def _examples() -> list[dict[str, Any]]:
    if not R4_EXAMPLES.exists():
        return []
    return list(loads(gzip.decompress(R4_EXAMPLES.read_bytes())))


def test_official_r4_examples_have_no_errors_except_known_broken(registry: ConformanceRegistry) -> None:
    examples = _examples()
    if not examples:
        pytest.skip("tests/data/r4-examples.json.gz is not vendored")
    failing = {}
    for resource in examples:
        errors = [i for i in registry.validate(resource) if i["severity"] == "error"]
        if errors:
            failing[(resource["resourceType"], resource.get("id"))] = errors
    assert set(failing) == set(KNOWN_BROKEN), {k: v[:2] for k, v in failing.items() if k not in KNOWN_BROKEN}


def _profile_cases(prefix: str) -> list[tuple[str, Path]]:
    if not PROFILE_DATA.is_dir():
        return []
    return [(d.name, f) for d in sorted(PROFILE_DATA.iterdir()) if d.is_dir()
            for f in sorted(d.glob(f"{prefix}-*.json"))]


def _profile_url(registry: ConformanceRegistry, profile_id: str) -> str:
    found = [sd["url"] for sd in registry.all("StructureDefinition") if sd.get("id") == profile_id]
    assert found, f"no StructureDefinition with id {profile_id}"
    return found[0]


def _expected_paths(directory: Path, name: str) -> list[str]:
    expected = loads((directory / "expected.json").read_bytes())
    entry = expected.get(name) if isinstance(expected, dict) else None
    if entry is None:
        entry = expected.get(name.removesuffix(".json")) if isinstance(expected, dict) else None
    if isinstance(entry, dict):
        entry = entry.get("expression") or entry.get("path")
    assert entry, f"{directory.name}/expected.json has nothing for {name}"
    return [entry] if isinstance(entry, str) else list(entry)


@pytest.mark.parametrize(("profile_id", "path"), _profile_cases("valid"), ids=lambda v: getattr(v, "name", v))
def test_valid_profile_example_has_no_errors(registry: ConformanceRegistry, profile_id: str, path: Path) -> None:
    resource = loads(path.read_bytes())
    errors = [i for i in registry.validate(resource, [_profile_url(registry, profile_id)]) if i["severity"] == "error"]
    assert errors == []


@pytest.mark.parametrize(("profile_id", "path"), _profile_cases("invalid"), ids=lambda v: getattr(v, "name", v))
def test_invalid_profile_example_is_rejected_at_the_expected_path(
    registry: ConformanceRegistry, profile_id: str, path: Path
) -> None:
    resource = loads(path.read_bytes())
    issues = registry.validate(resource, [_profile_url(registry, profile_id)])
    found = {e for i in issues if i["severity"] == "error" for e in i.get("expression", [])}
    for expected in _expected_paths(path.parent, path.name):
        assert expected in found, (expected, issues)


_JUNK: list[Any] = [None, 1, True, "", "2020-99-99", [], {}, [None], [{}], {"reference": 5}, {"url": 3},
                    {"coding": "x"}, {"resourceType": "Nope"}, [{"url": None}], 2**40]


def _mutations(resource: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [path] if path else []
    if isinstance(resource, dict):
        items: Any = resource.items()
    else:
        items = enumerate(resource) if isinstance(resource, list) else ()
    for key, value in items:
        found += _mutations(value, (*path, key))
    return found


def test_validation_never_raises_on_mangled_resources(registry: ConformanceRegistry) -> None:
    import copy
    import random

    rng = random.Random(5)
    examples = [r for r in _examples() if len(str(r)) < 20000][:200]
    if PROFILE_DATA.is_dir():
        examples += [loads(p.read_bytes()) for p in sorted(PROFILE_DATA.glob("*/valid-*.json"))]
    if not examples:
        pytest.skip("no example to mangle")
    for _ in range(600):
        resource = copy.deepcopy(rng.choice(examples))
        paths = _mutations(resource)
        if not paths:
            continue
        *parents, last = rng.choice(paths)
        target = resource
        for key in parents:
            target = target[key]
        target[last] = copy.deepcopy(rng.choice(_JUNK))
        profiles = (resource.get("meta") or {}).get("profile") if isinstance(resource.get("meta"), dict) else None
        for issue in registry.validate(resource, profiles if isinstance(profiles, list) else None):
            assert issue["severity"] in ("error", "warning", "information") and issue["diagnostics"]
