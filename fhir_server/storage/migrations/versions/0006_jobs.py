"""One `job` table for every background job, with leases; `reindex_job`'s rows move into it.

Revision ID: 0006
Revises: 0005

https://hl7.org/fhir/R4/async.html

`$reindex` had its own table and no lease. The `job` table (see `storage/job_schema.py`) holds
every job type with its cursor and its lease; each `reindex_job` row becomes a `reindex` job
whose cursor is its `last_rid` and whose lease is free, so the first runner to look resumes it.
The table is declared here as it stands at this revision (frozen), not imported.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_meta = sa.MetaData()
_job = sa.Table(
    "job",
    _meta,
    sa.Column("job_id", sa.String(64), primary_key=True),
    sa.Column("type", sa.String(32), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("params", sa.Text, nullable=False),
    sa.Column("cursor", sa.Text, nullable=True),
    sa.Column("processed", sa.BigInteger, nullable=False),
    sa.Column("total", sa.BigInteger, nullable=False),
    sa.Column("lease_owner", sa.String(128), nullable=True),
    sa.Column("lease_expires", sa.BigInteger, nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("created", sa.BigInteger, nullable=False),
    sa.Column("updated", sa.BigInteger, nullable=False),
    sa.Column("error", sa.Text, nullable=True),
)
sa.Index("ix_job_state_lease", _job.c.state, _job.c.lease_expires)
_reindex_job = sa.Table(
    "reindex_job",
    _meta,
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


def upgrade() -> None:
    bind = op.get_bind()
    tables = set(sa.inspect(bind).get_table_names())
    if "job" not in tables:
        _job.create(bind)
    if "reindex_job" not in tables:
        return
    r = _reindex_job
    old = bind.execute(sa.select(r)).all()
    if old:
        bind.execute(sa.insert(_job), [{
            "job_id": row.job_id, "type": "reindex", "state": row.status, "params": row.params,
            "cursor": str(int(row.last_rid)), "processed": row.processed, "total": row.total,
            "lease_owner": None, "lease_expires": None, "attempts": 0, "created": row.started,
            "updated": row.updated, "error": row.error,
        } for row in old])
    _reindex_job.drop(bind)


def downgrade() -> None:
    bind = op.get_bind()
    _reindex_job.create(bind)
    j = _job
    rows = bind.execute(sa.select(j).where(j.c.type == "reindex")).all()
    if rows:
        bind.execute(sa.insert(_reindex_job), [{
            "job_id": row.job_id, "params": row.params, "status": row.state,
            "last_rid": int(row.cursor or 0), "processed": row.processed, "total": row.total,
            "started": row.created, "updated": row.updated, "error": row.error,
        } for row in rows])
    _job.drop(bind)
