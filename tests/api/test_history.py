"""History at instance, type and system level: _since, _at, _count and paging links."""

from __future__ import annotations

import httpx

from tests.api.test_crud import PATIENT


async def _make(client: httpx.AsyncClient, n: int) -> list[str]:
    return [(await client.post("/Patient", json=PATIENT)).json()["id"] for _ in range(n)]


async def test_history_bundle_shape(client: httpx.AsyncClient) -> None:
    pid = (await _make(client, 1))[0]
    await client.put(f"/Patient/{pid}", json={**PATIENT, "id": pid, "gender": "male"})
    r = await client.get(f"/Patient/{pid}/_history")
    assert r.status_code == 200
    bundle = r.json()
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "history"
    first = bundle["entry"][0]
    assert first["fullUrl"] == f"http://testserver/fhir/Patient/{pid}"
    assert first["request"] == {"method": "PUT", "url": f"Patient/{pid}"}
    assert first["response"]["etag"] == 'W/"2"' and first["response"]["status"].startswith("200")
    assert bundle["entry"][1]["request"] == {"method": "POST", "url": "Patient"}
    assert bundle["link"][0]["relation"] == "self"


async def test_history_of_unknown_resource_is_404(client: httpx.AsyncClient) -> None:
    assert (await client.get("/Patient/nobody/_history")).status_code == 404


async def test_type_and_system_history_follow_absolute_next_links(client: httpx.AsyncClient) -> None:
    ids = await _make(client, 5)
    await client.post("/Observation", json={"resourceType": "Observation", "status": "final", "code": {"text": "x"}})
    seen: list[str] = []
    url: str | None = "http://testserver/fhir/Patient/_history?_count=2"
    pages = 0
    while url:
        bundle = (await client.get(url)).json()
        seen += [e["resource"]["id"] for e in bundle.get("entry", [])]
        url = next((link["url"] for link in bundle["link"] if link["relation"] == "next"), None)
        assert url is None or url.startswith("http://testserver/fhir/Patient/_history?")
        pages += 1
    assert pages == 3
    assert seen == list(reversed(ids))
    system = (await client.get("/_history")).json()
    assert len(system["entry"]) == 6


async def test_paging_is_stable_under_concurrent_writes(client: httpx.AsyncClient) -> None:
    await _make(client, 4)
    first = (await client.get("/Patient/_history", params={"_count": "2"})).json()
    next_url = next(link["url"] for link in first["link"] if link["relation"] == "next")
    await _make(client, 3)  # written between two page fetches
    second = (await client.get(next_url)).json()
    first_ids = {e["resource"]["id"] for e in first["entry"]}
    second_ids = {e["resource"]["id"] for e in second["entry"]}
    assert len(second_ids) == 2 and not first_ids & second_ids


async def test_since_and_at(client: httpx.AsyncClient) -> None:
    pid = (await _make(client, 1))[0]
    v1 = (await client.get(f"/Patient/{pid}")).json()["meta"]["lastUpdated"]
    await client.put(f"/Patient/{pid}", json={**PATIENT, "id": pid, "gender": "male"})
    v2 = (await client.get(f"/Patient/{pid}")).json()["meta"]["lastUpdated"]
    since = (await client.get(f"/Patient/{pid}/_history", params={"_since": v2})).json()
    assert [e["response"]["etag"] for e in since["entry"]] == ['W/"2"']
    at = (await client.get("/Patient/_history", params={"_at": v1})).json()
    assert [e["response"]["etag"] for e in at["entry"]] == ['W/"1"']
    assert (await client.get("/_history", params={"_since": "yesterday"})).status_code == 400
    assert (await client.get("/_history", params={"_count": "-1"})).status_code == 400
    assert (await client.get("/_history", params={"_foo": "1"})).status_code == 400
