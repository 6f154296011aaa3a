"""Authorisation-server tables: clients, users, signing keys, codes, refresh tokens, used jti.

Revision ID: 0007
Revises: 0005 (re-chained after 0006 at merge time)

https://hl7.org/fhir/smart-app-launch/STU2.2/

Created from the objects `fhir_server.auth.tables` declares, so the migration and the code
cannot disagree; each table is created only when absent.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from fhir_server.auth import tables as t

revision = "0007"
down_revision = "0005"
branch_labels = None
depends_on = None

_TABLES = (
    t.auth_client,
    t.auth_user,
    t.auth_signing_key,
    t.auth_used_jti,
    t.auth_code,
    t.auth_refresh_token,
    t.auth_revocation,
    t.auth_launch,
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
