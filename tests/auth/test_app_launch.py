"""SMART App Launch v2 over HTTP: authorize page, code + PKCE S256, id_token, refresh rotation."""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest

from tests.auth.helpers import (
    BASE,
    TOKEN_URL,
    backend_token,
    bearer,
    pkce,
    public_jwks,
    register,
    register_user,
    rsa_key,
)

AUTHORIZE = "http://testserver/auth/authorize"
REDIRECT = "https://app.example/callback"


def _params(challenge: str, scope: str = "openid fhirUser launch/patient patient/*.rs offline_access",
            **extra: str) -> dict[str, str]:
    return {"response_type": "code", "client_id": "app", "redirect_uri": REDIRECT, "scope": scope, "state": "st8",
            "aud": BASE, "code_challenge": challenge, "code_challenge_method": "S256", **extra}


def _setup(database_url: str, allowed: str = "openid fhirUser launch launch/patient offline_access patient/*.rs "
           "user/*.cruds") -> None:
    register(database_url, "app", auth_method="none", redirect_uris=(REDIRECT,), scopes=allowed, name="Coord app")
    register_user(database_url, "alice", "correct horse", "Patient/pat1")
    register_user(database_url, "dr", "doctor-pass", "Practitioner/prac1")


async def _patient(http: Any, id_: str) -> None:
    app = http._transport.app
    saved = app.state.auth.enabled
    app.state.auth.enabled = False
    try:
        r = await http.put(f"/Patient/{id_}", json={"resourceType": "Patient", "id": id_})
        assert r.status_code in (200, 201), r.text
    finally:
        app.state.auth.enabled = saved


async def _code(http: Any, params: dict[str, str], username: str = "alice", password: str = "correct horse",
                **form: str) -> dict[str, list[str]]:
    r = await http.get(AUTHORIZE, params=params)
    assert r.status_code == 200, r.text
    assert "Coord app" in r.text
    r = await http.post(AUTHORIZE, data={**params, "username": username, "password": password,
                                         "decision": "allow", **form})
    assert r.status_code == 302, r.text
    location = r.headers["location"]
    assert location.startswith(REDIRECT)
    return parse_qs(urlsplit(location).query)


async def _exchange(http: Any, code: str, verifier: str, **extra: str) -> Any:
    return await http.post(TOKEN_URL, data={"grant_type": "authorization_code", "code": code,
                                            "redirect_uri": REDIRECT, "client_id": "app",
                                            "code_verifier": verifier, **extra})


def _claims(token: str) -> dict[str, Any]:
    return dict(orjson.loads(base64.urlsafe_b64decode(token.split(".")[1] + "==")))


async def test_standalone_patient_launch_full_flow(client_factory: Any, database_url: str) -> None:
    _setup(database_url)
    verifier, challenge = pkce()
    async with client_factory(auth="on") as http:
        await _patient(http, "pat1")
        page = await http.get(AUTHORIZE, params=_params(challenge))
        for scope in ("patient/*.rs", "offline_access", "launch/patient", "openid", "fhirUser"):
            assert scope in page.text  # the consent page lists every requested scope
        got = await _code(http, _params(challenge))
        assert got["state"] == ["st8"]
        r = await _exchange(http, got["code"][0], verifier)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["patient"] == "pat1" and body["refresh_token"]
        id_token = _claims(body["id_token"])
        assert id_token["fhirUser"] == f"{BASE}/Patient/pat1" and id_token["aud"] == "app"
        access = _claims(body["access_token"])
        assert access["kind"] == "patient" and access["patient"] == "pat1"
        r = await http.get("/Patient/pat1", headers=bearer(body["access_token"]))
        assert r.status_code == 200, r.text
        caller = await http._transport.app.state.auth.authenticate(body["access_token"],
                                                                   http._transport.app.state.storage, BASE)
        assert (caller.kind, caller.fhir_user, caller.patient, caller.scopes.context) == (
            "patient", "Patient/pat1", "pat1", "patient")


async def test_code_is_single_use_and_reuse_revokes_what_it_gave(client_factory: Any, database_url: str) -> None:
    _setup(database_url)
    verifier, challenge = pkce()
    async with client_factory(auth="on") as http:
        await _patient(http, "pat1")
        code = (await _code(http, _params(challenge)))["code"][0]
        first = await _exchange(http, code, verifier)
        assert first.status_code == 200
        again = await _exchange(http, code, verifier)
        assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
        r = await http.get("/Patient/pat1", headers=bearer(first.json()["access_token"]))
        assert r.status_code == 401


async def test_wrong_code_verifier_is_refused(client_factory: Any, database_url: str) -> None:
    _setup(database_url)
    _, challenge = pkce()
    other, _ = pkce()
    async with client_factory(auth="on") as http:
        await _patient(http, "pat1")
        code = (await _code(http, _params(challenge)))["code"][0]
        r = await _exchange(http, code, other)
        assert r.status_code == 400 and "code_verifier" in r.json()["error_description"]


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge_method": ""}, "invalid_request"),
        ({"aud": "http://elsewhere/fhir"}, "invalid_request"),
        ({"scope": "patient/*.cruds"}, "invalid_scope"),
        ({"scope": "system/*.rs"}, "invalid_scope"),
        ({"scope": "patient/Observation.rds"}, "invalid_scope"),
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"scope": "launch patient/*.rs"}, "invalid_request"),
    ],
)
async def test_bad_authorize_requests_redirect_with_an_error(client_factory: Any, database_url: str,
                                                             change: dict[str, str], error: str) -> None:
    _setup(database_url)
    _, challenge = pkce()
    async with client_factory(auth="on") as http:
        r = await http.get(AUTHORIZE, params={**_params(challenge), **change})
        assert r.status_code == 302, r.text
        query = parse_qs(urlsplit(r.headers["location"]).query)
        assert query["error"] == [error] and query["state"] == ["st8"]


async def test_unregistered_redirect_uri_is_never_redirected_to(client_factory: Any, database_url: str) -> None:
    _setup(database_url)
    _, challenge = pkce()
    async with client_factory(auth="on") as http:
        r = await http.get(AUTHORIZE, params={**_params(challenge), "redirect_uri": "https://evil.example/cb"})
        assert r.status_code == 400 and "location" not in r.headers


async def test_wrong_password_and_deny(client_factory: Any, database_url: str) -> None:
    _setup(database_url)
    _, challenge = pkce()
    async with client_factory(auth="on") as http:
        params = _params(challenge)
        r = await http.post(AUTHORIZE, data={**params, "username": "alice", "password": "nope", "decision": "allow"})
        assert r.status_code == 401 and "Wrong user name or password" in r.text
        r = await http.post(AUTHORIZE, data={**params, "username": "alice", "password": "correct horse",
                                             "decision": "deny"})
        assert r.status_code == 302 and "error=access_denied" in r.headers["location"]


async def test_refresh_rotation_and_reuse_revokes_the_family(client_factory: Any, database_url: str) -> None:
    _setup(database_url)
    verifier, challenge = pkce()
    async with client_factory(auth="on") as http:
        await _patient(http, "pat1")
        code = (await _code(http, _params(challenge)))["code"][0]
        first = (await _exchange(http, code, verifier)).json()
        refresh = {"grant_type": "refresh_token", "client_id": "app"}
        r = await http.post(TOKEN_URL, data={**refresh, "refresh_token": first["refresh_token"]})
        assert r.status_code == 200, r.text
        second = r.json()
        assert second["refresh_token"] != first["refresh_token"]
        assert (await http.get("/Patient/pat1", headers=bearer(second["access_token"]))).status_code == 200
        # The first refresh token again: it leaked. The whole family dies, access tokens included.
        r = await http.post(TOKEN_URL, data={**refresh, "refresh_token": first["refresh_token"]})
        assert r.status_code == 400 and "reused" in r.json()["error_description"]
        r = await http.post(TOKEN_URL, data={**refresh, "refresh_token": second["refresh_token"]})
        assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
        assert (await http.get("/Patient/pat1", headers=bearer(second["access_token"]))).status_code == 401


async def test_refresh_may_only_narrow(client_factory: Any, database_url: str) -> None:
    _setup(database_url)
    verifier, challenge = pkce()
    async with client_factory(auth="on") as http:
        await _patient(http, "pat1")
        code = (await _code(http, _params(challenge)))["code"][0]
        first = (await _exchange(http, code, verifier)).json()
        r = await http.post(TOKEN_URL, data={"grant_type": "refresh_token", "client_id": "app",
                                             "refresh_token": first["refresh_token"], "scope": "user/*.cruds"})
        assert r.status_code == 400 and r.json()["error"] == "invalid_scope"


async def test_practitioner_ehr_launch_gives_the_launch_patient(client_factory: Any, database_url: str) -> None:
    _setup(database_url)
    ehr = rsa_key()
    register(database_url, "ehr", jwks=public_jwks(ehr))
    verifier, challenge = pkce()
    async with client_factory(auth="on") as http:
        await _patient(http, "pat9")
        ehr_token = await backend_token(http, ehr, client_id="ehr", iss="ehr", sub="ehr")
        r = await http.post("http://testserver/auth/launch", json={"patient": "pat9"}, headers=bearer(ehr_token))
        assert r.status_code == 201, r.text
        launch = r.json()["launch"]
        params = _params(challenge, scope="launch openid fhirUser user/*.cruds", launch=launch)
        code = (await _code(http, params, "dr", "doctor-pass"))["code"][0]
        body = (await _exchange(http, code, verifier)).json()
        assert body["patient"] == "pat9"
        access = _claims(body["access_token"])
        assert (access["kind"], access["fhirUser"], access["patient"]) == ("user", "Practitioner/prac1", "pat9")
        assert "refresh_token" not in body  # no offline_access asked


async def test_practitioner_standalone_picks_a_patient(client_factory: Any, database_url: str) -> None:
    _setup(database_url)
    verifier, challenge = pkce()
    async with client_factory(auth="on") as http:
        await _patient(http, "pat2")
        params = _params(challenge)
        r = await http.post(AUTHORIZE, data={**params, "username": "dr", "password": "doctor-pass",
                                             "decision": "allow"})
        assert r.status_code == 400 and "Choose the patient" in r.text
        got = await _code(http, params, "dr", "doctor-pass", patient="pat2")
        body = (await _exchange(http, got["code"][0], verifier)).json()
        assert body["patient"] == "pat2"


async def test_introspection_and_revocation(client_factory: Any, database_url: str) -> None:
    key = rsa_key()
    register(database_url, jwks=public_jwks(key))
    async with client_factory(auth="on") as http:
        token = await backend_token(http, key)
        from tests.auth.helpers import backend_form

        def auth_form() -> dict[str, str]:
            form = backend_form(key)
            return {k: form[k] for k in ("client_assertion_type", "client_assertion")}

        r = await http.post("http://testserver/auth/introspect", data={"token": token, **auth_form()})
        assert r.status_code == 200 and r.json()["active"] is True and r.json()["scope"] == "system/*.rs"
        r = await http.post("http://testserver/auth/revoke", data={"token": token, **auth_form()})
        assert r.status_code == 200
        assert (await http.get("/Patient", headers=bearer(token))).status_code == 401
        r = await http.post("http://testserver/auth/introspect", data={"token": token, **auth_form()})
        assert r.json() == {"active": False}
        r = await http.post("http://testserver/auth/introspect", data={"token": token})
        assert r.status_code == 401


async def test_consent_page_escapes_what_it_shows(client_factory: Any, database_url: str) -> None:
    register(database_url, "app", auth_method="none", redirect_uris=(REDIRECT,), scopes="patient/*.rs",
             name="<script>alert(1)</script>")
    _, challenge = pkce()
    async with client_factory(auth="on") as http:
        r = await http.get(AUTHORIZE, params={**_params(challenge, scope="patient/*.rs"), "state": '"><b>x'})
        assert r.status_code == 200
        assert "<script>" not in r.text and "&lt;script&gt;" in r.text and '"><b>x' not in r.text
        assert r.headers["x-frame-options"] == "DENY"


async def test_authorize_post_shows_the_page_and_openid_metadata(client_factory: Any, database_url: str) -> None:
    _setup(database_url)
    _, challenge = pkce()
    async with client_factory(auth="on") as http:
        r = await http.post(AUTHORIZE, data=_params(challenge))
        assert r.status_code == 200 and "Coord app" in r.text
        conf = (await http.get("http://testserver/auth/.well-known/openid-configuration")).json()
        assert conf["issuer"] == "http://testserver/auth" and conf["jwks_uri"] == "http://testserver/auth/jwks"


async def test_chunked_token_request_over_the_limit_is_refused(client_factory: Any, database_url: str) -> None:
    async with client_factory(auth="on", max_auth_body_bytes=1024) as http:
        async def body() -> Any:
            for _ in range(10):
                yield b"a=" + b"b" * 200 + b"&"

        r = await http.post(TOKEN_URL, content=body(), headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert r.status_code == 413


async def test_confidential_app_with_secret_and_nonce(client_factory: Any, database_url: str) -> None:
    register(database_url, "app", auth_method="client_secret_basic", secret="app-secret-value",
             redirect_uris=(REDIRECT,), scopes="openid fhirUser user/*.rs", name="Coord app")
    register_user(database_url, "dr", "doctor-pass", "Practitioner/prac1")
    verifier, challenge = pkce()
    async with client_factory(auth="on") as http:
        params = _params(challenge, scope="openid fhirUser user/*.rs", nonce="n-123")
        code = (await _code(http, params, "dr", "doctor-pass"))["code"][0]
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, "code_verifier": verifier}
        r = await http.post(TOKEN_URL, data=form)  # no client authentication: refused
        assert r.status_code == 401 and r.json()["error"] == "invalid_client"
        r = await http.post(TOKEN_URL, data=form, auth=("app", "app-secret-value"))
        assert r.status_code == 200, r.text
        id_token = _claims(r.json()["id_token"])
        assert id_token["nonce"] == "n-123" and id_token["fhirUser"] == f"{BASE}/Practitioner/prac1"
        assert "patient" not in r.json()


async def test_code_of_another_client_or_redirect_is_refused(client_factory: Any, database_url: str) -> None:
    _setup(database_url)
    register(database_url, "other", auth_method="none", redirect_uris=(REDIRECT,), scopes="patient/*.rs")
    verifier, challenge = pkce()
    async with client_factory(auth="on") as http:
        await _patient(http, "pat1")
        code = (await _code(http, _params(challenge)))["code"][0]
        r = await http.post(TOKEN_URL, data={"grant_type": "authorization_code", "code": code, "client_id": "other",
                                             "redirect_uri": REDIRECT, "code_verifier": verifier})
        assert r.status_code == 400 and "another client" in r.json()["error_description"]
        code = (await _code(http, _params(challenge)))["code"][0]
        r = await _exchange(http, code, verifier, redirect_uri="https://app.example/other")
        assert r.status_code == 400 and "redirect_uri" in r.json()["error_description"]
