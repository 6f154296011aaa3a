"""Resource and resource_history tables.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "resource",
        sa.Column("rid", BigId, primary_key=True, autoincrement=True),
        sa.Column("res_type", sa.String(64), nullable=False),
        sa.Column("res_id", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("last_updated", sa.BigInteger, nullable=False),
        sa.Column("deleted", sa.Boolean, nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=True),
        sa.UniqueConstraint("res_type", "res_id", name="uq_resource_type_id"),
    )
    op.create_index("ix_resource_type_updated", "resource", ["res_type", "last_updated"])
    op.create_table(
        "resource_history",
        sa.Column("seq", BigId, primary_key=True, autoincrement=True),
        sa.Column("rid", sa.BigInteger, nullable=False),
        sa.Column("res_type", sa.String(64), nullable=False),
        sa.Column("res_id", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("last_updated", sa.BigInteger, nullable=False),
        sa.Column("deleted", sa.Boolean, nullable=False),
        sa.Column("method", sa.String(8), nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=True),
        sa.UniqueConstraint("res_type", "res_id", "version", name="uq_history_type_id_version"),
    )
    op.create_index("ix_history_type_seq", "resource_history", ["res_type", "seq"])
    op.create_index("ix_history_updated", "resource_history", ["last_updated"])


def downgrade() -> None:
    op.drop_table("resource_history")
    op.drop_table("resource")
