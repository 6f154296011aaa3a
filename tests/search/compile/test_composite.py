"""Composite search on both databases: both components must hold within the same element."""

from __future__ import annotations

from typing import Any

import pytest

CASES = [
    ("Observation", "code-value-quantity=http://loinc.org|8480-6$120", ["o1"]),
    ("Observation", "code-value-quantity=http://loinc.org|8480-6$gt130", ["o2"]),
    ("Observation", "code-value-quantity=8480-6$lt100", []),
    # 8462-4 is only in a component, with 80: the combo form pairs it, the plain form does not
    ("Observation", "component-code-value-quantity=8462-4$80", ["o1", "o2"]),
    ("Observation", "code-value-quantity=8462-4$80", []),
    ("Observation", "combo-code-value-quantity=8462-4$80|http://unitsofmeasure.org|mm[Hg]", ["o1", "o2"]),
    ("Observation", "combo-code-value-quantity=8462-4$120", []),
    ("Observation", "code-value-concept=365853002$http://snomed.info/sct|260385009", ["o4"]),
    ("Observation", "code-value-concept=365853002$260385000", []),
    ("Observation", "code-value-quantity:missing=true", ["o3", "o4"]),
]


@pytest.mark.parametrize(("res_type", "qs", "expected"), CASES)
def test_composite_search(find: Any, res_type: str, qs: str, expected: list[str]) -> None:
    assert find(res_type, qs) == expected


def test_composite_with_a_date_component(loader: Any, find: Any) -> None:
    loader.load([{"resourceType": "Observation", "id": "dated", "status": "final",
                  "code": {"coding": [{"system": "http://loinc.org", "code": "21112-8"}]},
                  "valueDateTime": "2021-06-15"}])
    assert find("Observation", "code-value-date=21112-8$2021-06") == ["dated"]
    assert find("Observation", "code-value-date=21112-8$gt2021-07") == []
    assert find("Observation", "code-value-date=8480-6$2021-06") == []
