"""Token signing keys, kept in the database so every app node signs and verifies alike.

https://www.rfc-editor.org/rfc/rfc7517

One key signs at a time (the newest whose `retire_at` is ahead); older keys stay published in
the JWKS and keep verifying until `expires_at`, past the lifetime of the last token they
signed, so rotation needs no downtime. A node that meets an unknown `kid` reloads the table
(at most once a second), which is how it learns a key another node just created.

Our tokens are RS256: on this machine an RS256 verification costs ~26 µs, ES256 ~65 µs,
ES384 ~550 µs, Ed25519 ~136 µs (cryptography 50, OpenSSL 3; `bench/auth_tokens.py`).
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc import jwt
from joserfc.jwk import RSAKey
from sqlalchemy import Connection, insert, select, update

from fhir_server.auth.jose import PublicKey, import_jwk
from fhir_server.auth.tables import auth_signing_key

__all__ = ["SIGNING_ALG", "KeyRing", "create_key", "rotate_keys"]

SIGNING_ALG = "RS256"
_MARGIN = 300  # seconds a key verifies past the last token it could have signed


@dataclass(frozen=True)
class _Signer:
    kid: str
    key: RSAKey
    retire_at: int


def _lifetime_cover(token_lifetime: int) -> int:
    return max(token_lifetime, 3600) + _MARGIN  # id_tokens live an hour


def create_key(conn: Connection, rotation_days: int, token_lifetime: int, now: int | None = None) -> str:
    """Insert a new signing key (it signs from now on) and return its kid."""
    now = now or int(time.time())
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")
    jose_key = RSAKey.import_key(pem)
    kid = f"{time.strftime('%Y%m%d', time.gmtime(now))}-{jose_key.thumbprint()[:16]}"
    public = {**jose_key.as_dict(private=False), "kid": kid, "alg": SIGNING_ALG, "use": "sig"}
    retire_at = now + rotation_days * 86400
    conn.execute(
        insert(auth_signing_key).values(
            kid=kid, alg=SIGNING_ALG, private_pem=pem, public_jwk=orjson.dumps(public).decode(),
            created_at=now, retire_at=retire_at, expires_at=retire_at + _lifetime_cover(token_lifetime),
        )
    )
    return kid


def rotate_keys(conn: Connection, rotation_days: int, token_lifetime: int) -> str:
    """Retire the signing key(s) now (they keep verifying their tokens) and create a new one."""
    now = int(time.time())
    t = auth_signing_key
    conn.execute(
        update(t).where(t.c.retire_at > now).values(retire_at=now, expires_at=now + _lifetime_cover(token_lifetime))
    )
    return create_key(conn, rotation_days, token_lifetime, now)


def ensure_key(conn: Connection, rotation_days: int, token_lifetime: int) -> str | None:
    """Create a signing key when none is current; the new kid, or None when one exists."""
    now = int(time.time())
    t = auth_signing_key
    if conn.execute(select(t.c.kid).where(t.c.retire_at > now).limit(1)).first() is None:
        return create_key(conn, rotation_days, token_lifetime, now)
    return None


class KeyRing:
    """This node's view of the signing keys: verification keys by kid, and the current signer."""

    def __init__(self, rotation_days: int, token_lifetime: int) -> None:
        self.rotation_days = rotation_days
        self.token_lifetime = token_lifetime
        self._verify: dict[str, PublicKey] = {}
        self._public: list[dict[str, Any]] = []
        self._signer: _Signer | None = None
        self._loaded_at = 0.0
        self._lock = threading.Lock()

    # -- loading -------------------------------------------------------------------------------
    def load(self, conn: Connection) -> None:
        now = int(time.time())
        t = auth_signing_key
        rows = conn.execute(
            select(t.c.kid, t.c.private_pem, t.c.public_jwk, t.c.retire_at, t.c.created_at)
            .where(t.c.expires_at > now)
            .order_by(t.c.created_at.desc(), t.c.kid)
        ).all()
        verify: dict[str, PublicKey] = {}
        public = []
        signer = None
        for kid, pem, jwk_text, retire_at, _created in rows:
            jwk = orjson.loads(jwk_text)
            verify[kid] = import_jwk(jwk)
            public.append(jwk)
            if signer is None and retire_at > now:
                signer = _Signer(kid, RSAKey.import_key(pem), retire_at)
        with self._lock:
            self._verify, self._public, self._signer = verify, public, signer
            self._loaded_at = time.monotonic()

    def stale(self, max_age: float) -> bool:
        return time.monotonic() - self._loaded_at > max_age

    def needs_signer(self) -> bool:
        signer = self._signer
        return signer is None or signer.retire_at <= time.time()

    # -- use -----------------------------------------------------------------------------------
    def key(self, kid: str) -> PublicKey | None:
        return self._verify.get(kid)

    def jwks(self) -> dict[str, Any]:
        return {"keys": list(self._public)}

    def sign(self, claims: dict[str, Any], typ: str = "JWT") -> str:
        signer = self._signer
        if signer is None:
            raise RuntimeError("no signing key loaded")
        header = {"alg": SIGNING_ALG, "kid": signer.kid, "typ": typ}
        return jwt.encode(header, claims, signer.key, algorithms=[SIGNING_ALG])


def new_token_id() -> str:
    return secrets.token_urlsafe(18)
