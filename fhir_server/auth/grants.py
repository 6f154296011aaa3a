"""Authorization codes, refresh-token families and revocations, as database operations.

https://www.rfc-editor.org/rfc/rfc6749#section-10.5 and
https://datatracker.ietf.org/doc/html/draft-ietf-oauth-security-topics#section-4.14.2

A code is used once: a second exchange revokes whatever the first one issued. Refresh tokens
rotate: each use marks the token used and issues the next one in the same family; presenting a
used token again means it leaked, so the whole family (and the access tokens it produced, by
their `sid`) is revoked. Only SHA-256 hashes of codes and refresh tokens are stored.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

from sqlalchemy import Connection, insert, select, update

from fhir_server.auth.store import sha256
from fhir_server.auth.tables import auth_code, auth_launch, auth_refresh_token, auth_revocation

__all__ = [
    "CodeGrant",
    "RefreshGrant",
    "consume_code",
    "consume_refresh",
    "create_launch",
    "get_launch",
    "new_code",
    "new_refresh",
    "revoke",
    "revoke_family",
]

CODE_LIFETIME = 60


@dataclass(frozen=True)
class CodeGrant:
    client_id: str
    redirect_uri: str
    scope: str
    code_challenge: str
    subject: str
    fhir_user: str | None
    patient: str | None
    nonce: str | None
    family: str


@dataclass(frozen=True)
class RefreshGrant:
    family: str
    client_id: str
    subject: str
    fhir_user: str | None
    patient: str | None
    scope: str


def new_code(conn: Connection, grant: CodeGrant) -> str:
    code = secrets.token_urlsafe(32)
    conn.execute(insert(auth_code).values(
        code_hash=sha256(code), expires_at=int(time.time()) + CODE_LIFETIME, used=False, **grant.__dict__,
    ))
    return code


def consume_code(conn: Connection, code: str, refresh_lifetime: int) -> CodeGrant | str:
    """The grant of an unused, unexpired code (now used), or the reason it is refused."""
    t = auth_code
    row = conn.execute(select(t).where(t.c.code_hash == sha256(code))).first()
    if row is None:
        return "unknown authorization code"
    r = row._mapping
    if r["used"]:
        revoke_family(conn, r["family"], refresh_lifetime)
        return "authorization code already used: the tokens it gave are revoked"
    if r["expires_at"] < time.time():
        return "authorization code expired"
    done = conn.execute(update(t).where(t.c.code_hash == r["code_hash"], t.c.used.is_(False)).values(used=True))
    if done.rowcount != 1:
        revoke_family(conn, r["family"], refresh_lifetime)
        return "authorization code already used"
    return CodeGrant(**{k: r[k] for k in CodeGrant.__dataclass_fields__})


def new_refresh(conn: Connection, grant: RefreshGrant, lifetime: int) -> str:
    token = secrets.token_urlsafe(32)
    now = int(time.time())
    conn.execute(insert(auth_refresh_token).values(
        token_hash=sha256(token), created_at=now, expires_at=now + lifetime, used=False, revoked=False,
        **grant.__dict__,
    ))
    return token


def consume_refresh(conn: Connection, token: str, client_id: str, lifetime: int) -> RefreshGrant | str:
    """The grant of a live refresh token (now used), or why not; reuse revokes its family."""
    t = auth_refresh_token
    row = conn.execute(select(t).where(t.c.token_hash == sha256(token))).first()
    if row is None:
        return "unknown refresh token"
    r = row._mapping
    if r["client_id"] != client_id:
        return "refresh token issued to another client"
    if r["revoked"]:
        return "refresh token revoked"
    if r["used"]:
        revoke_family(conn, r["family"], lifetime)
        return "refresh token reused: every token of its family is revoked"
    if r["expires_at"] < time.time():
        return "refresh token expired"
    done = conn.execute(update(t).where(t.c.token_hash == r["token_hash"], t.c.used.is_(False)).values(used=True))
    if done.rowcount != 1:
        revoke_family(conn, r["family"], lifetime)
        return "refresh token reused: every token of its family is revoked"
    return RefreshGrant(**{k: r[k] for k in RefreshGrant.__dataclass_fields__})


def refresh_family(conn: Connection, token: str) -> tuple[str, str] | None:
    """(family, client_id) of a refresh token, whatever its state."""
    t = auth_refresh_token
    row = conn.execute(select(t.c.family, t.c.client_id).where(t.c.token_hash == sha256(token))).first()
    return (row[0], row[1]) if row else None


def revoke_family(conn: Connection, family: str, lifetime: int) -> None:
    conn.execute(update(auth_refresh_token).where(auth_refresh_token.c.family == family).values(revoked=True))
    revoke(conn, "family", family, int(time.time()) + lifetime)


def revoke(conn: Connection, kind: str, value: str, expires_at: int) -> None:
    t = auth_revocation
    conn.execute(t.delete().where(t.c.expires_at < int(time.time())))
    if conn.execute(select(t.c.value).where(t.c.kind == kind, t.c.value == value)).first() is None:
        conn.execute(insert(t).values(kind=kind, value=value, expires_at=expires_at))


def create_launch(conn: Connection, patient: str | None, encounter: str | None, created_by: str) -> str:
    launch_id = secrets.token_urlsafe(16)
    conn.execute(insert(auth_launch).values(
        launch_id=launch_id, patient=patient, encounter=encounter, created_by=created_by,
        expires_at=int(time.time()) + 3600,
    ))
    return launch_id


def get_launch(conn: Connection, launch_id: str) -> tuple[str | None, str | None] | None:
    t = auth_launch
    row = conn.execute(select(t.c.patient, t.c.encounter, t.c.expires_at).where(t.c.launch_id == launch_id)).first()
    if row is None or row[2] < time.time():
        return None
    return row[0], row[1]
