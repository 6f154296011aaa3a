"""Authorisation-server tables: clients, users, signing keys, codes, refresh tokens, used jti.

Revision ID: 0007
Revises: 0006

https://hl7.org/fhir/smart-app-launch/STU2.2/

The tables are written out here as they stood at this revision (frozen: a later change to
`fhir_server.auth.tables` needs a migration of its own; tests/storage/test_auth_schema.py
checks the two agree at head); each table is created only when absent.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy import BigInteger, Boolean, Column, Index, MetaData, String, Table, Text

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

metadata = MetaData()

auth_client = Table(
    "auth_client",
    metadata,
    Column("client_id", String(128), primary_key=True),
    Column("name", String(256), nullable=False),
    Column("auth_method", String(32), nullable=False),  # private_key_jwt | client_secret_basic | none
    Column("secret_hash", String(256), nullable=True),
    Column("jwks", Text, nullable=True),  # inline JWKS (JSON)
    Column("jwks_uri", String(1024), nullable=True),
    Column("redirect_uris", Text, nullable=False, default=""),  # space-separated
    Column("scopes", Text, nullable=False),  # the scopes it may be granted
    Column("acts_for", String(128), nullable=True),  # Organization/x, Practitioner/y, PractitionerRole/z
    Column("is_admin", Boolean, nullable=False, default=False),
    Column("created_at", BigInteger, nullable=False),
    Column("revoked_at", BigInteger, nullable=True),
)

auth_user = Table(
    "auth_user",
    metadata,
    Column("username", String(128), primary_key=True),
    Column("password_hash", String(256), nullable=False),
    Column("fhir_user", String(128), nullable=False),  # Practitioner/x or Patient/y
    Column("created_at", BigInteger, nullable=False),
    Column("disabled", Boolean, nullable=False, default=False),
)

auth_signing_key = Table(
    "auth_signing_key",
    metadata,
    Column("kid", String(64), primary_key=True),
    Column("alg", String(16), nullable=False),
    Column("private_pem", Text, nullable=False),
    Column("public_jwk", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("retire_at", BigInteger, nullable=False),  # stops signing then; verifies until expires_at
    Column("expires_at", BigInteger, nullable=False),
)

auth_used_jti = Table(
    "auth_used_jti",
    metadata,
    Column("client_id", String(128), primary_key=True),
    Column("jti", String(256), primary_key=True),
    Column("expires_at", BigInteger, nullable=False),
)
Index("ix_auth_used_jti_expires", auth_used_jti.c.expires_at)

auth_code = Table(
    "auth_code",
    metadata,
    Column("code_hash", String(64), primary_key=True),
    Column("client_id", String(128), nullable=False),
    Column("redirect_uri", String(1024), nullable=False),
    Column("scope", Text, nullable=False),
    Column("code_challenge", String(128), nullable=False),
    Column("subject", String(256), nullable=False),
    Column("fhir_user", String(128), nullable=True),
    Column("patient", String(64), nullable=True),
    Column("nonce", String(256), nullable=True),
    Column("family", String(64), nullable=False),  # refresh-token family its exchange starts
    Column("expires_at", BigInteger, nullable=False),
    Column("used", Boolean, nullable=False, default=False),
)

auth_refresh_token = Table(
    "auth_refresh_token",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("family", String(64), nullable=False),
    Column("client_id", String(128), nullable=False),
    Column("subject", String(256), nullable=False),
    Column("fhir_user", String(128), nullable=True),
    Column("patient", String(64), nullable=True),
    Column("scope", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
    Column("used", Boolean, nullable=False, default=False),
    Column("revoked", Boolean, nullable=False, default=False),
)
Index("ix_auth_refresh_family", auth_refresh_token.c.family)

auth_revocation = Table(
    "auth_revocation",
    metadata,
    Column("kind", String(16), primary_key=True),  # jti | family
    Column("value", String(256), primary_key=True),
    Column("expires_at", BigInteger, nullable=False),  # forgotten once every token it names has expired
)

auth_launch = Table(
    "auth_launch",
    metadata,
    Column("launch_id", String(64), primary_key=True),
    Column("patient", String(64), nullable=True),
    Column("encounter", String(64), nullable=True),
    Column("created_by", String(128), nullable=False),
    Column("expires_at", BigInteger, nullable=False),
)

_TABLES = (
    auth_client,
    auth_user,
    auth_signing_key,
    auth_used_jti,
    auth_code,
    auth_refresh_token,
    auth_revocation,
    auth_launch,
)


def upgrade() -> None:
    bind = op.get_bind()
    have = set(sa.inspect(bind).get_table_names())
    for table in _TABLES:
        if table.name not in have:
            table.create(bind)


def downgrade() -> None:
    bind = op.get_bind()
    for table in reversed(_TABLES):
        table.drop(bind, checkfirst=True)
