"""Tokens of an external OpenID provider (Pro Santé Connect), and the professional they name.

https://openid.net/specs/openid-connect-core-1_0.html#IDTokenValidation

The issuer's JWKS is fetched from `external_jwks_url`, cached, and refetched when a token
names an unknown `kid`. Signature, `iss`, `aud`, `exp` and `nbf` are checked; the national
professional identifier (idNatPs, in PSC's `SubjectNameID`, else `preferred_username`) is
mapped to the Practitioner whose identifier has system urn:oid:1.2.250.1.71.4.2.1.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Connection

from fhir_server.auth.jose import JoseError, decode_unverified, verify_jws
from fhir_server.auth.remote import JwksCache

__all__ = ["IDNATPS_SYSTEM", "ExternalIssuer", "check_times", "idnatps_of", "resolve_practitioner"]

IDNATPS_SYSTEM = "urn:oid:1.2.250.1.71.4.2.1"
LEEWAY = 10  # seconds of clock skew tolerated on exp / nbf / iat


def check_times(claims: dict[str, Any], now: float | None = None) -> None:
    now = time.time() if now is None else now
    exp = claims.get("exp")
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        raise JoseError("the token has no exp")
    if exp + LEEWAY < now:
        raise JoseError("the token has expired")
    nbf = claims.get("nbf")
    if nbf is not None and (not isinstance(nbf, int | float) or nbf - LEEWAY > now):
        raise JoseError("the token is not valid yet (nbf)")
    iat = claims.get("iat")
    if iat is not None and isinstance(iat, int | float) and iat - LEEWAY > now:
        raise JoseError("the token was issued in the future (iat)")


def audience_has(claims: dict[str, Any], audience: str) -> bool:
    aud = claims.get("aud")
    return aud == audience or (isinstance(aud, list) and audience in aud)


def idnatps_of(claims: dict[str, Any]) -> str | None:
    for name in ("SubjectNameID", "preferred_username"):
        value = claims.get(name)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def resolve_practitioner(conn: Connection, idnatps: str) -> str | None:
    """'Practitioner/<id>' of the one current Practitioner with this idNatPs, else None."""
    from fhir_server.search import EVERYTHING, find_ids

    if not idnatps or "|" in idnatps or "," in idnatps:
        return None
    # the server itself, mapping an identity: directory data, read with unrestricted access
    found = find_ids(conn=conn, res_type="Practitioner", params=[("identifier", f"{IDNATPS_SYSTEM}|{idnatps}")],
                     limit=2, access=EVERYTHING)
    if len(found) != 1:
        return None  # none, or two Practitioners claiming one identifier: never guess
    return f"Practitioner/{found[0][1]}"


class ExternalIssuer:
    def __init__(self, issuer: str, jwks_url: str, audience: str, algorithms: tuple[str, ...]) -> None:
        self.issuer = issuer
        self.jwks_url = jwks_url
        self.audience = audience
        self.algorithms = algorithms
        self.jwks = JwksCache(max_age=3600.0, min_interval=5.0)

    async def verify(self, token: str, audience: str | None = None) -> dict[str, Any]:
        """The claims of a token this issuer signed for us (or for `audience`); JoseError otherwise."""
        header, claims, signing_input, signature = decode_unverified(token)
        if claims.get("iss") != self.issuer:
            raise JoseError("wrong issuer")
        if header.get("alg") not in self.algorithms:
            raise JoseError(f"alg {header.get('alg')!r} is not accepted")
        kid = header.get("kid")
        key = await self.jwks.key(self.jwks_url, kid if isinstance(kid, str) else None)
        if key is None:
            raise JoseError("unknown signing key (kid) for the external issuer")
        verify_jws(header, signing_input, signature, key, self.algorithms)
        check_times(claims)
        if not audience_has(claims, audience or self.audience):
            raise JoseError("wrong audience")
        return claims
