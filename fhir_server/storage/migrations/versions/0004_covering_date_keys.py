"""Date index keys carry both bounds (`lo, rid, hi` and `hi, rid, lo`): range terms are answered from the index.

Revision ID: 0004
Revises: 0003

https://hl7.org/fhir/R4/search.html#date

A date term compares both ends of the indexed range (`ge` is `hi > low AND (hi > high OR
...lo...)`), but each key held one bound: counting or listing a broad range read the table row
of every match for the other one. The other bound comes after rid, so each key keeps listing
its bound in (value, rid) order, which `_sort` walks. Revision 0002 creates the index tables
from the objects `index_schema` declares today, so a database created after this change
already has the new keys: an index is rebuilt only when its columns differ.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from fhir_server.storage import index_schema as s

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_KEYS = ("ix_idx_date_k0", "ix_idx_date_k1")


def upgrade() -> None:
    bind = op.get_bind()
    have = {ix["name"]: ix["column_names"] for ix in sa.inspect(bind).get_indexes("idx_date")}
    for index in s.idx_date.indexes:
        if index.name not in _KEYS:
            continue
        wanted = [c.name for c in index.columns]
        if have.get(index.name) == wanted:
            continue
        if index.name in have:
            op.drop_index(index.name, table_name="idx_date")
        index.create(bind)


def downgrade() -> None:
    for name, bound in zip(_KEYS, ("lo", "hi"), strict=True):
        op.drop_index(name, table_name="idx_date")
        op.create_index(name, "idx_date", ["res_type", "param", bound, "rid"])
