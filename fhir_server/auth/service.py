"""The per-app state of authentication: keys, revocations, caches, and bearer-token checks.

https://hl7.org/fhir/smart-app-launch/STU2.2/app-launch.html#access-token

`AuthService.authenticate` turns a bearer token into a `Caller`: our own RS256 JWTs (checked
on a `cryptography` key imported once, then cached by token string until `exp`) or the
external issuer's. Revocations (access-token ids, refresh-token families, revoked clients)
are read from the database every few seconds, so a revocation made on one node reaches the
others within `REVOCATION_POLL` seconds; on the node that made it, at once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, delete, select

from fhir_server.auth.caller import Caller
from fhir_server.auth.errors import AuthFailure, forbidden_token, invalid_token
from fhir_server.auth.external import ExternalIssuer, check_times, idnatps_of, resolve_practitioner
from fhir_server.auth.jose import JoseError, decode_unverified, verify_jws
from fhir_server.auth.keys import SIGNING_ALG, KeyRing, ensure_key, new_token_id
from fhir_server.auth.scopes import ScopeError, ScopeSet, parse_scopes
from fhir_server.auth.store import revoked_client_ids
from fhir_server.auth.tables import auth_revocation, auth_used_jti
from fhir_server.config import Settings
from fhir_server.storage import Storage, WriteTx

__all__ = ["AuthService", "RateLimiter", "cached_scopes", "issuer_for"]

REVOCATION_POLL = 5.0
KEY_RELOAD = 60.0
_OWN_ALGS = (SIGNING_ALG,)
_CACHE_MAX = 20000
_BREAK_GLASS_MAX = 500


def issuer_for(settings: Settings, fhir_base: str) -> str:
    """The authorisation server's issuer URL: configured, else the base with /fhir -> /auth."""
    if settings.auth_issuer:
        return settings.auth_issuer.rstrip("/")
    root = fhir_base[: -len("/fhir")] if fhir_base.endswith("/fhir") else fhir_base
    return root + "/auth"


@lru_cache(maxsize=1024)
def cached_scopes(text: str) -> ScopeSet:
    return parse_scopes(text)


class RateLimiter:
    """Token bucket per key: `per_minute` requests a minute, bursts up to the same number."""

    def __init__(self, per_minute: int) -> None:
        self.rate = per_minute / 60.0
        self.capacity = float(per_minute)
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, key: str) -> int:
        """0 when allowed, else the seconds to wait (for Retry-After)."""
        if self.rate <= 0:
            return 0
        now = time.monotonic()
        tokens, last = self._buckets.get(key, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - last) * self.rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return max(1, int((1.0 - tokens) / self.rate + 0.999))
        if len(self._buckets) > 100_000:
            self._buckets.clear()
        self._buckets[key] = (tokens - 1.0, now)
        return 0


@dataclass(frozen=True, slots=True)
class _Verified:
    caller: Caller
    exp: float
    family: str | None


class AuthService:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.enabled = settings.auth == "on"
        self.keys = KeyRing(settings.key_rotation_days, settings.token_lifetime_seconds)
        self.limiter = RateLimiter(settings.rate_limit_per_minute)
        self.external: ExternalIssuer | None = None
        if settings.external_issuer and settings.external_jwks_url:
            algs = tuple(a.strip() for a in settings.external_algorithms.split(",") if a.strip())
            self.external = ExternalIssuer(
                settings.external_issuer, settings.external_jwks_url,
                settings.external_audience or settings.base_url, algs,
            )
        self._revoked_jti: set[str] = set()
        self._revoked_families: set[str] = set()
        self._revoked_clients: set[str] = set()
        self._revocations_at = 0.0
        self._cache: dict[str, _Verified] = {}
        self._practitioners: dict[str, tuple[float, str | None]] = {}
        self._issuers: dict[str, str] = {}

    # -- URLs ------------------------------------------------------------------------------------
    def fhir_base(self, request_base: str) -> str:
        """The FHIR base URL (token `aud`): configured, else derived from the request."""
        return self.settings.base_url.rstrip("/") or request_base.rstrip("/") + "/fhir"

    def issuer(self, fhir_base: str) -> str:
        found = self._issuers.get(fhir_base)
        if found is None:
            found = issuer_for(self.settings, fhir_base)
            if len(self._issuers) < 64:  # a few host names at most; never grow on hostile Host headers
                self._issuers[fhir_base] = found
        return found

    # -- shared state from the database ----------------------------------------------------------
    async def ensure_keys(self, store: Storage) -> None:
        """Load the signing keys (every minute), creating or rotating the current one when due."""
        if self.keys.stale(KEY_RELOAD):
            await store.run_read(self.keys.load)
        if self.keys.needs_signer():
            s = self.settings
            await store.write(lambda tx: ensure_key(tx.conn, s.key_rotation_days, s.token_lifetime_seconds))
            await store.run_read(self.keys.load)

    async def refresh_revocations(self, store: Storage, force: bool = False) -> None:
        if not force and time.monotonic() - self._revocations_at < REVOCATION_POLL:
            return
        self._revocations_at = time.monotonic()

        def read(conn: Connection) -> tuple[set[str], set[str], set[str]]:
            rows = conn.execute(select(auth_revocation.c.kind, auth_revocation.c.value)).all()
            return ({v for k, v in rows if k == "jti"}, {v for k, v in rows if k == "family"},
                    revoked_client_ids(conn))

        self._revoked_jti, self._revoked_families, self._revoked_clients = await store.run_read(read)

    def revoked_locally(self, kind: str, value: str) -> None:
        {"jti": self._revoked_jti, "family": self._revoked_families, "client": self._revoked_clients}[kind].add(value)

    def _is_revoked(self, caller: Caller, family: str | None) -> bool:
        return (
            caller.token_id in self._revoked_jti
            or caller.client_id in self._revoked_clients
            or (family is not None and family in self._revoked_families)
        )

    # -- bearer tokens ---------------------------------------------------------------------------
    async def authenticate(self, token: str, store: Storage, fhir_base: str) -> Caller:
        """The caller a bearer token proves; AuthFailure (401/403) otherwise."""
        await self.refresh_revocations(store)
        hit = self._cache.get(token)
        if hit is not None:
            if hit.exp < time.time():
                del self._cache[token]
                raise invalid_token("the token has expired")
            if self._is_revoked(hit.caller, hit.family):
                raise invalid_token("the token has been revoked")
            return hit.caller
        try:
            header, claims, signing_input, signature = decode_unverified(token)
            iss = claims.get("iss")
            own = self.issuer(fhir_base)
            if iss == own:
                verified = await self._own(header, claims, signing_input, signature, store, fhir_base)
            elif self.external is not None and iss == self.external.issuer:
                verified = await self._external(token, store)
            else:
                raise JoseError("unknown issuer")
        except JoseError as exc:
            raise invalid_token(str(exc)) from None
        if self._is_revoked(verified.caller, verified.family):
            raise invalid_token("the token has been revoked")
        if len(self._cache) >= _CACHE_MAX:
            now = time.time()
            self._cache = {k: v for k, v in self._cache.items() if v.exp > now}
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()
        self._cache[token] = verified
        return verified.caller

    async def _own(self, header: dict[str, Any], claims: dict[str, Any], signing_input: bytes, signature: bytes,
                   store: Storage, fhir_base: str) -> _Verified:
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise JoseError("the token names no key (kid)")
        key = self.keys.key(kid)
        if key is None and self.keys.stale(1.0):
            await store.run_read(self.keys.load)  # a key another node just created
            key = self.keys.key(kid)
        if key is None:
            raise JoseError("unknown signing key (kid)")
        verify_jws(header, signing_input, signature, key, _OWN_ALGS)
        check_times(claims)
        if claims.get("aud") != fhir_base:
            raise JoseError("wrong audience")
        if header.get("typ") != "at+jwt":
            raise JoseError("not an access token")
        try:
            scopes = cached_scopes(str(claims.get("scope", "")))
        except ScopeError as exc:
            raise JoseError("malformed scope") from exc
        caller = Caller(
            kind=str(claims.get("kind", "system")),
            client_id=str(claims.get("client_id", "")),
            subject=str(claims.get("sub", "")),
            fhir_user=claims.get("fhirUser"),
            patient=claims.get("patient"),
            organization=claims.get("org"),
            scopes=scopes,
            token_id=str(claims.get("jti", "")),
        )
        return _Verified(caller, float(claims["exp"]), claims.get("sid"))

    async def _external(self, token: str, store: Storage) -> _Verified:
        assert self.external is not None
        claims = await self.external.verify(token)
        idnatps = idnatps_of(claims)
        if idnatps is None:
            raise JoseError("the token carries no idNatPs (SubjectNameID / preferred_username)")
        practitioner = await self.practitioner(store, idnatps)
        if practitioner is None:
            raise forbidden_token(f"No Practitioner has the idNatPs {idnatps} (identifier system "
                                  "urn:oid:1.2.250.1.71.4.2.1)")
        caller = Caller(
            kind="user",
            client_id=str(claims.get("azp") or "external"),
            subject=str(claims.get("sub", idnatps)),
            fhir_user=practitioner,
            patient=None,
            organization=None,
            scopes=cached_scopes(self.settings.external_scopes),
            token_id=str(claims.get("jti") or claims.get("sid") or ""),
        )
        return _Verified(caller, float(claims["exp"]), None)

    async def practitioner(self, store: Storage, idnatps: str) -> str | None:
        """resolve_practitioner, remembered for a minute (a new Practitioner is seen within it)."""
        now = time.monotonic()
        hit = self._practitioners.get(idnatps)
        if hit is not None and now - hit[0] < 60.0:
            return hit[1]
        found = await store.run_read(lambda conn: resolve_practitioner(conn, idnatps))
        if len(self._practitioners) > 10_000:
            self._practitioners.clear()
        self._practitioners[idnatps] = (now, found)
        return found

    def with_break_glass(self, caller: Caller, reason: str | None) -> Caller:
        if reason is None:
            return caller
        if not caller.scopes.btg:
            raise forbidden_token("Break-the-glass is not granted to this token (scope btg)", "btg")
        reason = reason.strip()[:_BREAK_GLASS_MAX]
        if not reason:
            raise AuthFailure(400, "X-Break-Glass-Reason must give a reason", "invalid")
        from dataclasses import replace

        return replace(caller, break_glass=reason)

    def verify_own(self, token: str, typ: str, audience: str) -> dict[str, Any] | None:
        """The claims of a JWT this server signed (with the keys loaded), of type `typ`, for `audience`."""
        try:
            header, claims, signing_input, signature = decode_unverified(token)
            key = self.keys.key(str(header.get("kid")))
            if key is None or header.get("typ") != typ:
                return None
            verify_jws(header, signing_input, signature, key, _OWN_ALGS)
            check_times(claims)
        except JoseError:
            return None
        return claims if claims.get("aud") == audience else None

    # -- issuing ---------------------------------------------------------------------------------
    def access_token(
        self, fhir_base: str, *, client_id: str, subject: str, kind: str, scopes: ScopeSet,
        fhir_user: str | None = None, patient: str | None = None, organization: str | None = None,
        family: str | None = None,
    ) -> tuple[str, dict[str, Any]]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer(fhir_base), "aud": fhir_base, "sub": subject, "client_id": client_id,
            "iat": now, "exp": now + self.settings.token_lifetime_seconds, "jti": new_token_id(),
            "scope": str(scopes), "kind": kind,
        }
        for name, value in (("fhirUser", fhir_user), ("patient", patient), ("org", organization), ("sid", family)):
            if value:
                claims[name] = value
        return self.keys.sign(claims, typ="at+jwt"), claims

    def id_token(self, fhir_base: str, *, client_id: str, subject: str, fhir_user: str | None,
                 nonce: str | None) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer(fhir_base), "aud": client_id, "sub": subject, "iat": now, "exp": now + 3600,
        }
        if fhir_user:
            claims["fhirUser"] = f"{fhir_base}/{fhir_user}"
        if nonce:
            claims["nonce"] = nonce
        return self.keys.sign(claims)


def record_jti(tx: WriteTx, client_id: str, jti: str, expires_at: int) -> bool:
    """Remember an assertion id until it expires; False when it was seen before (a replay)."""
    from sqlalchemy import insert
    from sqlalchemy.exc import IntegrityError

    t = auth_used_jti
    now = int(time.time())
    tx.conn.execute(delete(t).where(t.c.expires_at < now - 60))
    if tx.conn.execute(select(t.c.jti).where(t.c.client_id == client_id, t.c.jti == jti)).first() is not None:
        return False
    try:
        with tx.conn.begin_nested():
            tx.conn.execute(insert(t).values(client_id=client_id, jti=jti, expires_at=expires_at))
    except IntegrityError:
        return False  # another node recorded it a moment ago
    return True
