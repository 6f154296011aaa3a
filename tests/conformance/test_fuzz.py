"""Hostile input never produces a 5xx and never leaves a partial write."""

from __future__ import annotations

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

TYPES = ["Patient", "CarePlan", "CareTeam", "ServiceRequest", "Task", "Observation", "Nope"]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)
resources = st.builds(
    lambda t, extra: {"resourceType": t, **extra},
    st.sampled_from(TYPES),
    st.dictionaries(
        st.sampled_from(["id", "meta", "name", "status", "subject", "identifier", "birthDate", "x", "text", "_x"]),
        json_values,
        max_size=5,
    ),
)


async def test_random_resources_never_give_5xx(client: httpx.AsyncClient) -> None:
    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(resource=resources, method=st.sampled_from(["POST", "PUT", "PATCH"]))
    def inner(resource: dict, method: str) -> None:  # type: ignore[type-arg]
        cases.append((resource, method))

    cases: list[tuple[dict, str]] = []  # type: ignore[type-arg]
    inner()
    for resource, method in cases:
        type_ = resource["resourceType"]
        url = f"/{type_}" if method == "POST" else f"/{type_}/fuzz-1"
        r = await client.request(method, url, json=resource)
        assert r.status_code < 500, (method, resource, r.text)
        assert r.headers["content-type"].startswith("application/fhir+json")


async def test_random_bytes_never_give_5xx(client: httpx.AsyncClient) -> None:
    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(body=st.binary(max_size=200))
    def inner(body: bytes) -> None:
        bodies.append(body)

    bodies: list[bytes] = []
    inner()
    for body in bodies:
        for url in ("/Patient", "/Patient/fuzz-2"):
            r = await client.post(url, content=body, headers={"content-type": "application/fhir+json"})
            assert r.status_code < 500, body
    hist = (await client.get("/_history")).json()
    assert all(e["resource"]["resourceType"] == "Patient" for e in hist.get("entry", []))
