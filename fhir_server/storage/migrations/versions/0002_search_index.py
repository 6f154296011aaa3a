"""Search index tables, full-text index and custom SearchParameter ($reindex) bookkeeping.

Revision ID: 0002
Revises: 0001

The tables are the ones declared in `fhir_server.storage.index_schema` (created from those
objects, so the migration and the code cannot disagree); creating `idx_fulltext` also runs its
dialect DDL: the FTS5 mirror and triggers on SQLite, GIN indexes on PostgreSQL. It also adds
`ix_resource_type_rid` on the resource table (rows of a type in rid order, for paging).
"""

from __future__ import annotations

from alembic import op

from fhir_server.storage import index_schema as s

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_TABLES = [*s.INDEX_TABLES.values(), s.idx_fulltext, s.search_param_status, s.reindex_job]


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
