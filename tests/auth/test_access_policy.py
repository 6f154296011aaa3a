"""The care-team and consent policy over real HTTP with real tokens: nothing leaks by any path.

Dr A is in Patient pa's active CareTeam; Dr B is in pb's through a PractitionerRole; pc's
CareTeam names Dr A but pc's active Consent denies Dr A. Every read path must show Dr A
pa's data and nothing of pb or pc; writes must not reach or attach to pb; every request is
audited and every write has a Provenance.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from fhir_server.app import create_app
from fhir_server.auth.scopes import parse_scopes
from tests.auth.helpers import BASE, bearer

pytestmark = pytest.mark.anyio


def _obs(id_: str, patient: str) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": id_, "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
            "subject": {"reference": f"Patient/{patient}"}}


def _team(id_: str, patient: str, member: str, status: str = "active") -> dict[str, Any]:
    return {"resourceType": "CareTeam", "id": id_, "status": status, "subject": {"reference": f"Patient/{patient}"},
            "participant": [{"member": {"reference": member}}]}


DATA: list[dict[str, Any]] = [
    {"resourceType": "Organization", "id": "org-b", "name": "Cabinet B"},
    {"resourceType": "Practitioner", "id": "dr-a", "name": [{"family": "A"}]},
    {"resourceType": "Practitioner", "id": "dr-b", "name": [{"family": "B"}]},
    {"resourceType": "PractitionerRole", "id": "role-b", "practitioner": {"reference": "Practitioner/dr-b"},
     "organization": {"reference": "Organization/org-b"}},
    *({"resourceType": "Patient", "id": p, "gender": "female", "name": [{"family": f"Fam{p}"}]}
      for p in ("pa", "pb", "pc")),
    _team("ct-a", "pa", "Practitioner/dr-a"),
    _team("ct-b", "pb", "PractitionerRole/role-b"),
    _team("ct-c", "pc", "Practitioner/dr-a"),
    _team("ct-old", "pb", "Practitioner/dr-a", status="inactive"),
    {"resourceType": "Consent", "id": "consent-c", "status": "active",
     "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
     "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
     "patient": {"reference": "Patient/pc"},
     "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}]},
     "provision": {"type": "deny", "actor": [{"role": {"coding": [{
         "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "PRCP"}]},
         "reference": {"reference": "Practitioner/dr-a"}}]}},
    _obs("oa", "pa"), _obs("ob", "pb"), _obs("oc", "pc"),
]


class World:
    def __init__(self, app: Any, http: httpx.AsyncClient) -> None:
        self.app, self.http = app, http

    def token(self, scopes: str = "user/*.cruds", kind: str = "user", **kw: Any) -> dict[str, str]:
        token, _ = self.app.state.auth.access_token(
            BASE, client_id="practice-software", subject=kw.get("fhir_user") or kind, kind=kind,
            scopes=parse_scopes(scopes), **kw)
        return bearer(token)

    async def get(self, url: str, who: dict[str, str], **kw: Any) -> httpx.Response:
        return await self.http.get(url, headers={**who, **kw.pop("headers", {})}, **kw)

    async def ids(self, url: str, who: dict[str, str], mode: str | None = None) -> list[str]:
        r = await self.get(url, who)
        assert r.status_code == 200, r.text
        return sorted(f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in r.json().get("entry", [])
                      if mode is None or e.get("search", {}).get("mode") == mode)


@pytest.fixture
async def world(settings_factory: Any) -> AsyncIterator[World]:
    app = create_app(settings_factory(auth="on"))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as http:
            w = World(app, http)
            await app.state.auth.ensure_keys(app.state.storage)
            feed = w.token("system/*.cruds", kind="system")
            bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
                {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}} for r in DATA]}
            r = await http.post("", json=bundle, headers=feed)
            assert r.status_code == 200, r.text
            yield w


@pytest.fixture
def dr_a(world: World) -> dict[str, str]:
    return world.token(fhir_user="Practitioner/dr-a")


async def test_search_shows_only_the_care_teams_patients(world: World, dr_a: dict[str, str]) -> None:
    assert await world.ids("/Patient", dr_a) == ["Patient/pa"]
    assert await world.ids("/Observation", dr_a) == ["Observation/oa"]
    assert await world.ids("/CareTeam", dr_a) == ["CareTeam/ct-a"]
    assert await world.ids("/Consent", dr_a) == []
    # directory data is not patient data
    assert "Practitioner/dr-b" in await world.ids("/Practitioner", dr_a)


async def test_a_practitioner_role_and_its_organisation_give_access(world: World) -> None:
    dr_b = world.token(fhir_user="Practitioner/dr-b")
    assert await world.ids("/Patient", dr_b) == ["Patient/pb"]
    org_client = world.token("system/*.rs", kind="system", organization="Organization/org-b")
    assert await world.ids("/Patient", org_client) == ["Patient/pb"]


async def test_consent_deny_and_inactive_care_teams_hide_the_patient(world: World, dr_a: dict[str, str]) -> None:
    for path in ("/Patient/pc", "/Observation/oc", "/Patient/pb"):
        assert (await world.get(path, dr_a)).status_code == 404


@pytest.mark.parametrize("path", [
    "/Patient/pb", "/Patient/pb/_history/1", "/Patient/pb/_history", "/Observation/ob", "/CareTeam/ct-b",
    "/Observation/ob/_history/1",
])
async def test_hidden_resources_answer_404_on_every_instance_path(world: World, dr_a: dict[str, str],
                                                                  path: str) -> None:
    r = await world.get(path, dr_a)
    assert r.status_code == 404, r.text
    assert r.json()["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize(("url", "expected"), [
    ("/Observation?subject.family=Fampb", []),
    ("/Observation?subject:Patient.gender=female", ["Observation/oa"]),
    ("/Patient?_has:Observation:subject:code=8480-6", ["Patient/pa"]),
    ("/Patient?_has:CareTeam:subject:status=active,inactive", ["Patient/pa"]),
    ("/Observation?code=8480-6&_include=Observation:subject", ["Observation/oa", "Patient/pa"]),
    ("/Observation?_include:iterate=*&_include=*", ["Observation/oa", "Patient/pa"]),
    ("/Patient?_revinclude=Observation:subject&_revinclude=CareTeam:subject",
     ["CareTeam/ct-a", "Observation/oa", "Patient/pa"]),
    ("/Patient/pb/Observation", []),
    ("/Patient/pa/Observation", ["Observation/oa"]),
    ("?_type=Patient,Observation,CareTeam", ["CareTeam/ct-a", "Observation/oa", "Patient/pa"]),
    ("/Observation?_id=ob,oc", []),
])
async def test_chains_has_includes_and_compartments_do_not_leak(world: World, dr_a: dict[str, str], url: str,
                                                                expected: list[str]) -> None:
    assert await world.ids(url, dr_a) == expected


async def test_history_lists_only_visible_versions(world: World, dr_a: dict[str, str]) -> None:
    ids = {e.split("/")[1] for e in await world.ids("/_history", dr_a)}
    assert "pb" not in ids and "ob" not in ids and "pa" in ids
    assert {e for e in await world.ids("/Patient/_history", dr_a)} == {"Patient/pa"}


async def test_bundle_get_entries_apply_the_policy(world: World, dr_a: dict[str, str]) -> None:
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": "Patient/pb"}},
        {"request": {"method": "GET", "url": "Patient/pa"}},
        {"request": {"method": "GET", "url": "Observation?subject=Patient/pb"}},
    ]}
    r = await world.http.post("", json=bundle, headers=dr_a)
    entries = r.json()["entry"]
    assert entries[0]["response"]["status"].startswith("404")
    assert entries[1]["response"]["status"].startswith("200")
    assert entries[2]["resource"].get("entry") is None


async def test_conditional_writes_cannot_probe_or_touch_hidden_resources(world: World, dr_a: dict[str, str]) -> None:
    feed = world.token("system/*.cruds", kind="system")
    r = await world.http.delete("/Observation?_id=ob", headers=dr_a)
    assert r.status_code in (200, 204)
    assert (await world.get("/Observation/ob", feed)).status_code == 200  # not deleted
    # a conditional update that would match ob creates nothing for pb either
    r = await world.http.put("/Observation?_id=ob", json=_obs("ob", "pb") | {"id": "ob"}, headers=dr_a)
    assert r.status_code in (403, 404), r.text
    r = await world.http.post("/Observation", json=_obs("x", "pa"), headers={**dr_a, "If-None-Exist": "_id=ob"})
    assert r.status_code == 201  # ob is invisible: no match, a new Observation of pa
    patch = b'[{"op": "add", "path": "/status", "value": "amended"}]'
    r = await world.http.patch("/Observation?_id=ob", content=patch,
                               headers={**dr_a, "Content-Type": "application/json-patch+json"})
    assert r.status_code == 404
    r = await world.http.patch("/Observation/ob", content=patch,
                               headers={**dr_a, "Content-Type": "application/json-patch+json"})
    assert r.status_code == 404
    assert (await world.get("/Observation/ob", feed)).json()["status"] == "final"
    r = await world.get("/Patient/pb/$validate?mode=delete", dr_a)
    assert r.status_code == 404


async def test_writes_refused_for_patients_out_of_reach(world: World, dr_a: dict[str, str]) -> None:
    r = await world.http.post("/Observation", json=_obs("new", "pb"), headers=dr_a)
    assert r.status_code == 403 and r.json()["resourceType"] == "OperationOutcome"
    assert r.headers["www-authenticate"].startswith('Bearer realm="fhir", error="insufficient_scope"')
    assert (await world.http.put("/Observation/ob", json=_obs("ob", "pa"), headers=dr_a)).status_code == 404
    # joining pb's care team: the team is hidden, a new team for pb is refused
    assert (await world.http.put("/CareTeam/ct-b", json=_team("ct-b", "pb", "Practitioner/dr-a"),
                                 headers=dr_a)).status_code == 404
    r = await world.http.post("/CareTeam", json=_team("x", "pb", "Practitioner/dr-a"), headers=dr_a)
    assert r.status_code == 403
    assert await world.ids("/Patient", dr_a) == ["Patient/pa"]
    # data of a visible patient is fine
    assert (await world.http.post("/Observation", json=_obs("n2", "pa"), headers=dr_a)).status_code == 201


async def test_new_patient_and_first_care_team_in_one_transaction(world: World, dr_a: dict[str, str]) -> None:
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:0b7c3c8e-1111-4a4a-8f8f-000000000001",
         "resource": {"resourceType": "Patient", "name": [{"family": "Nouveau"}]},
         "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "CareTeam", "status": "active",
                      "subject": {"reference": "urn:uuid:0b7c3c8e-1111-4a4a-8f8f-000000000001"},
                      "participant": [{"member": {"reference": "Practitioner/dr-a"}}]},
         "request": {"method": "POST", "url": "CareTeam"}},
    ]}
    r = await world.http.post("", json=bundle, headers=dr_a)
    assert r.status_code == 200, r.text
    assert len(await world.ids("/Patient", dr_a)) == 2


async def test_patient_tokens_see_their_own_compartment(world: World) -> None:
    pa = world.token("patient/*.rs", kind="patient", patient="pa")
    assert await world.ids("/Patient", pa) == ["Patient/pa"]
    assert await world.ids("/Observation", pa) == ["Observation/oa"]
    assert (await world.get("/Observation/ob", pa)).status_code == 404


async def test_scopes_limit_types_and_granular_constraints(world: World) -> None:
    only_patients = world.token("user/Patient.rs", fhir_user="Practitioner/dr-a")
    r = await world.get("/Observation", only_patients)
    assert r.status_code == 403 and 'error="insufficient_scope"' in r.headers["www-authenticate"]
    assert (await world.get("/Observation/oa", only_patients)).status_code == 403
    assert await world.ids("/Patient?_revinclude=Observation:subject", only_patients) == ["Patient/pa"]
    granular = world.token("user/Observation.rs?code=http://loinc.org|0000-0 user/Patient.rs",
                           fhir_user="Practitioner/dr-a")
    assert await world.ids("/Observation", granular) == []
    read_only = world.token("user/*.rs", fhir_user="Practitioner/dr-a")
    assert (await world.http.post("/Observation", json=_obs("z", "pa"), headers=read_only)).status_code == 403


async def test_break_the_glass_is_granted_by_scope_and_audited(world: World) -> None:
    plain = world.token(fhir_user="Practitioner/dr-a")
    r = await world.get("/Patient/pb", plain, headers={"X-Break-Glass-Reason": "emergency"})
    assert r.status_code in (401, 403)
    btg = world.token("user/*.cruds btg", fhir_user="Practitioner/dr-a")
    assert (await world.get("/Patient/pb", btg)).status_code == 404  # no reason: the policy holds
    assert (await world.get("/Patient/pb", btg, headers={"X-Break-Glass-Reason": "urgence vitale"})).status_code == 200
    await world.app.state.audit_writer.flush()
    auditor = world.token("system/AuditEvent.rs", kind="system")
    r = await world.get("/AuditEvent?_count=500", auditor)
    reasons = [e["resource"].get("purposeOfEvent", [{}])[0].get("text") for e in r.json()["entry"]]
    assert "urgence vitale" in reasons


async def test_every_request_is_audited_and_every_write_has_provenance(world: World, dr_a: dict[str, str]) -> None:
    await world.get("/Patient/pa", dr_a)
    await world.get("/Patient/pb", dr_a)
    await world.get("/Observation?code=8480-6", dr_a)
    await world.get("/Patient/pa", {"Authorization": "Bearer forged.token.value"})
    r = await world.http.post("/Observation", json=_obs("p1", "pa"), headers=dr_a)
    new_id = r.json()["id"]
    await world.app.state.audit_writer.flush()
    auditor = world.token("system/AuditEvent.rs system/Provenance.rs", kind="system")
    events = [e["resource"] for e in (await world.get("/AuditEvent?_count=500", auditor)).json()["entry"]]
    mine = [e for e in events if e["agent"][0]["who"].get("reference") == "Practitioner/dr-a"]
    subtypes = [(e["subtype"][0]["code"], e["outcome"], e.get("entity", [{}])[0].get("what", {}).get("reference"))
                for e in mine]
    assert ("read", "0", "Patient/pa") in subtypes
    assert ("read", "4", "Patient/pb") in subtypes
    assert any(s == "search-type" for s, _o, _w in subtypes)
    searched = [e for e in mine if e["subtype"][0]["code"] == "search-type"]
    assert base64.b64decode(searched[0]["entity"][0]["query"]).decode() == "code=8480-6"
    assert ("create", "0", f"Observation/{new_id}/_history/1") in subtypes
    refused = [e for e in events if e.get("outcomeDesc") == "HTTP 401"]
    assert refused and refused[0]["agent"][0]["who"]["display"] == "anonymous"
    prov = await world.get(f"/Provenance?target=Observation/{new_id}", auditor)
    [p] = [e["resource"] for e in prov.json()["entry"]]
    assert p["agent"][0]["who"] == {"reference": "Practitioner/dr-a"}
    assert p["activity"]["coding"][0]["code"] == "CREATE"
    # the trail is the auditors': not readable with wildcard scopes, never rewritten
    assert (await world.get("/AuditEvent", dr_a)).status_code == 403
    event = events[0]
    r = await world.http.put(f"/AuditEvent/{event['id']}", json=event, headers=world.token(
        "system/*.cruds system/AuditEvent.cruds", kind="system"))
    assert r.status_code == 405
    r = await world.http.delete(f"/AuditEvent/{event['id']}", headers=world.token(
        "system/AuditEvent.cruds", kind="system"))
    assert r.status_code == 405
