"""Token `:in` / `:not-in` over expandable ValueSets and `:above` / `:below` by subsumption, on both databases."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from sqlalchemy import Engine, func, select

from fhir_server.errors import FhirError
from fhir_server.fhir.json import dumps, loads
from fhir_server.search import search
from fhir_server.search.access import EVERYTHING
from fhir_server.search.ast import Value
from fhir_server.search.compile.token import match_values
from fhir_server.search.parse import parse_query
from fhir_server.search.registry import registry
from fhir_server.storage.index_schema import idx_token
from fhir_server.validation import terminology
from tests.search.conftest import Loader

CARE = "http://example.org/fhir/CodeSystem/care"
SCT = "http://snomed.info/sct"
LOINC = "http://loinc.org"
VS = "http://example.org/fhir/ValueSet/"
STATUS = "http://hl7.org/fhir/observation-status"
ROLE = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"

CODE_SYSTEM = {
    "resourceType": "CodeSystem", "id": "care", "url": CARE, "status": "active", "content": "complete",
    "hierarchyMeaning": "is-a",
    "concept": [
        {"code": "activity", "display": "Care activity", "concept": [
            {"code": "nursing", "display": "Nursing", "concept": [
                {"code": "wound-care", "display": "Wound care"},
                {"code": "injection", "display": "Injection"},
            ]},
            {"code": "rehab", "display": "Rehabilitation", "concept": [{"code": "physio", "display": "Physio"}]},
        ]},
        # Placed in the hierarchy by a `parent` property rather than by nesting.
        {"code": "speech", "display": "Speech therapy", "property": [{"code": "parent", "valueCode": "rehab"}]},
        {"code": "admin", "display": "Administrative"},
    ],
}
# A code system known only by name: no concepts, so no hierarchy to expand.
FRAGMENT = {"resourceType": "CodeSystem", "id": "frag", "url": "http://example.org/fhir/CodeSystem/frag",
            "status": "active", "content": "not-present"}


def _vs(id_: str, compose: dict[str, Any], version: str | None = None) -> dict[str, Any]:
    vs = {"resourceType": "ValueSet", "id": id_, "url": VS + id_, "status": "active", "compose": compose}
    if version:  # two versions of one ValueSet: same url, ids ver-1 and ver-2
        vs.update(url=VS + "ver", version=version)
    return vs


def _filter(op: str, value: str, system: str = CARE) -> dict[str, Any]:
    return {"system": system, "filter": [{"property": "concept", "op": op, "value": value}]}


VALUE_SETS = [
    _vs("isa", {"include": [_filter("is-a", "nursing")]}),
    _vs("desc", {"include": [_filter("descendent-of", "nursing")]}),
    _vs("import", {"include": [{"valueSet": [VS + "desc"]}, {"system": CARE, "concept": [{"code": "admin"}]}]}),
    _vs("exclude", {"include": [_filter("is-a", "activity")],
                    "exclude": [{"system": CARE, "concept": [{"code": "injection"}]}, _filter("is-a", "rehab")]}),
    _vs("sct-filter", {"include": [_filter("is-a", "73211009", SCT)]}),
    _vs("sct-all", {"include": [{"system": SCT}]}),
    _vs("nested", {"include": [{"valueSet": [VS + "sct-all"]}, {"valueSet": [VS + "isa"]}]}),
    _vs("sct-minus", {"include": [{"system": SCT}], "exclude": [{"system": SCT, "concept": [{"code": "1"}]}]}),
    _vs("ver-1", {"include": [{"system": CARE, "concept": [{"code": "admin"}]}]}, version="1"),
    _vs("ver-2", {"include": [{"system": CARE, "concept": [{"code": "physio"}]}]}, version="2"),
    _vs("final", {"include": [{"system": STATUS, "concept": [{"code": "final"}]}]}),
    _vs("amended", {"include": [{"system": STATUS, "concept": [{"code": "amended"}]}]}),
    {"resourceType": "ValueSet", "id": "expanded", "url": VS + "expanded", "status": "active",
     "compose": {"include": [_filter("is-a", "73211009", SCT)]},
     "expansion": {"timestamp": "2024-01-01", "total": 1, "contains": [{"system": SCT, "code": "44054006"}]}},
]


def _obs(id_: str, system: str, code: str) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": id_, "status": "final",
            "code": {"coding": [{"system": system, "code": code}]}}


OBSERVATIONS = [
    _obs("o-nursing", CARE, "nursing"),
    _obs("o-wound", CARE, "wound-care"),
    _obs("o-inj", CARE, "injection"),
    _obs("o-physio", CARE, "physio"),
    _obs("o-speech", CARE, "speech"),
    _obs("o-admin", CARE, "admin"),
    _obs("o-activity", CARE, "activity"),
    _obs("o-diabetes", SCT, "44054006"),
    _obs("o-bp", LOINC, "8480-6"),
    _obs("o-brother", ROLE, "BRO"),
]
ALL = sorted(o["id"] for o in OBSERVATIONS)


@pytest.fixture(scope="module")
def find(engine: Engine, loader: Loader) -> Callable[[str], list[str]]:
    """find("code:in=...") -> sorted ids of the matching Observations."""
    loader.load([loads(dumps(r)) for r in [CODE_SYSTEM, FRAGMENT, *VALUE_SETS, *OBSERVATIONS]])

    def run(qs: str) -> list[str]:
        query = parse_query(registry(), ("Observation",), parse_qsl(qs, keep_blank_values=True))
        with engine.connect() as conn:
            result, _ = search(conn, query, EVERYTHING)
        return sorted(m.id for m in result.matches)

    return run


MATCHES = [
    # is-a: the code and its descendants (nesting)
    ("code:in=" + VS + "isa", ["o-inj", "o-nursing", "o-wound"]),
    ("code:in=" + VS + "isa&_id=o-physio", []),
    # descendent-of: the descendants only
    ("code:in=" + VS + "desc", ["o-inj", "o-wound"]),
    ("code:in=" + VS + "desc&_id=o-nursing", []),
    # an imported ValueSet, unioned with listed concepts
    ("code:in=" + VS + "import", ["o-admin", "o-inj", "o-wound"]),
    ("code:in=" + VS + "import&_id=o-nursing,o-physio", []),
    # exclude: listed concepts and a filter (speech sits under rehab by its `parent` property)
    ("code:in=" + VS + "exclude", ["o-activity", "o-nursing", "o-wound"]),
    ("code:in=" + VS + "exclude&_id=o-inj,o-physio,o-speech", []),
    # a relative reference to a stored ValueSet (R4: "a URI (relative or absolute)")
    ("code:in=ValueSet/isa", ["o-inj", "o-nursing", "o-wound"]),
    ("code:in=ValueSet/isa&_id=o-physio", []),
    # a whole code system the server does not hold stays `system|`, also when imported
    ("code:in=" + VS + "sct-all", ["o-diabetes"]),
    ("code:in=" + VS + "nested", ["o-diabetes", "o-inj", "o-nursing", "o-wound"]),
    ("code:in=" + VS + "nested&_id=o-bp,o-admin", []),
    # versioned canonicals: url|version picks that version, a bare url the latest
    ("code:in=" + VS + "ver|1", ["o-admin"]),
    ("code:in=" + VS + "ver", ["o-physio"]),
    # a compose we cannot expand, but a complete stored expansion: the expansion is used
    ("code:in=" + VS + "expanded", ["o-diabetes"]),
    # a vendored R4 ValueSet filtering a vendored CodeSystem (v3 RoleCode: BRO is-a SIB)
    ("code:in=http://hl7.org/fhir/ValueSet/sibling-relationship-codes", ["o-brother"]),
    ("code:in=http://hl7.org/fhir/ValueSet/parent-relationship-codes", []),
    # a `code` element (no system in the resource) matches its code in the ValueSet's system
    ("status:in=" + VS + "final", ALL),
    ("status:in=" + VS + "amended", []),
    # a whole R4 code system the server holds in full is listed too, so `code` elements match
    ("status:in=http://hl7.org/fhir/ValueSet/observation-status", ALL),
    ("status:in=http://hl7.org/fhir/ValueSet/publication-status", []),
    ("status:not-in=http://hl7.org/fhir/ValueSet/observation-status", []),
    # :not-in with a filter: everything outside the expansion
    ("code:not-in=" + VS + "isa", ["o-activity", "o-admin", "o-bp", "o-brother", "o-diabetes", "o-physio",
                                    "o-speech"]),
    ("code:not-in=" + VS + "isa&_id=o-wound,o-nursing", []),
    # :below: the code and its descendants; :above: the code and its ancestors
    ("code:below=" + CARE + "|nursing", ["o-inj", "o-nursing", "o-wound"]),
    ("code:below=" + CARE + "|rehab", ["o-physio", "o-speech"]),
    ("code:below=" + CARE + "|nursing&_id=o-physio,o-activity", []),
    ("code:above=" + CARE + "|wound-care", ["o-activity", "o-nursing", "o-wound"]),
    ("code:above=" + CARE + "|speech", ["o-activity", "o-speech"]),  # speech -> rehab (property) -> activity
    ("code:above=" + CARE + "|wound-care&_id=o-inj,o-admin", []),
    ("code:below=" + ROLE + "|SIB", ["o-brother"]),
    ("code:above=" + ROLE + "|SIB", []),
    # values are OR-ed
    ("code:below=" + CARE + "|nursing," + CARE + "|admin", ["o-admin", "o-inj", "o-nursing", "o-wound"]),
]


@pytest.mark.parametrize(("qs", "expected"), MATCHES)
def test_terminology_modifiers_match_expanded_codes(find: Any, qs: str, expected: list[str]) -> None:
    assert find(qs) == expected


def test_speech_is_below_rehab_through_its_parent_property(find: Any) -> None:
    assert "o-speech" in find("code:below=" + CARE + "|activity")


REFUSED = [
    # a filter on a code system the server does not hold cannot be expanded
    ("code:in=" + VS + "sct-filter", "http://snomed.info/sct"),
    ("code:not-in=" + VS + "sct-filter", "http://snomed.info/sct"),
    # `system|` minus some codes is not expressible: refused, not widened
    ("code:in=" + VS + "sct-minus", "http://snomed.info/sct"),
    ("code:in=" + VS + "unknown", "no ValueSet"),
    ("code:in=ValueSet/unknown", "no ValueSet"),
    ("code:below=" + SCT + "|73211009", "not held in full"),  # the R4 definitions name SNOMED CT only
    ("code:below=http://example.org/fhir/CodeSystem/unknown|x", "not on this server"),
    ("code:above=http://example.org/fhir/CodeSystem/frag|x", "not held in full"),
    ("code:below=nursing", "system|code"),
    ("code:above=|nursing", "system|code"),
    ("code:below=" + CARE + "|no-such-code", "not in code system"),
]


@pytest.mark.parametrize(("qs", "why"), REFUSED)
def test_what_cannot_be_worked_out_is_a_400_saying_why(find: Any, qs: str, why: str) -> None:
    with pytest.raises(FhirError) as err:
        find(qs)
    assert err.value.status == 400
    assert why in str(err.value)
    assert err.value.outcome["resourceType"] == "OperationOutcome"


def test_a_large_expansion_is_one_in_list_past_the_bound_parameter_limit(engine: Engine) -> None:
    # PostgreSQL refuses more than 65,535 bound parameters: the hashes are written inline.
    values = tuple(Value(f"{CARE}|c{i}") for i in range(70_000)) + (Value(f"{CARE}|nursing"),)
    cond = match_values(values, idx_token.c.h_full, idx_token.c.h_code, idx_token.c.system)
    sql = str(select(idx_token.c.rid).where(cond).compile(engine))
    assert sql.count(" IN ") == 1
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).where(idx_token.c.param == "code", cond)).scalar_one() == 1


# -- a change in the database is seen by the next search ------------------------------------------
def _conditions(engine: Engine, qs: str) -> list[str]:
    query = parse_query(registry(), ("Condition",), parse_qsl(qs, keep_blank_values=True))
    with engine.connect() as conn:
        result, _ = search(conn, query, EVERYTHING)
    return sorted(m.id for m in result.matches)


def _hierarchy(url: str, tree: dict[str, list[str]]) -> dict[str, Any]:
    concepts = [{"code": top, "concept": [{"code": c} for c in kids]} for top, kids in tree.items()]
    return {"resourceType": "CodeSystem", "id": url.rsplit("/", 1)[1], "url": url, "status": "active",
            "content": "complete", "concept": concepts}


def _condition(id_: str, system: str, code: str) -> dict[str, Any]:
    return {"resourceType": "Condition", "id": id_, "subject": {"reference": "Patient/x"},
            "code": {"coding": [{"system": system, "code": code}]}}


def test_an_expansion_follows_its_codesystem_and_valueset_as_they_change(engine: Engine, loader: Loader) -> None:
    system = "http://example.org/fhir/CodeSystem/changing"
    vs = _vs("changing", {"include": [_filter("is-a", "top", system)]})
    loader.load([_hierarchy(system, {"top": ["a"]}), vs,
                 _condition("ch-a", system, "a"), _condition("ch-b", system, "b")])
    assert _conditions(engine, "code:in=" + VS + "changing") == ["ch-a"]

    loader.load([_hierarchy(system, {"top": ["a", "b"]})])  # the CodeSystem gains a child
    assert _conditions(engine, "code:in=" + VS + "changing") == ["ch-a", "ch-b"]

    loader.load([{**vs, "compose": {"include": [_filter("is-a", "b", system)]}}])  # the ValueSet narrows
    assert _conditions(engine, "code:in=" + VS + "changing") == ["ch-b"]

    with engine.begin() as conn:
        loader.delete(conn, "ValueSet", "changing")
    with pytest.raises(FhirError) as err:
        _conditions(engine, "code:in=" + VS + "changing")
    assert err.value.status == 400


def test_an_unchanged_expansion_is_reused_not_recomputed(
    engine: Engine, loader: Loader, monkeypatch: pytest.MonkeyPatch
) -> None:
    system = "http://example.org/fhir/CodeSystem/steady"
    vs = _vs("steady", {"include": [_filter("is-a", "top", system)]})
    loader.load([_hierarchy(system, {"top": ["a"]}), vs, _condition("st-a", system, "a")])
    calls: list[Any] = []
    real = terminology.expand
    monkeypatch.setattr(terminology, "expand", lambda *a, **kw: calls.append(a) or real(*a, **kw))
    assert _conditions(engine, "code:in=" + VS + "steady") == ["st-a"]
    expanded = len(calls)
    assert expanded > 0
    assert _conditions(engine, "code:in=" + VS + "steady") == ["st-a"]
    assert len(calls) == expanded  # the second search only checked the stored versions


def test_below_follows_its_codesystem_as_it_changes(engine: Engine, loader: Loader) -> None:
    system = "http://example.org/fhir/CodeSystem/growing"
    loader.load([_hierarchy(system, {"top": ["a"]}), _condition("gr-a", system, "a"), _condition("gr-b", system, "b")])
    assert _conditions(engine, f"code:below={system}|top") == ["gr-a"]
    loader.load([_hierarchy(system, {"top": ["a", "b"]})])
    assert _conditions(engine, f"code:below={system}|top") == ["gr-a", "gr-b"]


# -- through the REST API: what is written is what the next search uses ---------------------------
async def test_valueset_and_codesystem_written_through_the_api_are_used_by_the_next_search(
    client: httpx.AsyncClient,
) -> None:
    assert (await client.post("/CodeSystem", json=CODE_SYSTEM)).status_code == 201
    for obs in OBSERVATIONS[:4]:
        assert (await client.post("/Observation", json=obs)).status_code == 201
    vs = {"resourceType": "ValueSet", "url": VS + "api", "status": "active",
          "compose": {"include": [_filter("descendent-of", "nursing")]}}
    created = await client.post("/ValueSet", json=vs)
    assert created.status_code == 201

    async def codes(param: str = "code:in", value: str = VS + "api") -> tuple[int, list[str]]:
        r = await client.get("/Observation", params={param: value})
        return r.status_code, sorted(e["resource"]["code"]["coding"][0]["code"] for e in r.json().get("entry", []))

    assert await codes() == (200, ["injection", "wound-care"])
    assert await codes("code:below", f"{CARE}|rehab") == (200, ["physio"])

    # An update is seen at once...
    vs_id = created.json()["id"]
    vs["id"] = vs_id
    vs["compose"] = {"include": [_filter("is-a", "rehab")]}
    assert (await client.put(f"/ValueSet/{vs_id}", json=vs)).status_code == 200
    assert await codes() == (200, ["physio"])

    # ...and so is a delete: the ValueSet is no longer there to expand.
    assert (await client.delete(f"/ValueSet/{vs_id}")).status_code in (200, 204)
    status, _ = await codes()
    assert status == 400
