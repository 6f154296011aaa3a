"""_id, full text (_text, _content) and system-level searches on both databases."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_server.errors import FhirError

CASES = [
    ("Patient", "_id=p1", ["p1"]),
    ("Patient", "_id=p1,p3", ["p1", "p3"]),
    ("Patient", "_id=o1", []),
    ("Patient", "_id:not=p1", ["p2", "p3"]),
    ("Patient", "_id:missing=false", ["p1", "p2", "p3"]),  # every resource has an id and a time
    ("Patient", "_id:missing=true", []),
    ("Patient", "_lastUpdated:missing=false&name=d", ["p1"]),
    ("Patient", "_lastUpdated:missing=true", []),
    ("Patient", "_text=diabete", ["p1"]),  # accents folded: diabète
    ("Patient", "_text=DIABÈTE", ["p1"]),
    ("Patient", "_text=cancer", []),
    ("Patient", "_text=jean martin", ["p2"]),  # every word must occur
    ("Patient", "_text=jean dupont", []),
    ("Patient", "_text=jean,elodie", ["p1", "p2"]),
    ("Patient", "_content=lyon", ["p2"]),
    ("Patient", "_content=paix", ["p1"]),
    ("Patient", "_content=marseille", []),
    ("Observation", "_content=glycaemia", ["o3"]),
    # system searches
    ("Patient,Observation", "_id=p1,o1", ["o1", "p1"]),
    ("Patient,Practitioner", "name=d", ["dr1", "p1"]),
    ("Patient,Practitioner", "name=z", ["p3"]),
    ("", "_id=p2,dr1", ["dr1", "p2"]),
    ("", "_tag=http://example.org/tags|vip", ["p1"]),
    ("", "_tag=http://example.org/tags|none", []),
]


@pytest.mark.parametrize(("res_type", "qs", "expected"), CASES)
def test_special_search(find: Any, res_type: str, qs: str, expected: list[str]) -> None:
    assert find(res_type or None, qs) == expected


def test_system_search_without_type_refuses_type_specific_parameters(find: Any) -> None:
    with pytest.raises(FhirError) as err:
        find(None, "name=dupont")
    assert err.value.status == 400


def test_deleted_and_updated_resources_leave_the_index_exact(engine: Any, loader: Any, find: Any) -> None:
    loader.load([{"resourceType": "Patient", "id": "tmp", "name": [{"family": "Ephemere"}], "gender": "other"}])
    assert find("Patient", "name=ephemere") == ["tmp"]
    loader.load([{"resourceType": "Patient", "id": "tmp", "name": [{"family": "Durable"}]}])
    assert find("Patient", "name=ephemere") == []
    assert find("Patient", "gender=other") == []
    assert find("Patient", "name=durable") == ["tmp"]
    with engine.begin() as conn:
        loader.delete(conn, "Patient", "tmp")
    assert find("Patient", "name=durable") == []
    assert find("Patient", "_id=tmp") == []
    assert find("Patient", "_content=durable") == []


@pytest.mark.parametrize("qs", ["_id:missing=maybe", "_lastUpdated:missing=1", "_lastUpdated:exact=2020"])
def test_bad_missing_or_modifier_on_resource_row_parameters_is_a_400(find: Any, qs: str) -> None:
    with pytest.raises(FhirError) as err:
        find("Patient", qs)
    assert err.value.status == 400
