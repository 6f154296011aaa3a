"""Client authentication at the token, introspection and revocation endpoints.

https://hl7.org/fhir/smart-app-launch/STU2/client-confidential-asymmetric.html and
https://www.rfc-editor.org/rfc/rfc7523#section-3

`private_key_jwt`: the assertion's `iss` and `sub` are the client_id, `aud` is the token URL,
`exp` at most five minutes ahead, `jti` never seen before (recorded until it expires, in the
database, so a replay on another node fails too); RS384 or ES384 with a key from the client's
registered JWKS (inline or by URL). `client_secret_basic`/`client_secret_post`: scrypt-checked
secret. A public client (`none`) only names itself, and may then only use PKCE.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
from typing import Any
from urllib.parse import unquote

from fhir_server.auth.external import audience_has, check_times
from fhir_server.auth.jose import JoseError, decode_unverified, import_jwks, verify_jws
from fhir_server.auth.remote import JwksCache
from fhir_server.auth.service import record_jti
from fhir_server.auth.store import ClientRecord, check_secret, get_client
from fhir_server.storage import Storage

__all__ = ["ASSERTION_ALGS", "ASSERTION_TYPE", "ClientAuthError", "authenticate_client"]

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_ALGS = ("RS384", "ES384")
MAX_ASSERTION_LIFETIME = 300
_JWKS = JwksCache(max_age=300.0, min_interval=5.0)


class ClientAuthError(Exception):
    def __init__(self, description: str, basic: bool = False) -> None:
        super().__init__(description)
        self.basic = basic


def _basic(header: str | None) -> tuple[str, str] | None:
    if not header or not header[:6].lower() == "basic ":
        return None
    try:
        raw = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise ClientAuthError("malformed Basic credentials", basic=True) from exc
    user, sep, password = raw.partition(":")
    if not sep:
        raise ClientAuthError("malformed Basic credentials", basic=True)
    return unquote(user), unquote(password)


async def _client(store: Storage, client_id: str, basic: bool = False) -> ClientRecord:
    client = await store.run_read(lambda conn: get_client(conn, client_id))
    if client is None:
        raise ClientAuthError("unknown client", basic)
    if client.revoked:
        raise ClientAuthError("client revoked", basic)
    return client


async def authenticate_client(store: Storage, form: dict[str, str], authorization: str | None,
                              token_url: str) -> ClientRecord:
    """The client that authenticated this request; ClientAuthError otherwise."""
    assertion_type = form.get("client_assertion_type")
    if assertion_type is not None or "client_assertion" in form:
        if assertion_type != ASSERTION_TYPE:
            raise ClientAuthError("client_assertion_type must be " + ASSERTION_TYPE)
        return await _assertion(store, form.get("client_assertion", ""), form.get("client_id"), token_url)
    basic = _basic(authorization)
    if basic is not None:
        client = await _client(store, basic[0], basic=True)
        if client.auth_method != "client_secret_basic" or not await asyncio.to_thread(
            check_secret, basic[1], client.secret_hash
        ):
            raise ClientAuthError("bad client credentials", basic=True)
        return client
    client_id = form.get("client_id")
    if not client_id:
        raise ClientAuthError("no client authentication")
    client = await _client(store, client_id)
    if "client_secret" in form:
        if client.auth_method != "client_secret_post" or not await asyncio.to_thread(
            check_secret, form["client_secret"], client.secret_hash
        ):
            raise ClientAuthError("bad client credentials")
        return client
    if client.auth_method != "none":
        raise ClientAuthError(f"this client must authenticate with {client.auth_method}")
    return client


async def _assertion(store: Storage, assertion: str, client_id: str | None, token_url: str) -> ClientRecord:
    try:
        header, claims, signing_input, signature = decode_unverified(assertion)
    except JoseError as exc:
        raise ClientAuthError(f"client assertion: {exc}") from None
    iss, sub = claims.get("iss"), claims.get("sub")
    if not isinstance(iss, str) or iss != sub:
        raise ClientAuthError("client assertion: iss and sub must both be the client_id")
    if client_id is not None and client_id != iss:
        raise ClientAuthError("client assertion: client_id differs from iss")
    client = await _client(store, iss)
    if client.auth_method != "private_key_jwt":
        raise ClientAuthError("this client is not registered for private_key_jwt")
    key = await _key(client, header)
    try:
        verify_jws(header, signing_input, signature, key, ASSERTION_ALGS)
        check_times(claims)
    except JoseError as exc:
        raise ClientAuthError(f"client assertion: {exc}") from None
    if not audience_has(claims, token_url):
        raise ClientAuthError(f"client assertion: aud must be the token endpoint {token_url}")
    exp = int(claims["exp"])
    if exp > time.time() + MAX_ASSERTION_LIFETIME + 5:
        raise ClientAuthError("client assertion: exp may be at most 5 minutes ahead")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not 0 < len(jti) <= 256:
        raise ClientAuthError("client assertion: jti is required")
    if not await store.write(lambda tx: record_jti(tx, client.client_id, jti, exp)):
        raise ClientAuthError("client assertion: jti already used (replay)")
    return client


async def _key(client: ClientRecord, header: dict[str, Any]) -> Any:
    kid = header.get("kid")
    kid = kid if isinstance(kid, str) else None
    if client.jwks is not None:
        keys = import_jwks(client.jwks)
        key = keys.get(kid) if kid else (next(iter(keys.values())) if len(keys) == 1 else None)
    elif client.jwks_uri:
        key = await _JWKS.key(client.jwks_uri, kid)
    else:
        key = None
    if key is None:
        raise ClientAuthError("client assertion: no registered key matches its kid")
    return key
