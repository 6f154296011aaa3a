"""Search index tables, full-text index and custom SearchParameter ($reindex) bookkeeping.

Revision ID: 0002
Revises: 0001

The tables are the ones declared in `fhir_server.storage.index_schema` (created from those
objects, so the migration and the code cannot disagree), except `reindex_job`, frozen here
since revision 0006 replaced it by the `job` table); creating `idx_fulltext` also runs its
dialect DDL: the FTS5 mirror and triggers on SQLite, GIN indexes on PostgreSQL. It also adds
`ix_resource_type_rid` on the resource table (rows of a type in rid order, for paging).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from fhir_server.storage import index_schema as s

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# The $reindex job table as this revision created it (frozen: revision 0006 moves its rows to
# `job` and drops it, and the code no longer declares it).
_reindex_job = sa.Table(
    "reindex_job",
    sa.MetaData(),
    sa.Column("job_id", sa.String(64), primary_key=True),
    sa.Column("params", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("last_rid", sa.BigInteger, nullable=False),
    sa.Column("processed", sa.BigInteger, nullable=False),
    sa.Column("total", sa.BigInteger, nullable=False),
    sa.Column("started", sa.BigInteger, nullable=False),
    sa.Column("updated", sa.BigInteger, nullable=False),
    sa.Column("error", sa.Text, nullable=True),
)
_TABLES = [*s.INDEX_TABLES.values(), s.idx_fulltext, s.search_param_status, _reindex_job]


def upgrade() -> None:
    bind = op.get_bind()
    for table in _TABLES:
        table.create(bind)
    s.ix_resource_type_rid.create(bind)


def downgrade() -> None:
    bind = op.get_bind()
    s.ix_resource_type_rid.drop(bind)
    for table in reversed(_TABLES):
        table.drop(bind)
