"""URI search on both databases: exact, :below, :above, :missing."""

from __future__ import annotations

from typing import Any

import pytest

CASES = [
    ("ValueSet", "url=http://example.org/fhir/ValueSet/bp", ["vs1"]),
    ("ValueSet", "url=http://example.org/fhir/ValueSet/b", []),
    ("ValueSet", "url:below=http://example.org/fhir/ValueSet", ["vs1", "vs2"]),
    ("ValueSet", "url:below=http://example.org/fhir/CodeSystem", []),
    ("ValueSet", "url:above=http://example.org/fhir/ValueSet/bp/v2", ["vs1"]),
    ("ValueSet", "url:above=http://example.org/other/ValueSet/bp", []),
    ("ValueSet", "url:missing=false", ["vs1", "vs2"]),
    ("ValueSet", "url:missing=true", []),
    ("Patient", "_profile=http://example.org/fhir/StructureDefinition/fr-patient", ["p1"]),
    ("Patient", "_profile=http://example.org/fhir/StructureDefinition/other", []),
    ("Patient", "_source=http://ehr.example.org", ["p1"]),
    ("Patient", "_source=http://other.example.org", []),
]


@pytest.mark.parametrize(("res_type", "qs", "expected"), CASES)
def test_uri_search(find: Any, res_type: str, qs: str, expected: list[str]) -> None:
    assert find(res_type, qs) == expected
