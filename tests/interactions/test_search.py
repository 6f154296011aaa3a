"""Search interactions end to end on both databases (through the real write path): Bundle shape,
stored bytes spliced in, absolute links with cursors, includes, compartments, lenient handling,
_summary/_elements, _explain, and conditional interactions resolving through the engine."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from fhir_server.context import RequestContext
from fhir_server.errors import FhirError
from fhir_server.interactions import search as s
from fhir_server.interactions.create import create
from fhir_server.interactions.update import update
from fhir_server.search import find_ids
from fhir_server.search.access import EVERYTHING
from fhir_server.storage import Storage

BASE = "http://testserver/fhir"
PATIENT = {"resourceType": "Patient", "id": "pat1", "name": [{"family": "Dupont", "given": ["Élodie"]}],
           "gender": "female", "birthDate": "1970-03-04",
           "identifier": [{"system": "urn:oid:1.2.250.1.213.1.4.8", "value": "1234567890123"}],
           "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">Élodie</div>"}}


def _obs(i: int, patient: str = "pat1") -> dict[str, Any]:
    return {"resourceType": "Observation", "id": f"obs{i}", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
            "subject": {"reference": f"Patient/{patient}"},
            "effectiveDateTime": f"2020-01-{i + 1:02d}", "valueQuantity": {"value": 100 + i}}


@pytest.fixture
async def data(store: Storage, settings_factory: Any) -> RequestContext:
    ctx = RequestContext(settings=settings_factory(), base_url=BASE, access=EVERYTHING)
    await update(ctx, store, "Patient", "pat1", PATIENT)
    await update(ctx, store, "Patient", "pat2", {"resourceType": "Patient", "id": "pat2", "gender": "male"})
    for i in range(5):
        await update(ctx, store, "Observation", f"obs{i}", _obs(i, "pat1" if i < 4 else "pat2"))
    return ctx


async def test_searchset_bundle_shape_and_stored_bytes(store: Storage, data: RequestContext) -> None:
    raw = await s.search_type(data, store, "Patient", [("name", "dupont")], BASE)
    bundle = orjson.loads(raw)
    assert bundle["type"] == "searchset" and "total" not in bundle
    [entry] = bundle["entry"]
    assert entry["fullUrl"] == f"{BASE}/Patient/pat1" and entry["search"] == {"mode": "match"}
    stored = await store.read("Patient", "pat1")
    assert stored is not None and stored.body is not None and stored.body in raw
    assert bundle["link"] == [{"relation": "self", "url": f"{BASE}/Patient?name=dupont"}]


async def test_next_links_are_absolute_and_walk_every_page(store: Storage, data: RequestContext) -> None:
    seen: list[str] = []
    params = [("_count", "2"), ("_sort", "date")]
    while True:
        bundle = orjson.loads(await s.search_type(data, store, "Observation", params, BASE))
        seen += [e["resource"]["id"] for e in bundle["entry"]]
        nxt = [link["url"] for link in bundle["link"] if link["relation"] == "next"]
        if not nxt:
            break
        assert nxt[0].startswith(f"{BASE}/Observation?_count=2&_sort=date&_cursor=")
        params = [("_count", "2"), ("_sort", "date"), ("_cursor", nxt[0].rsplit("_cursor=", 1)[1])]
    assert seen == [f"obs{i}" for i in range(5)]


async def test_include_and_revinclude_entries_are_marked_include(store: Storage, data: RequestContext) -> None:
    bundle = orjson.loads(await s.search_type(
        data, store, "Observation", [("_id", "obs0"), ("_include", "Observation:subject")], BASE))
    assert [(e["resource"]["id"], e["search"]["mode"]) for e in bundle["entry"]] == [
        ("obs0", "match"), ("pat1", "include")]
    bundle = orjson.loads(await s.search_type(
        data, store, "Patient", [("_id", "pat2"), ("_revinclude", "Observation:patient")], BASE))
    assert [(e["resource"]["id"], e["search"]["mode"]) for e in bundle["entry"]] == [
        ("pat2", "match"), ("obs4", "include")]


async def _ids(ctx: RequestContext, store: Storage, res_type: str, params: list[tuple[str, str]]) -> list[str]:
    bundle = orjson.loads(await s.search_type(ctx, store, res_type, params, BASE))
    return [e["resource"]["id"] for e in bundle.get("entry", [])]


async def test_include_iterate_and_wildcard(store: Storage, data: RequestContext) -> None:
    ctx = data
    await update(ctx, store, "Practitioner", "dr", {"resourceType": "Practitioner", "id": "dr"})
    gp = [{"reference": "Practitioner/dr"}]
    await update(ctx, store, "Patient", "pat3", {"resourceType": "Patient", "id": "pat3", "generalPractitioner": gp})
    await update(ctx, store, "Observation", "obs9", _obs(9, "pat3"))
    base = [("_id", "obs9"), ("_include", "Observation:subject")]
    iterate = [*base, ("_include:iterate", "Patient:general-practitioner")]
    assert await _ids(ctx, store, "Observation", iterate) == ["obs9", "pat3", "dr"]
    once = [*base, ("_include", "Patient:general-practitioner")]
    assert await _ids(ctx, store, "Observation", once) == ["obs9", "pat3"]
    assert await _ids(ctx, store, "Observation", [("_id", "obs9"), ("_include", "*")]) == ["obs9", "pat3"]


async def test_compartment_search(store: Storage, data: RequestContext) -> None:
    bundle = orjson.loads(await s.search_compartment(data, store, "Patient", "pat2", "Observation", [], BASE))
    assert [e["resource"]["id"] for e in bundle["entry"]] == ["obs4"]
    assert bundle["link"][0]["url"] == f"{BASE}/Patient/pat2/Observation"
    bundle = orjson.loads(await s.search_compartment(
        data, store, "Patient", "pat1", "Observation", [("date", "ge2020-01-03")], BASE))
    assert [e["resource"]["id"] for e in bundle["entry"]] == ["obs2", "obs3"]
    empty = orjson.loads(await s.search_compartment(data, store, "Patient", "nobody", "Observation", [], BASE))
    assert "entry" not in empty


async def test_system_search_with_type(store: Storage, data: RequestContext) -> None:
    bundle = orjson.loads(await s.search_system(data, store, [("_type", "Patient,Observation"),
                                                              ("_id", "pat2,obs4")], BASE))
    assert sorted(e["resource"]["id"] for e in bundle["entry"]) == ["obs4", "pat2"]


async def test_strict_rejects_unknown_parameter_and_lenient_reports_it(store: Storage, data: RequestContext) -> None:
    with pytest.raises(FhirError) as err:
        await s.search_type(data, store, "Patient", [("nonsense", "1")], BASE)
    assert err.value.status == 400 and "nonsense" in str(err.value)
    bundle = orjson.loads(await s.search_type(data, store, "Patient", [("nonsense", "1"), ("gender", "male")],
                                              BASE, "lenient"))
    modes = [(e["search"]["mode"], e["resource"]["resourceType"]) for e in bundle["entry"]]
    assert modes == [("match", "Patient"), ("outcome", "OperationOutcome")]
    assert "nonsense" in bundle["entry"][1]["resource"]["issue"][0]["diagnostics"]
    assert bundle["link"][0]["url"] == f"{BASE}/Patient?gender=male"


async def test_bad_value_is_400_even_when_lenient(store: Storage, data: RequestContext) -> None:
    with pytest.raises(FhirError):
        await s.search_type(data, store, "Patient", [("birthdate", "notadate")], BASE, "lenient")


async def test_summary_and_elements_subset_entries(store: Storage, data: RequestContext) -> None:
    bundle = orjson.loads(await s.search_type(data, store, "Patient", [("_id", "pat1"), ("_elements", "gender")], BASE))
    res = bundle["entry"][0]["resource"]
    assert "gender" in res and "name" not in res and res["meta"]["tag"][-1]["code"] == "SUBSETTED"
    bundle = orjson.loads(await s.search_type(data, store, "Patient", [("_summary", "count")], BASE))
    assert bundle["total"] == 2 and "entry" not in bundle
    bundle = orjson.loads(await s.search_type(data, store, "Patient", [("_id", "pat1"), ("_summary", "true")], BASE))
    assert "text" not in bundle["entry"][0]["resource"]


@pytest.mark.parametrize(
    ("res_type", "param", "table"),
    [("Observation", ("code", "8480-6"), "idx_token"), ("Patient", ("_content", "dupont"), "fulltext"),
     ("Patient", ("_sort", "-birthdate"), "idx_date")],
)
async def test_explain_reports_sql_and_plan(
    store: Storage, data: RequestContext, res_type: str, param: tuple[str, str], table: str
) -> None:
    bundle = orjson.loads(await s.search_type(data, store, res_type, [param, ("_explain", "true")], BASE))
    diag = [i["diagnostics"] for i in bundle["entry"][-1]["resource"]["issue"]]
    assert diag[0].startswith("SQL: SELECT") and table in diag[0]
    assert diag[1].startswith("Plan: ")


async def test_find_ids_drives_conditional_create(store: Storage, data: RequestContext) -> None:
    ident = "urn:oid:1.2.250.1.213.1.4.8|1234567890123"
    result = await create(data, store, "Patient", {"resourceType": "Patient"}, if_none_exist=f"identifier={ident}")
    assert result.existing and result.stored.id == "pat1"
    found = await store.run_read(lambda conn: find_ids(conn, "Patient", [("gender", "male,female")], 10, EVERYTHING))
    assert sorted(i for _, i in found) == ["pat1", "pat2"]
    with pytest.raises(FhirError):
        await store.run_read(lambda conn: find_ids(conn, "Patient", [("bogus", "x")], 10, EVERYTHING))




async def test_search_over_http_follows_absolute_next_links_and_honours_prefer(client: Any) -> None:
    for i in range(5):
        r = await client.put(f"/Observation/h{i}", json={**_obs(i, "hp"), "id": f"h{i}"})
        assert r.status_code in (200, 201)
    await client.put("/Patient/hp", json={"resourceType": "Patient", "id": "hp", "name": [{"family": "Http"}]})
    seen: list[str] = []
    url = "/Observation?subject=Patient/hp&_count=2&_sort=-date"
    while url:
        bundle = (await client.get(url)).json()
        seen += [e["resource"]["id"] for e in bundle["entry"]]
        nxt = [link["url"] for link in bundle["link"] if link["relation"] == "next"]
        url = nxt[0] if nxt else ""
        assert not url or url.startswith("http://testserver/fhir/Observation?")
    assert seen == ["h4", "h3", "h2", "h1", "h0"]
    posted = (await client.post("/Patient/_search", data={"family": "http"})).json()
    assert [e["resource"]["id"] for e in posted["entry"]] == ["hp"]
    assert (await client.get("/Patient?nonsense=1")).status_code == 400
    lenient = await client.get("/Patient?nonsense=1&family=http", headers={"Prefer": "handling=lenient"})
    assert lenient.status_code == 200 and lenient.json()["entry"][-1]["search"]["mode"] == "outcome"
    comp = (await client.get("/Patient/hp/Observation?_count=1&_total=accurate")).json()
    assert comp["total"] == 5 and len(comp["entry"]) == 1
    system = (await client.get("/?_type=Patient,Observation&_id=hp,h0")).json()
    assert sorted(e["resource"]["id"] for e in system["entry"]) == ["h0", "hp"]
