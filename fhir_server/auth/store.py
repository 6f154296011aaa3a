"""Clients and local users of the authorisation server, and the secrets that prove them.

https://www.rfc-editor.org/rfc/rfc7591#section-2 (client metadata)

Passwords and client secrets are stored as scrypt hashes (hashlib.scrypt, n=2**14, r=8, p=1,
16-byte salt); checking one costs ~50 ms, which is the point. Functions here take a SQLAlchemy
`Connection`, so the CLI (its own engine) and the app (`Storage.run_read`/`write`) share them.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

import orjson
from sqlalchemy import Connection, insert, select, update

from fhir_server.auth.scopes import ScopeSet, parse_scopes
from fhir_server.auth.tables import auth_client, auth_user

__all__ = [
    "AUTH_METHODS",
    "ClientRecord",
    "UserRecord",
    "add_client",
    "add_user",
    "check_secret",
    "get_client",
    "get_user",
    "hash_secret",
    "list_clients",
    "revoke_client",
    "sha256",
]

AUTH_METHODS = ("private_key_jwt", "client_secret_basic", "client_secret_post", "none")
_N, _R, _P = 2**14, 8, 1


def hash_secret(secret: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return f"scrypt${_N}${_R}${_P}${salt.hex()}${digest.hex()}"


def check_secret(secret: str, stored: str | None) -> bool:
    if not stored:
        return False
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        got = hashlib.scrypt(secret.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p),
                             dklen=len(digest) // 2)
    except ValueError:
        return False
    return hmac.compare_digest(got.hex(), digest)


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class ClientRecord:
    client_id: str
    name: str
    auth_method: str
    secret_hash: str | None
    jwks: dict | None  # type: ignore[type-arg]
    jwks_uri: str | None
    redirect_uris: tuple[str, ...]
    scopes: ScopeSet
    scope_text: str
    acts_for: str | None
    is_admin: bool
    revoked: bool

    @property
    def fhir_user(self) -> str | None:
        if self.acts_for and not self.acts_for.startswith("Organization/"):
            return self.acts_for
        return None

    @property
    def organization(self) -> str | None:
        if self.acts_for and self.acts_for.startswith("Organization/"):
            return self.acts_for
        return None


@dataclass(frozen=True)
class UserRecord:
    username: str
    password_hash: str
    fhir_user: str
    disabled: bool


def _client(row: object) -> ClientRecord:
    r = row._mapping  # type: ignore[attr-defined]
    return ClientRecord(
        client_id=r["client_id"], name=r["name"], auth_method=r["auth_method"], secret_hash=r["secret_hash"],
        jwks=orjson.loads(r["jwks"]) if r["jwks"] else None, jwks_uri=r["jwks_uri"],
        redirect_uris=tuple((r["redirect_uris"] or "").split()), scopes=parse_scopes(r["scopes"]),
        scope_text=r["scopes"], acts_for=r["acts_for"], is_admin=bool(r["is_admin"]),
        revoked=r["revoked_at"] is not None,
    )


def add_client(
    conn: Connection,
    client_id: str,
    name: str,
    auth_method: str,
    scopes: str,
    secret: str | None = None,
    jwks: dict | None = None,  # type: ignore[type-arg]
    jwks_uri: str | None = None,
    redirect_uris: tuple[str, ...] = (),
    acts_for: str | None = None,
    is_admin: bool = False,
) -> ClientRecord:
    """Register a client; raises ValueError on an inconsistent registration."""
    if auth_method not in AUTH_METHODS:
        raise ValueError(f"auth method must be one of {', '.join(AUTH_METHODS)}")
    if auth_method == "private_key_jwt" and not (jwks or jwks_uri):
        raise ValueError("private_key_jwt needs the client's JWKS (inline or by URL)")
    if auth_method.startswith("client_secret") and not secret:
        raise ValueError(f"{auth_method} needs a secret")
    if auth_method == "none" and not redirect_uris:
        raise ValueError("a public client (no authentication) needs redirect URIs: it can only use PKCE")
    if acts_for and acts_for.split("/")[0] not in ("Organization", "Practitioner", "PractitionerRole"):
        raise ValueError("acts-for must be Organization/<id>, Practitioner/<id> or PractitionerRole/<id>")
    parse_scopes(scopes)  # refuse what would never parse at token time
    if jwks is not None:
        from fhir_server.auth.jose import import_jwks

        if not import_jwks(jwks):
            raise ValueError("the JWKS holds no usable RSA or EC signature key")
    conn.execute(
        insert(auth_client).values(
            client_id=client_id, name=name, auth_method=auth_method,
            secret_hash=hash_secret(secret) if secret else None,
            jwks=orjson.dumps(jwks).decode() if jwks else None, jwks_uri=jwks_uri,
            redirect_uris=" ".join(redirect_uris), scopes=scopes, acts_for=acts_for, is_admin=is_admin,
            created_at=int(time.time()), revoked_at=None,
        )
    )
    found = get_client(conn, client_id)
    assert found is not None
    return found


def get_client(conn: Connection, client_id: str) -> ClientRecord | None:
    row = conn.execute(select(auth_client).where(auth_client.c.client_id == client_id)).first()
    return _client(row) if row is not None else None


def list_clients(conn: Connection) -> list[ClientRecord]:
    return [_client(r) for r in conn.execute(select(auth_client).order_by(auth_client.c.client_id))]


def revoke_client(conn: Connection, client_id: str) -> bool:
    done = conn.execute(
        update(auth_client)
        .where(auth_client.c.client_id == client_id, auth_client.c.revoked_at.is_(None))
        .values(revoked_at=int(time.time()))
    )
    return bool(done.rowcount)


def revoked_client_ids(conn: Connection) -> set[str]:
    return set(conn.execute(select(auth_client.c.client_id).where(auth_client.c.revoked_at.is_not(None))).scalars())


def add_user(conn: Connection, username: str, password: str, fhir_user: str) -> None:
    if fhir_user.split("/")[0] not in ("Practitioner", "PractitionerRole", "Patient", "RelatedPerson"):
        raise ValueError(
            "fhir-user must be Practitioner/<id>, PractitionerRole/<id>, Patient/<id> or RelatedPerson/<id>"
        )
    if len(password) < 8:
        raise ValueError("the password needs at least 8 characters")
    conn.execute(
        insert(auth_user).values(
            username=username, password_hash=hash_secret(password), fhir_user=fhir_user,
            created_at=int(time.time()), disabled=False,
        )
    )


def get_user(conn: Connection, username: str) -> UserRecord | None:
    row = conn.execute(select(auth_user).where(auth_user.c.username == username)).first()
    if row is None:
        return None
    r = row._mapping
    return UserRecord(r["username"], r["password_hash"], r["fhir_user"], bool(r["disabled"]))
