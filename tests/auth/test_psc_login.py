"""Log in with Pro Santé Connect on the authorize page, against a real local OpenID provider."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from fhir_server.auth.external import IDNATPS_SYSTEM
from tests.auth.fake_psc import ISSUER, FakePsc, serve_psc
from tests.auth.helpers import BASE, TOKEN_URL, bearer, pkce, register, rsa_key

REDIRECT = "https://app.example/callback"
AUTHORIZE = "http://testserver/auth/authorize"


async def _put(http: Any, path: str, body: dict[str, Any]) -> None:
    app = http._transport.app
    saved, app.state.auth.enabled = app.state.auth.enabled, False
    try:
        assert (await http.put(path, json=body)).status_code in (200, 201)
    finally:
        app.state.auth.enabled = saved


def _settings(psc: FakePsc) -> dict[str, str]:
    return {"auth": "on", "external_issuer": ISSUER, "external_jwks_url": f"{psc.url}/certs",
            "external_audience": "coordination-fhir", "external_client_id": psc.client_id,
            "external_client_secret": psc.client_secret, "external_authorize_url": f"{psc.url}/auth",
            "external_token_url": f"{psc.url}/token"}


async def _login(http: Any, psc: FakePsc, params: dict[str, str]) -> Any:
    page = await http.get(AUTHORIZE, params=params)
    assert "Log in with Pro Santé Connect" in page.text
    r = await http.get("http://testserver/auth/external/login", params=params)
    assert r.status_code == 302 and r.headers["location"].startswith(psc.url)
    back = httpx.get(r.headers["location"], follow_redirects=False)  # the browser at PSC
    assert back.status_code == 302
    return await http.get(back.headers["location"])  # the browser back at our callback


async def test_psc_login_gives_a_practitioner_token(client_factory: Any, database_url: str) -> None:
    register(database_url, "app", auth_method="none", redirect_uris=(REDIRECT,), scopes="openid fhirUser user/*.rs",
             name="Coord app")
    verifier, challenge = pkce()
    params = {"response_type": "code", "client_id": "app", "redirect_uri": REDIRECT,
              "scope": "openid fhirUser user/*.rs", "state": "s1", "aud": BASE, "code_challenge": challenge,
              "code_challenge_method": "S256"}
    with serve_psc(FakePsc(rsa_key("psc"), "our-fhir", "psc-secret", "810002909371")) as psc:
        async with client_factory(**_settings(psc)) as http:
            await _put(http, "/Practitioner/prac1", {"resourceType": "Practitioner", "id": "prac1", "identifier": [
                {"system": IDNATPS_SYSTEM, "value": "810002909371"}]})
            consent = await _login(http, psc, params)
            assert consent.status_code == 200, consent.text
            assert "Practitioner/prac1" in consent.text and 'action="../authorize"' in consent.text
            ticket = re.search(r'name="login_ticket" value="([^"]+)"', consent.text)
            assert ticket is not None
            r = await http.post(AUTHORIZE, data={**params, "login_ticket": ticket.group(1), "decision": "allow"})
            assert r.status_code == 302, r.text
            code = parse_qs(urlsplit(r.headers["location"]).query)["code"][0]
            r = await http.post(TOKEN_URL, data={"grant_type": "authorization_code", "code": code, "client_id": "app",
                                                 "redirect_uri": REDIRECT, "code_verifier": verifier})
            assert r.status_code == 200, r.text
            token = r.json()["access_token"]
            caller = await http._transport.app.state.auth.authenticate(token, http._transport.app.state.storage, BASE)
            assert (caller.kind, caller.fhir_user) == ("user", "Practitioner/prac1")
            assert (await http.get("/Practitioner/prac1", headers=bearer(token))).status_code == 200

            # The ticket is bound to its authorize request: another PKCE challenge cannot reuse it.
            _, other = pkce()
            r = await http.post(AUTHORIZE, data={**params, "code_challenge": other, "login_ticket": ticket.group(1),
                                                 "decision": "allow"})
            assert r.status_code == 401 and "log in again" in r.text


async def test_callback_needs_the_browser_that_started_it(client_factory: Any, database_url: str) -> None:
    register(database_url, "app", auth_method="none", redirect_uris=(REDIRECT,), scopes="user/*.rs")
    _, challenge = pkce()
    params = {"response_type": "code", "client_id": "app", "redirect_uri": REDIRECT, "scope": "user/*.rs",
              "aud": BASE, "code_challenge": challenge, "code_challenge_method": "S256"}
    with serve_psc(FakePsc(rsa_key("psc"), "our-fhir", "psc-secret", "810002909371")) as psc:
        async with client_factory(**_settings(psc)) as http:
            r = await http.get("http://testserver/auth/external/login", params=params)
            back = httpx.get(r.headers["location"], follow_redirects=False)
            http.cookies.clear()  # another browser (login CSRF)
            r = await http.get(back.headers["location"])
            assert r.status_code == 400 and "not started in this browser" in r.text
            r = await http.get("http://testserver/auth/external/callback?code=x&state=forged")
            assert r.status_code == 400


async def test_unknown_professional_gets_no_consent_page(client_factory: Any, database_url: str) -> None:
    register(database_url, "app", auth_method="none", redirect_uris=(REDIRECT,), scopes="user/*.rs")
    _, challenge = pkce()
    params = {"response_type": "code", "client_id": "app", "redirect_uri": REDIRECT, "scope": "user/*.rs",
              "aud": BASE, "code_challenge": challenge, "code_challenge_method": "S256"}
    with serve_psc(FakePsc(rsa_key("psc"), "our-fhir", "psc-secret", "899999999999")) as psc:
        async with client_factory(**_settings(psc)) as http:
            r = await _login(http, psc, params)
            assert r.status_code == 403 and "899999999999" in r.text
