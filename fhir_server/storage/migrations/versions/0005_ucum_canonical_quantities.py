"""UCUM quantities in base units too (`idx_quantity.c_value`, `c_unit`), for unit-converting search.

Revision ID: 0005
Revises: 0004

https://hl7.org/fhir/R4/search.html#quantity

Adds the two nullable columns (no table rewrite on either database) and their key, then fills
them for the rows already indexed: one UPDATE per distinct UCUM code, computed from the row's
own value (`c_value = a * value + b`), so no resource body is read again. Revision 0002 creates
the index tables from the objects `index_schema` declares today, so on a database created after
this change the columns exist already and every step checks first.

The conversion is frozen here: `_canonical` is `search/ucum.py`'s `canonical` as it stood at
this revision (the UCUM table and pint's arithmetic still come from the installed `ucumvert`).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

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
    if "ix_idx_quantity_k1" not in {ix["name"] for ix in insp.get_indexes("idx_quantity")}:
        op.create_index("ix_idx_quantity_k1", "idx_quantity", ["res_type", "param", "c_unit", "c_value", "rid"])
    _backfill(bind)


# -- frozen conversion (revision 0005) --------------------------------------------------------
def _not_comparable() -> frozenset[str]:
    """Bracketed UCUM atoms with no canonical form: arbitrary units, special ones but Cel/[degF]."""
    import xml.etree.ElementTree as ET
    from importlib import resources

    root = ET.fromstring(resources.files("ucumvert").joinpath("vendor/ucum-essence.xml").read_bytes())
    return frozenset(
        code
        for unit in root.iter()
        if unit.tag.rpartition("}")[2] == "unit"
        and (unit.get("isArbitrary") == "yes" or unit.get("isSpecial") == "yes")
        and "[" in (code := unit.get("Code", "")) and code != "[degF]"
    )


def _canonical(code: str, reg: Any, skip: frozenset[str]) -> tuple[float, float, str] | None:
    """(a, b, dimension) with `canonical = a * value + b`, or None when the code has none."""
    if not code or len(code) > 128:
        return None
    try:
        if "[" in code and any(atom in code for atom in skip):
            return None
        unit = reg.from_ucum(code)
        unit = getattr(unit, "units", unit)
        zero = reg.Quantity(0.0, unit).to_base_units()
        far = reg.Quantity(1000.0, unit).to_base_units()
        b = float(zero.magnitude)
        a = (float(far.magnitude) - b) / 1000.0
        dimension = str(far.units)
    except Exception:  # noqa: BLE001 - no canonical form
        return None
    if not 1e-30 < a < 1e30 or len(dimension) > 128:
        return None
    return a, b, dimension


def _backfill(conn: sa.Connection) -> None:
    t = sa.table("idx_quantity", *(sa.column(c) for c in ("value", "system", "code", "c_value", "c_unit")))
    codes = conn.execute(
        sa.select(t.c.code).where(t.c.system == _UCUM, t.c.code.is_not(None), t.c.c_unit.is_(None)).distinct()
    ).scalars().all()
    if not codes:
        return
    from ucumvert import PintUcumRegistry

    reg, skip = PintUcumRegistry(), _not_comparable()
    for code in codes:
        found = _canonical(code, reg, skip)
        if found is None:
            continue
        a, b, dimension = found
        conn.execute(
            sa.update(t)
            .where(t.c.system == _UCUM, t.c.code == code, t.c.c_unit.is_(None))
            .values(c_value=t.c.value * a + b, c_unit=dimension)
        )


def downgrade() -> None:
    op.drop_index("ix_idx_quantity_k1", table_name="idx_quantity")
    with op.batch_alter_table("idx_quantity") as batch:
        batch.drop_column("c_unit")
        batch.drop_column("c_value")
