"""The integration contract: a route reads `request.state.caller`, filled by the middleware."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from fhir_server.auth import caller_of
from fhir_server.auth.caller import Caller
from fhir_server.auth.scopes import ScopeSet
from tests.auth.helpers import TOKEN_URL, assertion, bearer, public_jwks, register, rsa_key


async def whoami(request: Request) -> JSONResponse:
    c = request.state.caller
    assert c is caller_of(request)
    return JSONResponse({"kind": c.kind, "client_id": c.client_id, "subject": c.subject, "fhir_user": c.fhir_user,
                         "patient": c.patient, "organization": c.organization, "scopes": str(c.scopes),
                         "context": c.scopes.context, "token_id": bool(c.token_id), "break_glass": c.break_glass,
                         "read_obs": c.scopes.allows("Observation", "r"),
                         "search_obs": c.scopes.constraints("Observation", "s")})


def _with_whoami(http: Any) -> None:
    http._transport.app.router.routes.insert(0, Route("/fhir/whoami-test", whoami, methods=["GET"]))


async def test_a_backend_caller_as_a_route_sees_it(client_factory: Any, database_url: str) -> None:
    key = rsa_key()
    register(database_url, jwks=public_jwks(key), acts_for="Organization/cabinet-1",
             scopes="system/Observation.rs?category=laboratory system/Patient.rs btg")
    async with client_factory(auth="on") as http:
        _with_whoami(http)
        r = await http.post(TOKEN_URL, data={
            "grant_type": "client_credentials", "scope": "system/Observation.rs?category=laboratory btg",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion(key)})
        assert r.status_code == 200, r.text
        token = r.json()["access_token"]
        r = await http.get("/whoami-test", headers={**bearer(token), "X-Break-Glass-Reason": "urgence vitale"})
        assert r.status_code == 200, r.text
        assert r.json() == {
            "kind": "system", "client_id": "backend", "subject": "backend", "fhir_user": None, "patient": None,
            "organization": "Organization/cabinet-1", "scopes": "system/Observation.rs?category=laboratory btg",
            "context": "system", "token_id": True, "break_glass": "urgence vitale", "read_obs": True,
            "search_obs": [[["category", "laboratory"]]],
        }


@pytest.mark.parametrize("path", ["/metadata", "/.well-known/smart-configuration"])
async def test_public_endpoints_ignore_tokens(client_factory: Any, path: str) -> None:
    async with client_factory(auth="on") as http:
        r = await http.get(path, headers={"Authorization": "Bearer garbage"})
        assert r.status_code == 200


async def test_auth_off_caller_is_unrestricted(client_factory: Any) -> None:
    async with client_factory(auth="off") as http:
        _with_whoami(http)
        body = (await http.get("/whoami-test")).json()
        assert body["kind"] == "anonymous-off" and body["read_obs"] is True and body["search_obs"] is None


def test_caller_values() -> None:
    assert Caller.unrestricted().scopes.allows("Anything", "d")
    assert Caller.unrestricted().is_unrestricted and not Caller.anonymous().is_unrestricted
    assert not Caller.anonymous().scopes.allows("Patient", "r")
    assert Caller.anonymous().scopes == ScopeSet()
    c = Caller("user", "app", "dr", "Practitioner/1", "p1", None, ScopeSet(), "t")
    assert hash(c) == hash(Caller("user", "app", "dr", "Practitioner/1", "p1", None, ScopeSet(), "t"))
