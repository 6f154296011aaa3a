"""UCUM quantities in base units too (`idx_quantity.c_value`, `c_unit`), for unit-converting search.

Revision ID: 0005
Revises: 0004

https://hl7.org/fhir/R4/search.html#quantity

Adds the two nullable columns (no table rewrite on either database) and their key, then fills
them for the rows already indexed: one UPDATE per distinct UCUM code, computed from the row's
own value (`c_value = a * value + b`), so no resource body is read again. Revision 0002 creates
the index tables from the objects `index_schema` declares today, so on a database created after
this change the columns exist already and every step checks first.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from fhir_server.storage import index_schema as s

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_UCUM = "http://unitsofmeasure.org"


def upgrade() -> None:
    bind = op.get_bind()
    insp = sa.inspect(bind)
    have = {c["name"] for c in insp.get_columns("idx_quantity")}
    if "c_value" not in have:
        op.add_column("idx_quantity", sa.Column("c_value", sa.Float, nullable=True))
    if "c_unit" not in have:
        op.add_column("idx_quantity", sa.Column("c_unit", sa.String(128), nullable=True))
    indexes = {ix["name"] for ix in insp.get_indexes("idx_quantity")}
    for index in s.idx_quantity.indexes:
        if index.name not in indexes:
            index.create(bind)
    _backfill(bind)


def _backfill(conn: sa.Connection) -> None:
    from fhir_server.search.ucum import canonical

    t = s.idx_quantity
    codes = conn.execute(
        sa.select(t.c.code).where(t.c.system == _UCUM, t.c.code.is_not(None), t.c.c_unit.is_(None)).distinct()
    ).scalars().all()
    for code in codes:
        found = canonical(code)
        if found is None:
            continue
        conn.execute(
            sa.update(t)
            .where(t.c.system == _UCUM, t.c.code == code, t.c.c_unit.is_(None))
            .values(c_value=t.c.value * found.a + found.b, c_unit=found.dimension)
        )


def downgrade() -> None:
    op.drop_index("ix_idx_quantity_k1", table_name="idx_quantity")
    with op.batch_alter_table("idx_quantity") as batch:
        batch.drop_column("c_unit")
        batch.drop_column("c_value")
