"""Tokens of an external OpenID provider (Pro Santé Connect style), from a real local issuer.

The issuer is a real HTTP server on 127.0.0.1 serving its JWKS; its tokens are signed with its
own keys. The professional is mapped to a Practitioner by idNatPs.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from joserfc import jwt

from fhir_server.auth.external import IDNATPS_SYSTEM, resolve_practitioner
from tests.auth.helpers import BASE, bearer, public_jwks, rsa_key
from tests.auth.jwks_server import JwksServer, serve_jwks

ISSUER = "https://auth.bas.psc.test/auth/realms/esante-wallet"
AUDIENCE = "coordination-fhir"
IDNATPS = "810002909371"


def psc_token(key: Any, alg: str = "RS256", **overrides: Any) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": f"f:{uuid.uuid4()}:{IDNATPS}", "exp": now + 300, "iat": now,
              "SubjectNameID": IDNATPS, "preferred_username": IDNATPS, "azp": "psc-client",
              "jti": uuid.uuid4().hex, "acr": "eidas1"}
    claims.update(overrides)
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode({"alg": alg, "kid": key.kid, "typ": "JWT"}, claims, key, algorithms=[alg])


async def _put(http: Any, path: str, body: dict[str, Any]) -> None:
    app = http._transport.app
    saved, app.state.auth.enabled = app.state.auth.enabled, False
    try:
        r = await http.put(path, json=body)
        assert r.status_code in (200, 201), r.text
    finally:
        app.state.auth.enabled = saved


def _practitioner(id_: str, idnatps: str = IDNATPS) -> dict[str, Any]:
    return {"resourceType": "Practitioner", "id": id_, "identifier": [{"system": IDNATPS_SYSTEM, "value": idnatps}]}


@pytest.fixture
async def issuer(client_factory: Any) -> AsyncIterator[tuple[Any, Any, JwksServer]]:
    key = rsa_key("psc-1")
    state = JwksServer(public_jwks(key))
    with serve_jwks(state.jwks, state) as url:
        async with client_factory(auth="on", external_issuer=ISSUER, external_jwks_url=url,
                                  external_audience=AUDIENCE) as http:
            await _put(http, "/Practitioner/prac1", _practitioner("prac1"))
            yield http, key, state


async def test_psc_token_maps_to_the_practitioner(issuer: Any) -> None:
    http, key, _ = issuer
    token = psc_token(key)
    r = await http.get("/Practitioner/prac1", headers=bearer(token))
    assert r.status_code == 200, r.text
    app = http._transport.app
    caller = await app.state.auth.authenticate(token, app.state.storage, BASE)
    assert (caller.kind, caller.fhir_user, caller.client_id) == ("user", "Practitioner/prac1", "psc-client")
    assert caller.scopes.allows("Patient", "r") and not caller.scopes.allows("Patient", "c")


async def test_psc_es256_token(issuer: Any) -> None:
    http, _, state = issuer
    from joserfc.jwk import ECKey

    key = ECKey.generate_key("P-256", parameters={"kid": "psc-ec"})
    state.jwks = public_jwks(key)
    r = await http.get("/Practitioner/prac1", headers=bearer(psc_token(key, alg="ES256")))
    assert r.status_code == 200, r.text


async def test_unknown_kid_refetches_then_fails(issuer: Any) -> None:
    http, key, state = issuer
    assert (await http.get("/Practitioner", headers=bearer(psc_token(key)))).status_code == 200
    hits = state.hits
    http._transport.app.state.auth.external.jwks._tried.clear()  # past the 5 s refetch floor
    stranger = rsa_key("psc-unknown")
    r = await http.get("/Practitioner", headers=bearer(psc_token(stranger)))
    assert r.status_code == 401 and "unknown signing key" in r.json()["issue"][0]["diagnostics"]
    assert state.hits == hits + 1  # refreshed once on the unknown kid, then refused
    r = await http.get("/Practitioner", headers=bearer(psc_token(rsa_key("psc-unknown-2"))))
    assert r.status_code == 401 and state.hits == hits + 1  # within the floor: no request amplification


async def test_issuer_key_rotation_is_picked_up(issuer: Any) -> None:
    http, key, state = issuer
    assert (await http.get("/Practitioner", headers=bearer(psc_token(key)))).status_code == 200
    new = rsa_key("psc-2")
    state.jwks = public_jwks(key, new)
    http._transport.app.state.auth.external.jwks._tried.clear()  # past the 5 s refetch floor
    assert (await http.get("/Practitioner", headers=bearer(psc_token(new)))).status_code == 200


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"aud": "another-service"}, "audience"),
        ({"aud": None}, "audience"),
        ({"exp": int(time.time()) - 60}, "expired"),
        ({"nbf": int(time.time()) + 600}, "not valid yet"),
        ({"iss": "https://evil.example/realms/x"}, "issuer"),
    ],
)
async def test_bad_psc_tokens_are_401(issuer: Any, overrides: dict[str, Any], reason: str) -> None:
    http, key, _ = issuer
    r = await http.get("/Practitioner", headers=bearer(psc_token(key, **overrides)))
    assert r.status_code == 401, r.text
    assert reason in r.json()["issue"][0]["diagnostics"]
    assert 'error="invalid_token"' in r.headers["www-authenticate"]


async def test_forged_psc_token_is_401(issuer: Any) -> None:
    http, key, _ = issuer
    stranger = rsa_key(key.kid)  # same kid, another key
    r = await http.get("/Practitioner", headers=bearer(psc_token(stranger)))
    assert r.status_code == 401 and "signature" in r.json()["issue"][0]["diagnostics"]


async def test_hs256_psc_token_is_refused(issuer: Any) -> None:
    http, key, _ = issuer
    from joserfc.jwk import OctKey

    secret = OctKey.import_key(b"k" * 32, parameters={"kid": key.kid})
    r = await http.get("/Practitioner", headers=bearer(psc_token(secret, alg="HS256")))
    assert r.status_code == 401 and "alg" in r.json()["issue"][0]["diagnostics"]


async def test_unknown_professional_is_403(issuer: Any) -> None:
    http, key, _ = issuer
    r = await http.get("/Practitioner", headers=bearer(psc_token(key, SubjectNameID="899999999999",
                                                                 preferred_username=None)))
    assert r.status_code == 403 and "899999999999" in r.json()["issue"][0]["diagnostics"]


async def test_resolve_practitioner_never_guesses(issuer: Any) -> None:
    http, _, _ = issuer
    store = http._transport.app.state.storage
    assert await store.run_read(lambda conn: resolve_practitioner(conn, IDNATPS)) == "Practitioner/prac1"
    assert await store.run_read(lambda conn: resolve_practitioner(conn, "000")) is None
    await _put(http, "/Practitioner/prac2", _practitioner("prac2"))
    assert await store.run_read(lambda conn: resolve_practitioner(conn, IDNATPS)) is None  # two claim it
    assert await store.run_read(lambda conn: resolve_practitioner(conn, f"{IDNATPS}|x")) is None
