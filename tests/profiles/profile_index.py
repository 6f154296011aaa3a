"""Loads profiles/, examples/pathway/ and tests/profiles/data/ once for the data-level tests.

FHIR R4 StructureDefinition: https://hl7.org/fhir/R4/structuredefinition.html

Shared by the test modules of this folder; it checks nothing itself.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fhirpathpy import evaluate
from fhirpathpy.models import models

ROOT = Path(__file__).resolve().parents[2]
PROFILES = ROOT / "profiles"
PATHWAY = ROOT / "examples" / "pathway"
DATA = ROOT / "tests" / "profiles" / "data"
R4_MODEL = models["r4"]  # choice types (value[x]) only resolve with the R4 model


def load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def files(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.json")) if folder.exists() else []


RESOURCES: dict[str, dict] = {p.name: load(p) for p in files(PROFILES)}
CANONICALS: dict[str, dict] = {r["url"]: r for r in RESOURCES.values() if "url" in r}
PATHWAY_RESOURCES: dict[str, dict] = {p.name: load(p) for p in files(PATHWAY)}


def profile_chain(url: str) -> list[dict]:
    """The StructureDefinition at url and its ancestors that we ship, most derived first."""
    chain = []
    current = CANONICALS.get(url.split("|", 1)[0])
    while current is not None and current.get("resourceType") == "StructureDefinition":
        chain.append(current)
        current = CANONICALS.get(current["baseDefinition"].split("|", 1)[0])
    return chain


def invariants(url: str) -> list[dict]:
    """Constraints declared on the root element of the profile and its shipped ancestors."""
    found = []
    for sd in profile_chain(url):
        for element in sd["differential"]["element"]:
            if element["id"] == sd["type"]:
                found.extend(element.get("constraint", []))
    return found


def slice_names(url: str) -> set[str]:
    return {e["sliceName"] for sd in profile_chain(url) for e in sd["differential"]["element"] if "sliceName" in e}


def holds(resource: dict, expression: str) -> bool:
    """Evaluate a root-level invariant the way a validator would: empty counts as satisfied."""
    result = evaluate(resource, expression, {}, R4_MODEL)
    return all(item is True for item in result)


def references(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        if isinstance(value.get("reference"), str):
            yield value["reference"]
        for child in value.values():
            yield from references(child)
    elif isinstance(value, list):
        for child in value:
            yield from references(child)


def data_cases() -> list[tuple[str, Path]]:
    """(profile id, file) for every valid-*/invalid-* file of tests/profiles/data."""
    return [(p.parent.name, p) for p in files(DATA) if p.name != "expected.json"]
