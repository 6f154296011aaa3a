"""SMART Backend Services over HTTP: client_credentials with private_key_jwt, and its refusals."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.auth.helpers import (
    BASE,
    TOKEN_URL,
    assertion,
    backend_form,
    backend_token,
    bearer,
    ec_key,
    public_jwks,
    register,
    rsa_key,
)


async def test_backend_services_flow_rs384_reads_and_is_refused_without_token(client_factory: Any,
                                                                              database_url: str) -> None:
    key = rsa_key()
    register(database_url, jwks=public_jwks(key))
    async with client_factory(auth="on") as http:
        r = await http.get("/Patient")
        assert r.status_code == 401
        assert r.headers["www-authenticate"].startswith('Bearer realm="fhir"')
        assert r.json()["resourceType"] == "OperationOutcome"
        r = await http.post(TOKEN_URL, data=backend_form(key))
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["token_type"] == "Bearer" and body["scope"] == "system/*.rs" and 0 < body["expires_in"] <= 300
        r = await http.get("/Patient", headers=bearer(body["access_token"]))
        assert r.status_code == 200, r.text
        assert r.json()["resourceType"] == "Bundle"


async def test_backend_services_flow_es384(client_factory: Any, database_url: str) -> None:
    key = ec_key()
    register(database_url, jwks=public_jwks(key))
    async with client_factory(auth="on") as http:
        token = await backend_token(http, key, alg="ES384")
        assert (await http.get("/Patient", headers=bearer(token))).status_code == 200


async def _token_error(http: Any, form: dict[str, str], status: int = 401) -> dict[str, Any]:
    r = await http.post(TOKEN_URL, data=form)
    assert r.status_code == status, r.text
    return dict(r.json())


async def test_replayed_assertion_jti_is_refused(client_factory: Any, database_url: str) -> None:
    key = rsa_key()
    register(database_url, jwks=public_jwks(key))
    async with client_factory(auth="on") as http:
        form = backend_form(key)
        assert (await http.post(TOKEN_URL, data=form)).status_code == 200
        err = await _token_error(http, form)
        assert err["error"] == "invalid_client" and "replay" in err["error_description"]


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"exp": int(time.time()) + 3600}, "5 minutes"),
        ({"exp": int(time.time()) - 120}, "expired"),
        ({"sub": "someone-else"}, "iss and sub"),
        ({"aud": "http://testserver/fhir"}, "aud"),
        ({"jti": None}, "jti"),
        ({"nbf": int(time.time()) + 600}, "nbf"),
    ],
)
async def test_bad_assertions_are_refused(client_factory: Any, database_url: str, overrides: dict[str, Any],
                                          reason: str) -> None:
    key = rsa_key()
    register(database_url, jwks=public_jwks(key))
    async with client_factory(auth="on") as http:
        err = await _token_error(http, backend_form(key, **overrides))
        assert err["error"] == "invalid_client" and reason in err["error_description"]


async def test_assertion_signed_by_another_key_is_refused(client_factory: Any, database_url: str) -> None:
    registered, attacker = rsa_key("k1"), rsa_key("k1")
    register(database_url, jwks=public_jwks(registered))
    async with client_factory(auth="on") as http:
        err = await _token_error(http, backend_form(attacker))
        assert "bad signature" in err["error_description"]


async def test_assertion_rs256_is_not_an_advertised_alg(client_factory: Any, database_url: str) -> None:
    key = rsa_key()
    register(database_url, jwks=public_jwks(key))
    async with client_factory(auth="on") as http:
        err = await _token_error(http, backend_form(key, alg="RS256"))
        assert "alg" in err["error_description"]


async def test_assertion_alg_none_is_refused(client_factory: Any, database_url: str) -> None:
    key = rsa_key()
    register(database_url, jwks=public_jwks(key))
    good = assertion(key)
    header_claims = good.rsplit(".", 1)[0]
    import base64

    none_header = base64.urlsafe_b64encode(b'{"alg":"none","kid":"k1"}').rstrip(b"=").decode()
    forged = none_header + "." + header_claims.split(".")[1] + "."
    async with client_factory(auth="on") as http:
        form = backend_form(key)
        form["client_assertion"] = forged
        err = await _token_error(http, form)
        assert err["error"] == "invalid_client"


async def test_revoked_client_gets_no_token_and_its_tokens_stop_working(client_factory: Any,
                                                                        database_url: str) -> None:
    from fhir_server.auth.store import revoke_client
    from tests.auth.helpers import run_db

    key = rsa_key()
    register(database_url, jwks=public_jwks(key))
    async with client_factory(auth="on") as http:
        token = await backend_token(http, key)
        assert (await http.get("/Patient", headers=bearer(token))).status_code == 200
        run_db(database_url, lambda conn: revoke_client(conn, "backend"))
        http._transport.app.state.auth._revocations_at = 0.0  # the next poll, without waiting 5 s
        r = await http.get("/Patient", headers=bearer(token))
        assert r.status_code == 401 and "revoked" in r.json()["issue"][0]["diagnostics"]
        err = await _token_error(http, backend_form(key))
        assert err["error_description"] == "client revoked"


@pytest.mark.parametrize("scope", ["system/*.cruds", "system/Patient.c", "user/*.rs", "patient/*.read", "btg"])
async def test_scope_escalation_is_refused(client_factory: Any, database_url: str, scope: str) -> None:
    key = rsa_key()
    register(database_url, jwks=public_jwks(key), scopes="system/*.rs system/Observation.rs?category=laboratory")
    async with client_factory(auth="on") as http:
        err = await _token_error(http, backend_form(key, scope=scope), 400)
        assert err["error"] == "invalid_scope"


async def test_narrower_scopes_are_granted(client_factory: Any, database_url: str) -> None:
    key = rsa_key()
    register(database_url, jwks=public_jwks(key), scopes="system/*.read")
    async with client_factory(auth="on") as http:
        r = await http.post(TOKEN_URL, data=backend_form(key, scope="system/Patient.r system/Observation.rs"))
        assert r.status_code == 200, r.text
        assert r.json()["scope"] == "system/Patient.r system/Observation.rs"


async def test_client_jwks_by_url(client_factory: Any, database_url: str) -> None:
    from tests.auth.jwks_server import serve_jwks

    key = ec_key("remote")
    with serve_jwks(public_jwks(key)) as url:
        register(database_url, jwks_uri=url)
        async with client_factory(auth="on") as http:
            token = await backend_token(http, key, alg="ES384")
            assert (await http.get("/Patient", headers=bearer(token))).status_code == 200


async def test_secret_basic_client(client_factory: Any, database_url: str) -> None:
    register(database_url, "app", auth_method="client_secret_basic", secret="s3cret-value-long")
    async with client_factory(auth="on") as http:
        r = await http.post(TOKEN_URL, data={"grant_type": "client_credentials", "scope": "system/*.rs"},
                            auth=("app", "s3cret-value-long"))
        assert r.status_code == 200, r.text
        r = await http.post(TOKEN_URL, data={"grant_type": "client_credentials", "scope": "system/*.rs"},
                            auth=("app", "wrong"))
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Basic")
    assert BASE


async def test_assertion_for_a_secret_client_and_secret_for_a_key_client_are_refused(client_factory: Any,
                                                                                     database_url: str) -> None:
    key = rsa_key()
    register(database_url, "app", auth_method="client_secret_basic", secret="s3cret-value-long")
    register(database_url, jwks=public_jwks(key))
    async with client_factory(auth="on") as http:
        err = await _token_error(http, backend_form(key, iss="app", sub="app"))
        assert "not registered for private_key_jwt" in err["error_description"]
        r = await http.post(TOKEN_URL, data={"grant_type": "client_credentials", "scope": "system/*.rs"},
                            auth=("backend", "anything"))
        assert r.status_code == 401


async def test_public_client_cannot_use_client_credentials(client_factory: Any, database_url: str) -> None:
    register(database_url, "pub", auth_method="none", redirect_uris=("https://a.example/cb",), scopes="system/*.rs")
    async with client_factory(auth="on") as http:
        r = await http.post(TOKEN_URL, data={"grant_type": "client_credentials", "scope": "system/*.rs",
                                             "client_id": "pub"})
        assert r.status_code == 400 and r.json()["error"] == "unauthorized_client"


async def test_repeated_parameters_and_unknown_grants_are_refused(client_factory: Any, database_url: str) -> None:
    key = rsa_key()
    register(database_url, jwks=public_jwks(key))
    async with client_factory(auth="on") as http:
        form = backend_form(key)
        body = "&".join(f"{k}={v}" for k, v in form.items()) + "&scope=system/*.cruds"
        r = await http.post(TOKEN_URL, content=body, headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert r.status_code == 400 and "repeated" in r.json()["error_description"]
        err = await _token_error(http, {**backend_form(key), "grant_type": "password"}, 400)
        assert err["error"] == "unsupported_grant_type"
        r = await http.post(TOKEN_URL, json=backend_form(key))
        assert r.status_code == 400


async def test_token_endpoint_is_rate_limited_per_address(client_factory: Any, database_url: str) -> None:
    async with client_factory(auth="on", rate_limit_per_minute=2) as http:
        codes = [(await http.post(TOKEN_URL, data={"grant_type": "client_credentials"})).status_code
                 for _ in range(3)]
        assert codes == [401, 401, 429]


async def test_assertion_with_a_jku_header_is_not_fetched(client_factory: Any, database_url: str) -> None:
    from joserfc import jwt

    registered, attacker = rsa_key("k1"), rsa_key("k1")
    register(database_url, jwks=public_jwks(registered))
    now = int(time.time())
    claims = {"iss": "backend", "sub": "backend", "aud": TOKEN_URL, "exp": now + 200, "jti": "x1"}
    token = jwt.encode({"alg": "RS384", "kid": "k1", "jku": "http://127.0.0.1:9/evil.json"}, claims, attacker,
                       algorithms=["RS384"])
    async with client_factory(auth="on") as http:
        form = backend_form(registered)
        form["client_assertion"] = token
        err = await _token_error(http, form)
        assert "bad signature" in err["error_description"]
