"""Shared helpers of the auth tests: real keys, real assertions, clients registered in the database."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
import uuid
from typing import Any

from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from fhir_server.auth.store import add_client, add_user

BASE = "http://testserver/fhir"
TOKEN_URL = "http://testserver/auth/token"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def run_db(database_url: str, fn: Any) -> Any:
    engine = create_engine(database_url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            return fn(conn)
    finally:
        engine.dispose()


def rsa_key(kid: str = "k1") -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": kid})


def ec_key(kid: str = "e1") -> ECKey:
    return ECKey.generate_key("P-384", parameters={"kid": kid})


def public_jwks(*keys: Any) -> dict[str, Any]:
    return {"keys": [k.as_dict(private=False) for k in keys]}


def register(database_url: str, client_id: str = "backend", scopes: str = "system/*.rs", **kw: Any) -> Any:
    kw.setdefault("name", f"client {client_id}")
    method = kw.pop("auth_method", "private_key_jwt")
    return run_db(database_url, lambda conn: add_client(conn, client_id, auth_method=method, scopes=scopes, **kw))


def register_user(database_url: str, username: str, password: str, fhir_user: str) -> None:
    run_db(database_url, lambda conn: add_user(conn, username, password, fhir_user))


def assertion(key: Any, client_id: str = "backend", alg: str = "RS384", **overrides: Any) -> str:
    now = int(time.time())
    claims = {"iss": client_id, "sub": client_id, "aud": TOKEN_URL, "exp": now + 240, "iat": now,
              "jti": uuid.uuid4().hex}
    claims.update(overrides)
    claims = {k: v for k, v in claims.items() if v is not None}
    header = {"alg": alg, "kid": key.kid, "typ": "JWT"}
    return jwt.encode(header, claims, key, algorithms=[alg])


def backend_form(key: Any, scope: str = "system/*.rs", **overrides: Any) -> dict[str, str]:
    return {
        "grant_type": "client_credentials",
        "scope": scope,
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": assertion(key, **overrides),
    }


async def backend_token(http: Any, key: Any, scope: str = "system/*.rs", **overrides: Any) -> str:
    r = await http.post(TOKEN_URL, data=backend_form(key, scope, **overrides))
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
