"""The compiled-filter memo: repeated queries reuse their condition and stay exact."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine

from fhir_server.search import search
from fhir_server.search.access import EVERYTHING, Access
from fhir_server.search.ast import Param, Policy, Value
from fhir_server.search.cache import WhereCache, cacheable
from fhir_server.search.parse import parse_query
from fhir_server.search.plan import WHERE_CACHE
from fhir_server.search.registry import Registry, registry
from tests.search.conftest import Loader


def _ids(engine: Engine, res_type: str, params: list[tuple[str, str]]) -> list[str]:
    query = parse_query(registry(), (res_type,), params)
    with engine.connect() as conn:
        result, _ = search(conn, query, EVERYTHING)
    return [m.id for m in result.matches]


def _obs(id_: str, code: str, patient: str) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": id_, "status": "final", "subject": {"reference": patient},
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]}}


def test_repeated_query_sees_resources_written_after_it_was_cached(engine: Engine, loader: Loader) -> None:
    loader.load([_obs("cache-a", "99991-1", "Patient/cache-p")])
    params = [("code", "http://loinc.org|99991-1"), ("subject", "Patient/cache-p")]
    assert _ids(engine, "Observation", params) == ["cache-a"]
    loader.load([_obs("cache-b", "99991-1", "Patient/cache-p"), _obs("cache-c", "99991-2", "Patient/cache-p")])
    assert _ids(engine, "Observation", params) == ["cache-a", "cache-b"]
    with engine.begin() as conn:
        loader.delete(conn, "Observation", "cache-a")
    assert _ids(engine, "Observation", params) == ["cache-b"]


def test_same_filter_with_other_values_is_compiled_for_those_values(engine: Engine, loader: Loader) -> None:
    loader.load([_obs("cache-d", "99992-1", "Patient/cache-q"), _obs("cache-e", "99992-2", "Patient/cache-q")])
    assert _ids(engine, "Observation", [("code", "99992-1")]) == ["cache-d"]
    assert _ids(engine, "Observation", [("code", "99992-2")]) == ["cache-e"]


def test_filters_reading_the_clock_or_the_database_are_not_cacheable() -> None:
    assert cacheable(Param("token", "code", (Value("8480-6"),)))
    assert cacheable(Param("date", "date", (Value("2020", "ge"),)))
    assert not cacheable(Param("date", "date", (Value("2020", "ap"),)))
    assert not cacheable(Param("token", "code", (Value("http://example.org/vs"),), "in"))
    # an access value is data: a policy-filtered query is cached like any other
    assert cacheable(Policy(Access("own", patient="p1")))


def test_plans_are_cached_per_access_value(engine: Any) -> None:
    from fhir_server.search import make_ctx
    from fhir_server.search.parse import parse_query
    from fhir_server.search.plan import plan
    from fhir_server.search.registry import registry

    query = parse_query(registry(), ("Observation",), [("code", "8480-6")])
    with engine.connect() as conn:
        one = make_ctx(conn, Access("own", patient="p1"))
        same = make_ctx(conn, Access("own", patient="p1"))
        other = make_ctx(conn, Access("own", patient="p2"))
        p1, p2, p3 = plan(query, one), plan(query, same), plan(query, other)
    assert p1.page is p2.page  # the same access: the compiled statement is reused
    assert p1.page is not p3.page  # another caller's access: its own plan
    assert "p2" in str(p3.page.compile(compile_kwargs={"literal_binds": True}))


def test_registry_change_or_expiry_drops_an_entry() -> None:
    reg = Registry()
    cache = WhereCache(ttl=60.0)
    cache.put("k", reg, "cond")
    assert cache.get("k", reg) == "cond"
    assert cache.get("k", Registry()) is None  # another registry: never shared
    cache.put("k", reg, "cond")
    reg.add({"resourceType": "SearchParameter", "url": "http://example.org/sp", "code": "x", "type": "token",
             "base": ["Patient"], "expression": "Patient.id"})
    assert cache.get("k", reg) is None
    stale = WhereCache(ttl=-1.0)
    stale.put("k", reg, "cond")
    assert stale.get("k", reg) is None


def test_cache_is_bounded() -> None:
    reg = Registry()
    cache = WhereCache(max_entries=2)
    for key in ("a", "b", "c"):
        cache.put(key, reg, key)
    assert cache.get("a", reg) is None
    assert (cache.get("b", reg), cache.get("c", reg)) == ("b", "c")


def test_planner_memo_is_filled_by_a_search(engine: Engine) -> None:
    WHERE_CACHE.clear()
    _ids(engine, "Patient", [("gender", "other")])
    assert WHERE_CACHE.size() >= 1


def test_first_page_plan_is_reused_for_the_same_filter_only(engine: Engine) -> None:
    from fhir_server.search import make_ctx
    from fhir_server.search.plan import plan

    first = parse_query(registry(), ("Patient",), [("gender", "female"), ("_count", "1")])
    other = parse_query(registry(), ("Patient",), [("gender", "male"), ("_count", "1")])
    with engine.connect() as conn:
        ctx = make_ctx(conn, EVERYTHING)
        p1, p2, p3 = plan(first, ctx), plan(first, ctx), plan(other, ctx)
    assert p1.page is not None and p1.page is p2.page
    assert p3.page is not p1.page


def test_term_estimates_are_remembered_per_database(engine: Engine) -> None:
    from fhir_server.search.measure import ESTIMATES

    ESTIMATES.clear()
    _ids(engine, "Patient", [("gender", "female"), ("birthdate", "ge1900")])
    first = ESTIMATES.size()
    assert first >= 1
    # gender is counted first (static rank) and, being small here, settles the plan: the
    # second query reuses its count and counts nothing new
    _ids(engine, "Patient", [("gender", "female"), ("birthdate", "ge1901")])
    assert ESTIMATES.size() == first
