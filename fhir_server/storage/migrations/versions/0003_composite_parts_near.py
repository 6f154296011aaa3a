"""Composites of any shape (`idx_composite.combo`, `idx_composite_part`) and Location `near` (`idx_near`).

Revision ID: 0003
Revises: 0002

https://hl7.org/fhir/R4/search.html#composite and https://hl7.org/fhir/R4/location.html#positional

Revision 0002 creates the index tables from the objects `index_schema` declares today, so a
database created after this change already has them: every step here checks first. On an
older database it adds the nullable `combo` column (no table rewrite on either database) and
creates the two tables with their indexes. It then indexes the existing resources for the
parameters this change made searchable (MolecularSequence's four coordinate composites,
DocumentReference `relationship`, Location `near`), which until now had no rows; their old
rows, if any, are replaced, so running it twice leaves the same rows.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy import Connection, delete, false, insert, select

from fhir_server.storage import index_schema as s
from fhir_server.storage.schema import resource

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

NEW_PARAMS = {
    "MolecularSequence": ("chromosome-variant-coordinate", "chromosome-window-coordinate",
                          "referenceseqid-variant-coordinate", "referenceseqid-window-coordinate"),
    "DocumentReference": ("relationship",),
    "Location": ("near",),
}
_BATCH = 500


def upgrade() -> None:
    bind = op.get_bind()
    insp = sa.inspect(bind)
    if "combo" not in {c["name"] for c in insp.get_columns("idx_composite")}:
        op.add_column("idx_composite", sa.Column("combo", sa.Integer, nullable=True))
    tables = set(insp.get_table_names())
    for table in (s.idx_composite_part, s.idx_near):
        if table.name not in tables:
            table.create(bind)
    _backfill(bind)


def _backfill(conn: Connection) -> None:
    """Index rows of the newly searchable parameters for every current resource of their types."""
    from fhir_server.fhir.json import loads
    from fhir_server.indexing.rows import param_rows
    from fhir_server.search.registry import registry

    reg = registry()
    for res_type, codes in NEW_PARAMS.items():
        impls = [i for c in codes if (i := reg.get(res_type, c)) is not None and i.indexed]
        if not impls:
            continue
        for table in {s.INDEX_TABLES[i.strategy] for i in impls} | {s.idx_composite_part}:
            conn.execute(delete(table).where(table.c.res_type == res_type, table.c.param.in_(codes)))
        last = 0
        while True:
            batch = conn.execute(
                select(resource.c.rid, resource.c.body)
                .where(resource.c.res_type == res_type, resource.c.deleted == false(), resource.c.rid > last)
                .order_by(resource.c.rid).limit(_BATCH)
            ).all()
            for rid, body in batch:
                doc = loads(bytes(body))
                for impl in impls:
                    for kind, rows in param_rows(impl, doc).items():
                        keys = {k for r in rows for k in r}
                        full = [{**dict.fromkeys(keys), **r, "rid": rid, "res_type": res_type} for r in rows]
                        conn.execute(insert(s.INDEX_TABLES[kind]), full)
            if len(batch) < _BATCH:
                break
            last = int(batch[-1][0])


def downgrade() -> None:
    # Nothing to undo that 0002's downgrade does not: it drops every table `index_schema`
    # declares (these two included), and dropping `combo` alone would force SQLite to rebuild
    # idx_composite for a column that rows written before this revision simply leave NULL.
    pass
