"""Hostile input never crashes the token checks: anything malformed is a JoseError / 401, never a 500."""

from __future__ import annotations

import base64
import json
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fhir_server.auth.jose import JoseError, decode_unverified, import_jwk, import_jwks


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


@given(st.text(max_size=300))
@settings(max_examples=300)
def test_decode_unverified_raises_only_jose_errors_on_text(text: str) -> None:
    try:
        decode_unverified(text)
    except JoseError:
        pass


@given(json_values, json_values, st.binary(max_size=64))
@settings(max_examples=300)
def test_decode_unverified_on_any_json(header: Any, claims: Any, sig: bytes) -> None:
    token = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}.{_b64(sig)}"
    try:
        h, c, _, s = decode_unverified(token)
    except JoseError:
        return
    assert isinstance(h, dict) and isinstance(c, dict) and s == sig


@given(st.dictionaries(st.sampled_from(["kty", "n", "e", "crv", "x", "y", "kid", "use"]),
                       st.text(max_size=40) | st.integers(), max_size=8))
@settings(max_examples=300)
def test_import_jwk_raises_only_jose_errors(jwk: dict[str, Any]) -> None:
    try:
        import_jwk(jwk)
    except JoseError:
        pass
    try:
        import_jwks({"keys": [jwk]})
    except JoseError:
        pass


@pytest.fixture
async def app_client(client_factory: Any) -> Any:
    async with client_factory(auth="on") as http:
        yield http


_HEADER = _b64(orjson.dumps({"alg": "RS256", "kid": "x", "typ": "at+jwt"}))


@given(token=st.text(max_size=200) | json_values.map(lambda v: f"{_HEADER}.{_b64(json.dumps(v).encode())}.AAAA"))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
async def test_the_api_answers_401_to_any_bearer_value(app_client: Any, token: str) -> None:
    value = "Bearer " + token
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        return  # not sendable as an HTTP header
    if any(ch in value for ch in "\r\n\x00"):
        return
    r = await app_client.get("/Patient", headers={"Authorization": value.encode("latin-1")})
    assert r.status_code == 401, r.text
    assert r.json()["resourceType"] == "OperationOutcome"
