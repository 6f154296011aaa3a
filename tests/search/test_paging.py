"""Sorting and keyset paging on both databases: stable pages under concurrent writes, previous links,
totals only when asked."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

import pytest
from sqlalchemy import Engine

from fhir_server.errors import FhirError
from fhir_server.search import search
from fhir_server.search.access import EVERYTHING
from fhir_server.search.parse import parse_query
from fhir_server.search.registry import registry


def _page(engine: Engine, res_type: str, qs: str) -> Any:
    query = parse_query(registry(), (res_type,), parse_qsl(qs, keep_blank_values=True))
    with engine.connect() as conn:
        result, _ = search(conn, query, EVERYTHING)
    return result


@pytest.fixture(scope="module")
def many(loaded: Engine, loader: Any) -> Engine:
    loader.load([
        {"resourceType": "Encounter", "id": f"e{i:02d}", "status": "finished",
         "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
         **({"period": {"start": f"2020-01-{(i % 9) + 1:02d}"}} if i % 5 else {}),
         "subject": {"reference": f"Patient/p{i % 3 + 1}"}}
        for i in range(25)
    ])
    return loaded


def test_sort_ascending_descending_and_multiple_keys(find: Any) -> None:
    assert find("Patient", "_sort=birthdate", sort=False) == ["p1", "p2", "p3"]  # missing last
    assert find("Patient", "_sort=-birthdate", sort=False) == ["p2", "p1", "p3"]
    assert find("Patient", "_sort=family", sort=False) == ["p1", "p2", "p3"]
    assert find("Patient", "_sort=-family", sort=False) == ["p3", "p2", "p1"]
    assert find("Observation", "_sort=status,-date", sort=False) == ["o4", "o1", "o3", "o2"]
    assert find("Patient", "_sort=-_id", sort=False) == ["p3", "p2", "p1"]


def _walk(engine: Engine, qs: str) -> list[list[str]]:
    pages, cursor = [], None
    while True:
        result = _page(engine, "Encounter", qs + (f"&_cursor={cursor}" if cursor else ""))
        pages.append([m.id for m in result.matches])
        cursor = result.next_cursor
        if cursor is None:
            return pages


@pytest.mark.parametrize("sort", ["", "&_sort=date", "&_sort=-date,_id", "&_sort=-_lastUpdated"])
def test_keyset_pages_cover_everything_once(many: Engine, sort: str) -> None:
    pages = _walk(many, "_count=4" + sort)
    flat = [i for p in pages for i in p]
    assert sorted(flat) == [f"e{i:02d}" for i in range(25)]
    assert len(pages) == 7 and all(len(p) == 4 for p in pages[:-1])


def test_pages_are_stable_when_rows_are_inserted_before_the_cursor(many: Engine, loader: Any) -> None:
    first = _page(many, "Encounter", "_count=5&_sort=date")
    second_before = _page(many, "Encounter", f"_count=5&_sort=date&_cursor={first.next_cursor}")
    # an encounter sorting first arrives between the two page reads
    loader.load([{"resourceType": "Encounter", "id": "early", "status": "finished",
                  "class": {"code": "AMB"}, "period": {"start": "1999-01-01"}}])
    second_after = _page(many, "Encounter", f"_count=5&_sort=date&_cursor={first.next_cursor}")
    assert [m.id for m in second_after.matches] == [m.id for m in second_before.matches]


@pytest.mark.parametrize("sort", ["date", "-date"])
def test_index_driven_and_general_plans_agree_on_order(many: Engine, sort: str) -> None:
    forward = [i for page in _walk(many, f"_count=3&_sort={sort}") for i in page]
    # `_sort=x,_id` has two keys: it always takes the general plan; with -_id the tie-break
    # direction matches the single-key plan's, so both orders must be the same.
    general = [i for page in _walk(many, f"_count=3&_sort={sort},{'-' if sort[0] == '-' else ''}_lastUpdated")
               for i in page]
    assert forward[-5:] == general[-5:]  # the resources without a date, last, in the same order
    # walking backward from the end (general plan) gives back every page read forward
    pages = _walk(many, f"_count=3&_sort={sort}")
    last = _page(many, "Encounter", f"_count=3&_sort={sort}")
    for _ in range(len(pages) - 1):
        last = _page(many, "Encounter", f"_count=3&_sort={sort}&_cursor={last.next_cursor}")
    back = last
    for expected in reversed(pages[:-1]):
        back = _page(many, "Encounter", f"_count=3&_sort={sort}&_cursor={back.prev_cursor}")
        assert [m.id for m in back.matches] == expected


def test_previous_link_returns_the_page_before(many: Engine) -> None:
    first = _page(many, "Encounter", "_count=4&_sort=-date")
    assert first.prev_cursor is None
    second = _page(many, "Encounter", f"_count=4&_sort=-date&_cursor={first.next_cursor}")
    back = _page(many, "Encounter", f"_count=4&_sort=-date&_cursor={second.prev_cursor}")
    assert [m.id for m in back.matches] == [m.id for m in first.matches]
    assert back.next_cursor is not None


def test_total_only_when_asked(many: Engine) -> None:
    assert _page(many, "Patient", "").total is None
    assert _page(many, "Patient", "_total=accurate").total == 3
    assert _page(many, "Patient", "_total=estimate").total is not None
    counted = _page(many, "Patient", "_summary=count")
    assert counted.total == 3 and counted.matches == []
    assert _page(many, "Patient", "_count=0").total == 3


def test_cursor_from_another_sort_or_tampered_is_a_400(many: Engine) -> None:
    first = _page(many, "Encounter", "_count=2&_sort=date")
    with pytest.raises(FhirError):
        _page(many, "Encounter", f"_count=2&_sort=-date&_cursor={first.next_cursor}")
    with pytest.raises(FhirError):
        _page(many, "Encounter", "_count=2&_cursor=not-a-cursor")


def test_count_is_capped_and_must_be_a_number(many: Engine) -> None:
    assert len(_page(many, "Encounter", "_count=100000").matches) == 26
    with pytest.raises(FhirError):
        _page(many, "Encounter", "_count=-1")


@pytest.mark.parametrize(("res_type", "sort"), [("Location", "near"), ("Observation", "code-value-quantity"),
                                                ("DocumentReference", "relationship")])
def test_sorting_on_a_parameter_without_an_order_is_a_400(many: Engine, res_type: str, sort: str) -> None:
    with pytest.raises(FhirError) as err:
        _page(many, res_type, f"_sort={sort}")
    assert err.value.status == 400 and "Cannot sort" in str(err.value)
