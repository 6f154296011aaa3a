"""Unselective conjunctions read along an equality term's index in rid order: same matches,
each resource once, paging both ways, on SQLite and PostgreSQL.

The planner takes this path only when every term is broad (thousands of rows), which test
data is not; the tests make every term look broad by giving the planner a row count that
says so, and check the page against the one the usual plan finds.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import Engine

from fhir_server.search import make_ctx
from fhir_server.search.access import EVERYTHING
from fhir_server.search.ast import Query
from fhir_server.search.execute import SearchResult, run
from fhir_server.search.parse import parse_query
from fhir_server.search.plan import plan
from fhir_server.search.registry import registry
from tests.search.conftest import Loader

SYS = "http://example.org/od-codes"


def _obs(i: int) -> dict[str, Any]:
    codes = ["a"] if i % 3 else ["a", "a"]  # every third one carries the code twice
    if i % 4 == 0:
        codes = ["b"]
    return {
        "resourceType": "Observation", "id": f"od{i:02d}", "status": "final" if i % 2 else "amended",
        "code": {"coding": [{"system": SYS, "code": c} for c in codes]},
        "subject": {"reference": f"Patient/odp{i % 3}"},
        "valueQuantity": {"value": i, "unit": "mg", "system": "http://unitsofmeasure.org", "code": "mg"},
    }


@pytest.fixture(scope="module")
def observations(engine: Engine, loader: Loader) -> Engine:
    loader.load([{"resourceType": "Patient", "id": f"odp{p}", "gender": "female"} for p in range(3)])
    loader.load([_obs(i) for i in range(40)])
    return engine


def _query(params: list[tuple[str, str]]) -> Query:
    return parse_query(registry(), ("Observation",), params)


def _run(engine: Engine, query: Query, broad: bool) -> tuple[SearchResult, str]:
    with engine.connect() as conn:
        ctx = make_ctx(conn, EVERYTHING)
        if broad:  # every term counts as broad; a base URL of its own keeps its plans apart
            ctx = replace(ctx, count=lambda _sub: 10**9, db=ctx.db + ":broad", base_url="http://broad")
        p = plan(query, ctx)
        assert p.page is not None
        return run(conn, p), str(p.page)


def _ids(result: SearchResult) -> list[str]:
    return [m.id for m in result.matches]


CASES = [
    [("code", f"{SYS}|a")],
    [("code", "a")],
    [("code", f"{SYS}|a"), ("value-quantity", "gt20")],
    [("code", f"{SYS}|a"), ("status", "final"), ("subject", "Patient/odp1")],
    [("code", f"{SYS}|a"), ("_lastUpdated", "gt2000-01-01")],
    [("subject", "Patient/odp2"), ("code:not", f"{SYS}|b")],
    [("code", f"{SYS}|b"), ("subject:Patient.gender", "female")],
    [("code", f"{SYS}|zzz"), ("status", "final")],
]


@pytest.mark.parametrize("params", CASES, ids=[str(i) for i in range(len(CASES))])
def test_ordered_page_finds_what_the_usual_plan_finds(observations: Engine, params: list[tuple[str, str]]) -> None:
    query = replace(_query(params), count=100)
    usual, _ = _run(observations, query, broad=False)
    ordered, sql = _run(observations, query, broad=True)
    assert "GROUP BY" in sql  # the ordered path was taken
    assert _ids(ordered) == _ids(usual)
    assert len(set(_ids(ordered))) == len(_ids(ordered))  # a code twice is still one match


def test_ordered_pages_walk_forward_and_back_without_gaps(observations: Engine) -> None:
    query = replace(_query([("code", f"{SYS}|a"), ("status", "final,amended")]), count=4)
    everything, _ = _run(observations, replace(query, count=100), broad=True)
    seen: list[list[str]] = []
    page, _ = _run(observations, query, broad=True)
    while True:
        seen.append(_ids(page))
        if page.next_cursor is None:
            break
        page, _ = _run(observations, replace(query, cursor=page.next_cursor), broad=True)
    assert [i for chunk in seen for i in chunk] == _ids(everything)
    assert len(seen) > 3
    assert page.prev_cursor is not None
    back, _ = _run(observations, replace(query, cursor=page.prev_cursor), broad=True)
    assert _ids(back) == seen[-2]


def test_a_term_with_no_equality_keeps_the_rid_scan(observations: Engine) -> None:
    _, sql = _run(observations, replace(_query([("value-quantity", "gt20")]), count=10), broad=True)
    assert "GROUP BY" not in sql
