"""Number and quantity search on both databases: prefixes with implicit precision, units, :missing."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_server.errors import FhirError

# ra1 probability 0.25; o1 120 mm[Hg], o2 150 mm[Hg]
CASES = [
    ("RiskAssessment", "probability=0.25", ["ra1"]),
    ("RiskAssessment", "probability=0.3", ["ra1"]),  # 0.3 means [0.25, 0.35)
    ("RiskAssessment", "probability=0.30", []),
    ("RiskAssessment", "probability=ne0.25", []),
    ("RiskAssessment", "probability=ne0.5", ["ra1"]),
    ("RiskAssessment", "probability=gt0.2", ["ra1"]),
    ("RiskAssessment", "probability=gt0.25", []),
    ("RiskAssessment", "probability=lt0.3", ["ra1"]),
    ("RiskAssessment", "probability=lt0.25", []),
    ("RiskAssessment", "probability=ge0.25", ["ra1"]),
    ("RiskAssessment", "probability=ge0.26", []),
    ("RiskAssessment", "probability=le0.25", ["ra1"]),
    ("RiskAssessment", "probability=le0.24", []),
    ("RiskAssessment", "probability=sa0.2", ["ra1"]),
    ("RiskAssessment", "probability=sa0.25", []),
    ("RiskAssessment", "probability=eb0.3", ["ra1"]),
    ("RiskAssessment", "probability=eb0.25", []),
    ("RiskAssessment", "probability=ap0.27", ["ra1"]),
    ("RiskAssessment", "probability=ap0.5", []),
    ("RiskAssessment", "probability:missing=false", ["ra1"]),
    ("RiskAssessment", "probability:missing=true", []),
    # quantity
    ("Observation", "value-quantity=120", ["o1"]),
    ("Observation", "value-quantity=121", []),
    ("Observation", "value-quantity=1.2e2", ["o1"]),
    ("Observation", "value-quantity=gt130", ["o2"]),
    ("Observation", "value-quantity=gt150", []),
    ("Observation", "value-quantity=lt130", ["o1"]),
    ("Observation", "value-quantity=ge150", ["o2"]),
    ("Observation", "value-quantity=le119", []),
    ("Observation", "value-quantity=ne120", ["o2"]),
    ("Observation", "value-quantity=ap125", ["o1"]),
    ("Observation", "value-quantity=sa149", ["o2"]),
    ("Observation", "value-quantity=eb121", ["o1"]),
    ("Observation", "value-quantity=120|http://unitsofmeasure.org|mm[Hg]", ["o1"]),
    ("Observation", "value-quantity=120|http://unitsofmeasure.org|kPa", []),
    ("Observation", "value-quantity=gt100||mm[Hg]", ["o1", "o2"]),
    ("Observation", "value-quantity=gt100|http://example.org|mm[Hg]", []),
    ("Observation", "component-value-quantity=80", ["o1", "o2"]),
    ("Observation", "value-quantity:missing=true", ["o3", "o4"]),
]


@pytest.mark.parametrize(("res_type", "qs", "expected"), CASES)
def test_number_and_quantity_search(find: Any, res_type: str, qs: str, expected: list[str]) -> None:
    assert find(res_type, qs) == expected


@pytest.mark.parametrize("value", ["abc", "gt", "1|2", "NaN"])
def test_invalid_number_is_a_400(find: Any, value: str) -> None:
    with pytest.raises(FhirError):
        find("Observation", f"value-quantity={value}")
