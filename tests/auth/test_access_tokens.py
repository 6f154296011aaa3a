"""Bearer tokens at the FHIR API: every forged, stale or misdirected token is a 401 OperationOutcome."""

from __future__ import annotations

import base64
import time
from typing import Any

import orjson
import pytest
from joserfc import jwt

from tests.auth.helpers import BASE, backend_token, bearer, public_jwks, register, rsa_key


def _app(http: Any) -> Any:
    return http._transport.app


def _sign(http: Any, claims: dict[str, Any], typ: str = "at+jwt") -> str:
    return str(_app(http).state.auth.keys.sign(claims, typ=typ))


def _claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {"iss": "http://testserver/auth", "aud": BASE, "sub": "backend", "client_id": "backend",
              "iat": now, "exp": now + 120, "jti": "j1", "scope": "system/*.rs", "kind": "system"}
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


async def _expect_401(http: Any, token: str, reason: str) -> None:
    r = await http.get("/Patient", headers=bearer(token))
    assert r.status_code == 401, r.text
    assert 'error="invalid_token"' in r.headers["www-authenticate"]
    outcome = r.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert reason in outcome["issue"][0]["diagnostics"]


@pytest.fixture
async def http(client_factory: Any, database_url: str) -> Any:
    key = rsa_key()
    register(database_url, jwks=public_jwks(key))
    async with client_factory(auth="on") as c:
        await backend_token(c, key)  # creates the signing key
        yield c


async def test_a_well_formed_token_of_ours_is_accepted_and_gives_the_caller(http: Any) -> None:
    token = _sign(http, _claims(fhirUser="Practitioner/p1", org="Organization/o1"))
    assert (await http.get("/Patient", headers=bearer(token))).status_code == 200
    caller = await _app(http).state.auth.authenticate(token, _app(http).state.storage, BASE)
    assert (caller.kind, caller.client_id, caller.fhir_user, caller.organization) == (
        "system", "backend", "Practitioner/p1", "Organization/o1")
    assert caller.scopes.allows("Patient", "r") and not caller.scopes.allows("Patient", "c")


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"exp": int(time.time()) - 60}, "expired"),
        ({"nbf": int(time.time()) + 600}, "not valid yet"),
        ({"aud": "http://elsewhere/fhir"}, "audience"),
        ({"iss": "http://evil/auth"}, "issuer"),
        ({"exp": None}, "exp"),
    ],
)
async def test_stale_or_misdirected_tokens_are_refused(http: Any, overrides: dict[str, Any], reason: str) -> None:
    await _expect_401(http, _sign(http, _claims(**overrides)), reason)


async def test_forged_signature_is_refused(http: Any) -> None:
    token = _sign(http, _claims())
    head, body, sig = token.split(".")
    forged_body = base64.urlsafe_b64encode(orjson.dumps(_claims(scope="system/*.cruds"))).rstrip(b"=").decode()
    await _expect_401(http, f"{head}.{forged_body}.{sig}", "signature")


async def test_token_signed_by_a_stranger_with_our_kid_is_refused(http: Any) -> None:
    kid = _app(http).state.auth.keys.jwks()["keys"][0]["kid"]
    stranger = rsa_key(kid)
    token = jwt.encode({"alg": "RS256", "kid": kid, "typ": "at+jwt"}, _claims(), stranger)
    await _expect_401(http, token, "signature")


async def test_alg_none_is_refused(http: Any) -> None:
    kid = _app(http).state.auth.keys.jwks()["keys"][0]["kid"]
    head = base64.urlsafe_b64encode(orjson.dumps({"alg": "none", "kid": kid, "typ": "at+jwt"})).rstrip(b"=")
    body = base64.urlsafe_b64encode(orjson.dumps(_claims())).rstrip(b"=")
    await _expect_401(http, f"{head.decode()}.{body.decode()}.", "alg")


async def test_hs256_signed_with_our_public_key_is_refused(http: Any) -> None:
    jwk = (await http.get("http://testserver/auth/jwks")).json()["keys"][0]
    from joserfc.jwk import RSAKey

    public_pem = RSAKey.import_key(jwk).as_pem(private=False)
    import hashlib
    import hmac

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    for secret in (public_pem, orjson.dumps(jwk)):
        # Built by hand: joserfc itself refuses a public key as an HMAC secret.
        signing_input = b64(orjson.dumps({"alg": "HS256", "kid": jwk["kid"], "typ": "at+jwt"})) + "." + b64(
            orjson.dumps(_claims()))
        sig = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        await _expect_401(http, f"{signing_input}.{b64(sig)}", "alg")


async def test_id_token_is_not_an_access_token(http: Any) -> None:
    await _expect_401(http, _sign(http, _claims(), typ="JWT"), "not an access token")


@pytest.mark.parametrize("header", ["Basic abc", "Bearer", "Bearer not.a.jwt", "Bearer " + "a" * 20000])
async def test_malformed_authorization_headers_are_401_not_500(http: Any, header: str) -> None:
    r = await http.get("/Patient", headers={"Authorization": header})
    assert r.status_code == 401 and r.json()["resourceType"] == "OperationOutcome"
    assert r.headers["www-authenticate"].startswith("Bearer")


async def test_metadata_and_smart_configuration_stay_public(http: Any) -> None:
    r = await http.get("/metadata")
    assert r.status_code == 200
    security = r.json()["rest"][0]["security"]
    assert security["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"
    uris = {e["url"]: e["valueUri"] for e in security["extension"][0]["extension"]}
    assert uris["token"] == "http://testserver/auth/token"
    r = await http.get("/.well-known/smart-configuration")
    assert r.status_code == 200
    conf = r.json()
    assert conf["code_challenge_methods_supported"] == ["S256"]
    assert conf["token_endpoint"] == "http://testserver/auth/token"
    assert "client-confidential-asymmetric" in conf["capabilities"]
    assert conf["token_endpoint_auth_signing_alg_values_supported"] == ["RS384", "ES384"]


async def test_key_rotation_keeps_old_tokens_valid(http: Any) -> None:
    from fhir_server.auth.keys import rotate_keys

    app = _app(http)
    old = _sign(http, _claims())
    await app.state.storage.write(lambda tx: rotate_keys(tx.conn, 30, 300))
    await app.state.storage.run_read(app.state.auth.keys.load)
    new = _sign(http, _claims(jti="j2"))
    assert orjson.loads(base64.urlsafe_b64decode(old.split(".")[0] + "=="))["kid"] != \
        orjson.loads(base64.urlsafe_b64decode(new.split(".")[0] + "=="))["kid"]
    app.state.auth._cache.clear()
    for token in (old, new):
        assert (await http.get("/Patient", headers=bearer(token))).status_code == 200
    assert len((await http.get("http://testserver/auth/jwks")).json()["keys"]) == 2


async def test_break_glass_needs_the_btg_scope(http: Any) -> None:
    headers = {**bearer(_sign(http, _claims())), "X-Break-Glass-Reason": "cardiac arrest"}
    r = await http.get("/Patient", headers=headers)
    assert r.status_code == 403 and "btg" in r.headers["www-authenticate"]
    token = _sign(http, _claims(scope="system/*.rs btg", jti="j3"))
    caller = await _app(http).state.auth.authenticate(token, _app(http).state.storage, BASE)
    assert _app(http).state.auth.with_break_glass(caller, "cardiac arrest").break_glass == "cardiac arrest"
    r = await http.get("/Patient", headers={**bearer(token), "X-Break-Glass-Reason": "cardiac arrest"})
    assert r.status_code == 200


async def test_rate_limit_answers_429_with_retry_after(client_factory: Any, database_url: str) -> None:
    key = rsa_key()
    register(database_url, jwks=public_jwks(key))
    async with client_factory(auth="on", rate_limit_per_minute=3) as http:
        token = await backend_token(http, key)
        codes = [(await http.get("/Patient", headers=bearer(token))).status_code for _ in range(4)]
        assert codes[:3] == [200, 200, 200] and codes[3] == 429
        r = await http.get("/Patient", headers=bearer(token))
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        assert r.json()["issue"][0]["code"] == "throttled"


async def test_cors_is_off_by_default_and_configurable(client_factory: Any, database_url: str) -> None:
    async with client_factory(auth="on") as http:
        r = await http.get("/metadata", headers={"Origin": "https://app.example"})
        assert "access-control-allow-origin" not in r.headers
    async with client_factory(auth="on", cors_origins="https://app.example") as http:
        r = await http.options("/Patient", headers={"Origin": "https://app.example",
                                                    "Access-Control-Request-Method": "GET"})
        assert r.status_code == 204 and r.headers["access-control-allow-origin"] == "https://app.example"
        assert "authorization" in r.headers["access-control-allow-headers"]
        r = await http.get("/Patient", headers={"Origin": "https://app.example"})
        assert r.status_code == 401 and r.headers["access-control-allow-origin"] == "https://app.example"
        r = await http.get("/metadata", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in r.headers


async def test_oversized_bodies_are_413_before_auth(client_factory: Any, database_url: str) -> None:
    async with client_factory(auth="on", max_body_bytes=2048) as http:
        r = await http.post("/Patient", content=b"{" + b" " * 4096 + b"}",
                            headers={"Content-Type": "application/fhir+json"})
        assert r.status_code == 413
        r = await http.post("http://testserver/auth/token", content=b"a=" + b"b" * 70000,
                            headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert r.status_code == 413


async def test_auth_off_gives_the_unrestricted_caller(client_factory: Any) -> None:
    async with client_factory(auth="off") as http:
        assert (await http.get("/Patient")).status_code == 200


async def test_paths_outside_fhir_and_mount_prefixes_are_protected_too(client_factory: Any, database_url: str) -> None:
    async with client_factory(auth="on") as http:
        assert (await http.get("http://testserver/somewhere")).status_code == 401
        assert (await http.get("http://testserver/openapi.json")).status_code == 200
        app = _app(http)
        # Served under a prefix (uvicorn --root-path /api): the prefix does not open a way around the check.
        import httpx

        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app, root_path="/api"),
                                     base_url="http://testserver/api/fhir") as prefixed:
            r = await prefixed.get("/Patient")
            assert r.status_code == 401, r.text
            assert (await prefixed.get("/metadata")).status_code == 200
