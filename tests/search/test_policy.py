"""The access-policy seam: a Policy node filters matches and included resources in SQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine

from fhir_server.search import search
from fhir_server.search.ast import Policy
from fhir_server.search.parse import parse_query
from fhir_server.search.registry import registry


def _only(ids: set[str]) -> Policy:
    return Policy("only " + ",".join(sorted(ids)), lambda r, _type: r.c.res_id.in_(sorted(ids)))


def _run(
    engine: Engine, res_type: str, params: list[tuple[str, str]], policy: Policy | None
) -> tuple[list[str], list[str]]:
    query = parse_query(registry(), (res_type,), params)
    with engine.connect() as conn:
        result, _ = search(conn, query, policy=policy)
    return [m.id for m in result.matches], [m.id for m in result.included]


def test_policy_filters_matches_and_includes(loaded: Engine) -> None:
    params = [("code", "8480-6"), ("_include", "Observation:subject")]
    assert _run(loaded, "Observation", params, None) == (["o1", "o2"], ["p1", "p2"])
    assert _run(loaded, "Observation", params, _only({"o1", "o2", "p1"})) == (["o1", "o2"], ["p1"])
    assert _run(loaded, "Observation", params, _only({"o2", "p1"})) == (["o2"], [])


def test_policy_prints_in_the_query_tree(loaded: Any) -> None:
    from fhir_server.search.plan import scope

    query = parse_query(registry(), ("Patient",), [("gender", "male")])
    assert str(scope(query, None, _only({"p2"})).where) == "(and (token gender 'male') (policy only p2))"
