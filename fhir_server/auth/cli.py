"""Auth commands of `fhir-server`: clients, users, tokens, keys, and the first-start bootstrap.

https://hl7.org/fhir/smart-app-launch/STU2.2/backend-services.html#registering-a-smart-backend-service-communicating-public-keys

They work on the database directly (`FHIR_DATABASE_URL`): whoever can run them can already
read every row, so `fhir-server token` mints a token from the stored signing key without a
round trip through /auth/token.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import secrets
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, create_engine, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.pool import NullPool

from fhir_server.config import Settings, get_settings

__all__ = ["bootstrap", "register_commands"]

T = TypeVar("T")
ADMIN_ID = "admin"
ADMIN_SCOPES = "system/*.cruds"


def _db(settings: Settings, fn: Callable[[Connection], T]) -> T:
    from fhir_server.storage import migrate

    migrate(settings.database_url)
    engine = create_engine(settings.database_url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            return fn(conn)
    finally:
        engine.dispose()


def bootstrap(settings: Settings, base_url: str) -> list[str]:
    """First start: create the administrator client and a signing key; the lines to print."""
    from fhir_server.auth.keys import ensure_key
    from fhir_server.auth.store import add_client, get_client

    if settings.auth != "on":
        return ["!! FHIR_AUTH=off: NO authentication, NO authorisation. Local experiments only. !!"]
    auth_url = base_url[: -len("/fhir")] + "/auth" if base_url.endswith("/fhir") else base_url + "/auth"

    def run(conn: Connection) -> str | None:
        ensure_key(conn, settings.key_rotation_days, settings.token_lifetime_seconds)
        if get_client(conn, ADMIN_ID) is not None:
            return None
        secret = secrets.token_urlsafe(24)
        add_client(conn, ADMIN_ID, "Administrator", "client_secret_basic", ADMIN_SCOPES, secret=secret,
                   is_admin=True)
        return secret

    secret = _db(settings, run)
    lines = ["Auth: on (FHIR_AUTH=off to disable, for local experiments only). Get an administrator token:",
             f"  TOKEN=$({_program()} token --client admin)",
             f"  curl -H \"Authorization: Bearer $TOKEN\" {base_url}/Patient"]
    if secret is not None:
        lines += ["or over HTTP (this secret is shown once; only its hash is stored):",
                  f"  curl -s -u 'admin:{secret}' -d grant_type=client_credentials -d 'scope={ADMIN_SCOPES}' "
                  f"{auth_url}/token"]
    return lines


def _program() -> str:
    """How this process was started, so the printed command works as pasted (e.g. .venv/bin/fhir-server)."""
    if Path(sys.argv[0]).name == "fhir-server":
        return sys.argv[0]
    return f"{sys.executable} -m fhir_server"


# -- commands --------------------------------------------------------------------------------
def _clients_add(args: argparse.Namespace) -> int:
    from fhir_server.auth.store import add_client

    jwks = json.loads(Path(args.jwks).read_text()) if args.jwks else None
    secret = None
    if args.auth == "client_secret_basic" or args.auth == "client_secret_post":
        secret = os.environ.get("FHIR_CLIENT_SECRET") or secrets.token_urlsafe(24)
    client_id = args.id or args.name.lower().replace(" ", "-")
    try:
        _db(get_settings(), lambda conn: add_client(
            conn, client_id, args.name, args.auth, args.scopes, secret=secret, jwks=jwks, jwks_uri=args.jwks_url,
            redirect_uris=tuple(args.redirect_uri or ()), acts_for=args.acts_for,
        ))
    except (ValueError, IntegrityError) as exc:
        print(f"error: {exc if isinstance(exc, ValueError) else 'client id already registered'}", file=sys.stderr)
        return 2
    print(f"client_id: {client_id}")
    if secret and not os.environ.get("FHIR_CLIENT_SECRET"):
        print(f"client_secret: {secret}   (shown once; only its hash is stored)")
    return 0


def _clients_list(_args: argparse.Namespace) -> int:
    from fhir_server.auth.store import list_clients

    for c in _db(get_settings(), list_clients):
        keys = "jwks" if c.jwks else (f"jwks_uri={c.jwks_uri}" if c.jwks_uri else "-")
        state = "REVOKED" if c.revoked else ("admin" if c.is_admin else "active")
        print(f"{c.client_id}\t{state}\t{c.auth_method}\t{keys}\tscopes={c.scope_text}\tacts-for={c.acts_for or '-'}"
              f"\tname={c.name}")
    return 0


def _clients_revoke(args: argparse.Namespace) -> int:
    from fhir_server.auth.store import revoke_client

    if not _db(get_settings(), lambda conn: revoke_client(conn, args.client_id)):
        print(f"error: no active client {args.client_id}", file=sys.stderr)
        return 2
    print(f"revoked {args.client_id}: no new tokens; its live tokens are refused within 5 s on every node")
    return 0


def _users_add(args: argparse.Namespace) -> int:
    from fhir_server.auth.store import add_user

    password = os.environ.get("FHIR_USER_PASSWORD") or getpass.getpass(f"password for {args.username}: ")
    try:
        _db(get_settings(), lambda conn: add_user(conn, args.username, password, args.fhir_user))
    except (ValueError, IntegrityError) as exc:
        print(f"error: {exc if isinstance(exc, ValueError) else 'user already exists'}", file=sys.stderr)
        return 2
    print(f"user {args.username} -> {args.fhir_user}")
    return 0


def _token(args: argparse.Namespace) -> int:
    from fhir_server.auth.keys import KeyRing, ensure_key
    from fhir_server.auth.scopes import parse_scopes
    from fhir_server.auth.service import issuer_for
    from fhir_server.auth.store import get_client

    settings = get_settings()
    base = (args.base_url or settings.base_url or "http://127.0.0.1:8080/fhir").rstrip("/")
    ring = KeyRing(settings.key_rotation_days, settings.token_lifetime_seconds)

    def run(conn: Connection) -> Any:
        ensure_key(conn, settings.key_rotation_days, settings.token_lifetime_seconds)
        ring.load(conn)
        return get_client(conn, args.client)

    client = _db(settings, run)
    if client is None or client.revoked:
        print(f"error: no active client {args.client}", file=sys.stderr)
        return 2
    scopes = parse_scopes(args.scope or client.scope_text)
    if not client.scopes.covers(scopes):
        print("error: scopes beyond the client's: " + " ".join(client.scopes.excess(scopes)), file=sys.stderr)
        return 2
    now = int(time.time())
    claims = {"iss": issuer_for(settings, base), "aud": base, "sub": client.client_id, "client_id": client.client_id,
              "iat": now, "exp": now + settings.token_lifetime_seconds, "jti": uuid.uuid4().hex,
              "scope": str(scopes), "kind": "admin" if client.is_admin else "system"}
    if client.fhir_user:
        claims["fhirUser"] = client.fhir_user
    if client.organization:
        claims["org"] = client.organization
    print(ring.sign(claims, typ="at+jwt"))
    return 0


def _keys_rotate(_args: argparse.Namespace) -> int:
    from fhir_server.auth.keys import rotate_keys

    settings = get_settings()
    kid = _db(settings, lambda conn: rotate_keys(conn, settings.key_rotation_days, settings.token_lifetime_seconds))
    print(f"new signing key {kid}; the previous one keeps verifying the tokens it signed")
    return 0


def _keys_list(_args: argparse.Namespace) -> int:
    from fhir_server.auth.tables import auth_signing_key as t

    rows = _db(get_settings(), lambda conn: conn.execute(
        select(t.c.kid, t.c.alg, t.c.created_at, t.c.retire_at, t.c.expires_at).order_by(t.c.created_at)).all())
    now = time.time()
    for kid, alg, created, retire, expires in rows:
        state = "signing" if retire > now else ("verifying" if expires > now else "expired")
        print(f"{kid}\t{alg}\t{state}\tcreated={time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(created))}")
    return 0


def _client_keys(args: argparse.Namespace) -> int:
    """Make a client key pair: <out>.private.pem (keep it) and <out>.jwks.json (register it)."""
    from joserfc.jwk import ECKey, RSAKey

    kid = args.kid or uuid.uuid4().hex[:12]
    if args.alg == "ES384":
        key: Any = ECKey.generate_key("P-384", parameters={"kid": kid, "alg": "ES384", "use": "sig"})
    else:
        key = RSAKey.generate_key(2048, parameters={"kid": kid, "alg": "RS384", "use": "sig"})
    private, public = Path(f"{args.out}.private.pem"), Path(f"{args.out}.jwks.json")
    private.write_bytes(key.as_pem(private=True))
    private.chmod(0o600)
    public.write_text(json.dumps({"keys": [key.as_dict(private=False)]}, indent=2) + "\n")
    print(f"private key: {private} (kid {kid}, {args.alg}); public JWKS to register: {public}")
    return 0


def _assertion(args: argparse.Namespace) -> int:
    """Print a signed client assertion for private_key_jwt (valid 4 minutes, fresh jti)."""
    from joserfc import jwt
    from joserfc.jwk import ECKey, RSAKey

    pem = Path(args.key).read_bytes()
    key: Any = ECKey.import_key(pem) if b"EC PRIVATE" in pem or args.alg == "ES384" else RSAKey.import_key(pem)
    alg = args.alg or ("ES384" if isinstance(key, ECKey) else "RS384")
    now = int(time.time())
    claims = {"iss": args.client, "sub": args.client, "aud": args.token_url, "iat": now, "exp": now + 240,
              "jti": uuid.uuid4().hex}
    header = {"alg": alg, "typ": "JWT", **({"kid": args.kid} if args.kid else {})}
    print(jwt.encode(header, claims, key, algorithms=[alg]))
    return 0


def register_commands(sub: Any) -> None:
    clients = sub.add_parser("clients", help="OAuth clients of the authorisation server")
    csub = clients.add_subparsers(dest="clients_command", required=True)
    add = csub.add_parser("add", help="register a client")
    add.add_argument("name")
    add.add_argument("--id", help="client_id (default: the name, lower-case, dashes)")
    add.add_argument("--auth", default="private_key_jwt",
                     choices=["private_key_jwt", "client_secret_basic", "client_secret_post", "none"])
    add.add_argument("--jwks", help="file holding the client's public JWKS")
    add.add_argument("--jwks-url", help="URL of the client's public JWKS")
    add.add_argument("--scopes", required=True, help="scopes it may be granted, e.g. 'system/*.rs'")
    add.add_argument("--acts-for", help="Organization/<id>, Practitioner/<id> or PractitionerRole/<id>")
    add.add_argument("--redirect-uri", action="append", help="redirect URI (App Launch); repeat for several")
    add.set_defaults(run=_clients_add)
    csub.add_parser("list", help="list clients").set_defaults(run=_clients_list)
    rev = csub.add_parser("revoke", help="revoke a client and its tokens")
    rev.add_argument("client_id")
    rev.set_defaults(run=_clients_revoke)

    users = sub.add_parser("users", help="local users of the authorize page")
    usub = users.add_subparsers(dest="users_command", required=True)
    uadd = usub.add_parser("add", help="create a user (password from FHIR_USER_PASSWORD or a prompt)")
    uadd.add_argument("username")
    uadd.add_argument("--fhir-user", required=True, help="Practitioner/<id> or Patient/<id>")
    uadd.set_defaults(run=_users_add)

    token = sub.add_parser("token", help="print an access token for a registered client (operator use)")
    token.add_argument("--client", default=ADMIN_ID)
    token.add_argument("--scope", help="default: every scope the client may have")
    token.add_argument("--base-url", help="the FHIR base the token is for (default FHIR_BASE_URL or "
                       "http://127.0.0.1:8080/fhir)")
    token.set_defaults(run=_token)

    keys = sub.add_parser("keys", help="token signing keys")
    ksub = keys.add_subparsers(dest="keys_command", required=True)
    ksub.add_parser("rotate", help="start signing with a new key now").set_defaults(run=_keys_rotate)
    ksub.add_parser("list", help="list signing keys").set_defaults(run=_keys_list)

    ck = sub.add_parser("client-keys", help="generate a key pair for a private_key_jwt client")
    ck.add_argument("--out", required=True, help="file prefix")
    ck.add_argument("--alg", default="RS384", choices=["RS384", "ES384"])
    ck.add_argument("--kid")
    ck.set_defaults(run=_client_keys)

    asr = sub.add_parser("assertion", help="print a signed client assertion (private_key_jwt)")
    asr.add_argument("--client", required=True)
    asr.add_argument("--key", required=True, help="the client's private key (PEM)")
    asr.add_argument("--token-url", required=True)
    asr.add_argument("--kid")
    asr.add_argument("--alg", choices=["RS384", "ES384"])
    asr.set_defaults(run=_assertion)
