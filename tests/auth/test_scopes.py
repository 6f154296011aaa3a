"""SMART v1/v2 scope parsing, per-interaction checks, granular constraints, escalation."""

from __future__ import annotations

import pytest

from fhir_server.auth.scopes import ScopeError, ScopeSet, parse_scopes


def test_v2_scopes_give_exactly_their_letters() -> None:
    s = parse_scopes("patient/Observation.rs")
    assert s.allows("Observation", "r") and s.allows("Observation", "s")
    assert not s.allows("Observation", "c") and not s.allows("Patient", "r")
    assert s.context == "patient"


def test_v1_read_and_write_map_to_v2_letters() -> None:
    s = parse_scopes("patient/*.read user/Observation.write")
    assert all(s.allows("Condition", c) for c in "rs") and not s.allows("Condition", "u")
    assert all(s.allows("Observation", c) for c in "cud")
    assert parse_scopes("system/*.*").allows("Anything", "d")
    assert str(parse_scopes("patient/*.read")) == "patient/*.rs"


@pytest.mark.parametrize("bad", ["patient/Observation.sr", "patient/Observation.rr", "patient/Observation.x",
                                 "doctor/*.rs", "patient/observation.rs", "patient/*.read?category=x",
                                 "patient/Observation.rs?category", "user/*", "*.rs", "openid2"])
def test_malformed_scopes_are_refused(bad: str) -> None:
    with pytest.raises(ScopeError):
        parse_scopes(bad)


def test_wildcard_and_constraints() -> None:
    s = parse_scopes("patient/Observation.rs?category=laboratory patient/Observation.rs?category=vital-signs "
                     "patient/Condition.rs")
    assert s.constraints("Observation", "s") == ((("category", "laboratory"),), (("category", "vital-signs"),))
    assert s.constraints("Condition", "s") is None
    assert s.constraints("Observation", "c") == ()
    both = parse_scopes("user/Observation.rs?category=laboratory user/*.rs")
    assert both.constraints("Observation", "r") is None  # an unconstrained scope wins


def test_scope_sets_are_hashable_values() -> None:
    a = parse_scopes("user/*.cruds openid fhirUser")
    b = parse_scopes("user/*.cruds fhirUser openid")
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    with pytest.raises(AttributeError):
        a.flags = frozenset()  # type: ignore[misc]


def test_contexts_and_flags() -> None:
    s = parse_scopes("launch/patient openid fhirUser offline_access patient/*.rs user/Practitioner.r")
    assert s.contexts == {"patient", "user"} and s.context == "patient"
    assert s.has("offline_access") and s.has("launch/patient") and not s.btg
    assert parse_scopes("system/*.rs btg").btg
    assert parse_scopes("openid").context is None


@pytest.mark.parametrize(
    ("allowed", "requested", "ok"),
    [
        ("system/*.rs", "system/Patient.r", True),
        ("system/*.rs", "system/Patient.c", False),
        ("system/*.rs", "user/Patient.r", False),
        ("system/Patient.rs", "system/*.rs", False),
        ("system/*.read", "system/Observation.rs?category=laboratory", True),
        ("system/Observation.rs?category=laboratory", "system/Observation.rs", False),
        ("system/Observation.rs?category=laboratory", "system/Observation.s?category=laboratory", True),
        ("system/*.rs", "system/*.rs btg", False),
        ("user/*.cruds openid fhirUser", "user/*.read openid", True),
    ],
)
def test_covers_prevents_escalation(allowed: str, requested: str, ok: bool) -> None:
    assert parse_scopes(allowed).covers(parse_scopes(requested)) is ok
    assert (parse_scopes(allowed).excess(parse_scopes(requested)) == []) is ok


def test_unrestricted_allows_everything() -> None:
    s = ScopeSet.all()
    assert s.allows("Patient", "d") and s.constraints("Patient", "s") is None
    assert not ScopeSet().allows("Patient", "r")


def test_interaction_letters() -> None:
    from fhir_server.auth.scopes import letter_for

    codes = ("create", "read", "vread", "update", "patch", "delete", "search-type", "history-instance", "history-type")
    assert [letter_for(i) for i in codes] == ["c", "r", "r", "u", "u", "d", "s", "r", "s"]
