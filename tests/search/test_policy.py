"""The access seam: an Access value filters matches, includes, chains and `_has` in SQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine

from fhir_server.search import EVERYTHING, Access, search
from fhir_server.search.parse import parse_query
from fhir_server.search.plan import scope
from fhir_server.search.registry import registry

P1_ONLY = Access("own", patient="p1")


def _run(engine: Engine, res_type: str, params: list[tuple[str, str]], access: Access) -> tuple[list[str], list[str]]:
    query = parse_query(registry(), (res_type,), params)
    with engine.connect() as conn:
        result, _ = search(conn, query, access)
    return sorted(m.id for m in result.matches), sorted(m.id for m in result.included)


def test_access_filters_matches_and_includes(loaded: Engine) -> None:
    params = [("code", "8480-6"), ("_include", "Observation:subject")]
    assert _run(loaded, "Observation", params, EVERYTHING) == (["o1", "o2"], ["p1", "p2"])
    matches, included = _run(loaded, "Observation", params, P1_ONLY)
    assert included == ["p1"]
    assert matches == ["o1"]


def test_access_hides_other_patients(loaded: Engine) -> None:
    assert _run(loaded, "Patient", [], P1_ONLY)[0] == ["p1"]
    assert _run(loaded, "Patient", [], Access("none"))[0] == []


def test_access_applies_inside_chains_and_has(loaded: Engine) -> None:
    everything = _run(loaded, "Observation", [("subject.gender", "male,female")], EVERYTHING)[0]
    restricted = _run(loaded, "Observation", [("subject.gender", "male,female")], P1_ONLY)[0]
    assert set(restricted) < set(everything)
    has = [("_has:Observation:subject:code", "8480-6")]
    assert _run(loaded, "Patient", has, EVERYTHING)[0] == ["p1", "p2"]
    assert _run(loaded, "Patient", has, P1_ONLY)[0] == ["p1"]


def test_types_outside_the_scopes_are_never_returned(loaded: Engine) -> None:
    only_patients = Access(read_types=frozenset({"Patient"}))
    params = [("code", "8480-6"), ("_include", "Observation:subject")]
    assert _run(loaded, "Observation", params, only_patients) == ([], [])
    obs_only = Access(read_types=frozenset({"Observation"}))
    assert _run(loaded, "Observation", params, obs_only) == (["o1", "o2"], [])


def test_access_prints_in_the_query_tree(loaded: Any) -> None:
    query = parse_query(registry(), ("Patient",), [("gender", "male")])
    assert str(scope(query, None, P1_ONLY).where).startswith("(and (token gender 'male') (access own")
    assert scope(query, None, EVERYTHING).where == query.where


def test_an_access_that_hides_nothing_of_the_types_adds_no_term(loaded: Any) -> None:
    feed = Access(read_types=frozenset({"Patient", "Observation"}))  # every patient, two types
    query = parse_query(registry(), ("Patient",), [("gender", "male")])
    assert scope(query, None, feed).where == query.where
    assert scope(query, None, Access("own", patient="p1")).where != query.where
    other = parse_query(registry(), ("Condition",), [("code", "x")])
    assert "access" in str(scope(other, None, feed).where)  # a type it may not read: the term says no
    granular = Access(read_types=frozenset({"Patient"}), constraints=(("Patient", "gender=female"),))
    assert "access" in str(scope(query, None, granular).where)
