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

The backfill is frozen here: the six parameters' definitions and the row-making code as they
stood at this revision (copied from `search/compile/{composite,token,reference,near}.py` and
`indexing/normalize.py`), writing the columns these tables had then. Whatever the indexing
code becomes, a database migrated later gets the rows this revision meant.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson
import sqlalchemy as sa
from alembic import op
from sqlalchemy import Connection

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_BATCH = 500
_MAX_INDEXED = 512
# (code, element path, components as (type, path); a path starting with `%resource.` reads the
# resource, the others the element). DocumentReference `relationship` with R4's swapped
# component expressions corrected, as the registry did at this revision.
_COMPOSITES: dict[str, list[tuple[str, str, tuple[tuple[str, str], ...]]]] = {
    "MolecularSequence": [
        ("chromosome-variant-coordinate", "variant",
         (("token", "%resource.referenceSeq.chromosome"), ("number", "start"), ("number", "end"))),
        ("chromosome-window-coordinate", "referenceSeq",
         (("token", "chromosome"), ("number", "windowStart"), ("number", "windowEnd"))),
        ("referenceseqid-variant-coordinate", "variant",
         (("token", "%resource.referenceSeq.referenceSeqId"), ("number", "start"), ("number", "end"))),
        ("referenceseqid-window-coordinate", "referenceSeq",
         (("token", "referenceSeqId"), ("number", "windowStart"), ("number", "windowEnd"))),
    ],
    "DocumentReference": [("relationship", "relatesTo", (("reference", "target"), ("token", "code")))],
}
_NEAR = {"Location": ("near", "position")}
NEW_PARAMS = {
    **{t: tuple(c for c, _e, _p in params) for t, params in _COMPOSITES.items()},
    **{t: (code,) for t, (code, _path) in _NEAR.items()},
}

_resource = sa.table("resource", sa.column("rid"), sa.column("res_type"), sa.column("deleted"), sa.column("body"))
_HEAD = ("rid", "res_type", "param")
_composite = sa.table("idx_composite", *(sa.column(c) for c in (
    *_HEAD, "h1_full", "h1_code", "h2_full", "h2_code", "num", "q_system", "q_code", "lo", "hi", "combo")))
_part = sa.table("idx_composite_part", *(sa.column(c) for c in (
    *_HEAD, "combo", "pos", "h_full", "h_code", "num", "q_system", "q_code", "lo", "hi")))
_near = sa.table("idx_near", *(sa.column(c) for c in (*_HEAD, "lat", "lon", "x", "y", "z")))
_TABLES = {"composite": _composite, "composite_part": _part, "near": _near}


def upgrade() -> None:
    bind = op.get_bind()
    insp = sa.inspect(bind)
    if "combo" not in {c["name"] for c in insp.get_columns("idx_composite")}:
        op.add_column("idx_composite", sa.Column("combo", sa.Integer, nullable=True))
    tables = set(insp.get_table_names())
    for table in _new_tables():
        if table.name not in tables:
            table.create(bind)
    _backfill(bind)


def _new_tables() -> list[sa.Table]:
    """The two tables as this revision created them."""
    meta = sa.MetaData()
    rid = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    key = sa.String(_MAX_INDEXED).with_variant(sa.String(_MAX_INDEXED, collation="C"), "postgresql")

    def head() -> list[sa.Column[Any]]:
        return [sa.Column("rid", rid, nullable=False), sa.Column("res_type", sa.String(64), nullable=False),
                sa.Column("param", sa.String(128), nullable=False)]

    part = sa.Table(
        "idx_composite_part", meta, *head(),
        sa.Column("combo", sa.Integer, nullable=False), sa.Column("pos", sa.Integer, nullable=False),
        sa.Column("h_full", sa.BigInteger), sa.Column("h_code", sa.BigInteger), sa.Column("num", sa.Float),
        sa.Column("q_system", key), sa.Column("q_code", key), sa.Column("lo", sa.BigInteger),
        sa.Column("hi", sa.BigInteger),
    )
    sa.Index("ix_idx_composite_part_rid", part.c.rid, part.c.param, part.c.combo, part.c.pos)
    near = sa.Table("idx_near", meta, *head(), *(sa.Column(c, sa.Float, nullable=False)
                                                  for c in ("lat", "lon", "x", "y", "z")))
    pos = [near.c[c] for c in ("lat", "lon", "x", "y", "z")]
    sa.Index("ix_idx_near_rid", near.c.rid, near.c.param, *pos)
    sa.Index("ix_idx_near_k0", near.c.res_type, near.c.param, *pos, near.c.rid)
    return [part, near]


# -- frozen row-making code (revision 0003) -------------------------------------------------
def _hash64(value: str) -> int:
    return int.from_bytes(hashlib.blake2b(value.encode(), digest_size=8).digest(), "big", signed=True)


def _as_float(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float, Decimal)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(Decimal(value))
        except InvalidOperation:
            return None
    return None


def _walk(node: Any, path: str) -> list[Any]:
    items = node if isinstance(node, list) else [node]
    for name in path.split("."):
        out: list[Any] = []
        for item in items:
            value = item.get(name) if isinstance(item, dict) else None
            out.extend(value if isinstance(value, list) else [] if value is None else [value])
        items = out
    return items


def _token(values: list[Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def add(system: Any, code: Any) -> None:
        if code is not None:
            out.append({"h_full": _hash64(f"{system or ''}|{code}"), "h_code": _hash64(code)})

    for v in values:
        if isinstance(v, bool):
            add(None, "true" if v else "false")
        elif isinstance(v, str):
            add(None, v)
        elif isinstance(v, (int, Decimal)):
            add(None, str(v))
        elif isinstance(v, dict) and ("coding" in v or ("text" in v and "value" not in v and "code" not in v)):
            for c in v.get("coding", []):
                add(c.get("system"), c.get("code"))
        elif isinstance(v, dict) and "code" in v and "value" not in v:
            add(v.get("system"), v.get("code"))
    return out


def _reference(values: list[Any], types: frozenset[str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for v in values:
        ref = v if isinstance(v, str) else v.get("reference") if isinstance(v, dict) else None
        if not isinstance(ref, str) or not ref or ref.startswith("#"):
            continue
        type_ = id_ = url = None
        if ref.startswith(("urn:", "http://", "https://")) or "://" in ref:
            url = ref.partition("|")[0]
            parts = url.split("/_history/")[0].rstrip("/").split("/")
            if len(parts) >= 2 and parts[-2] in types:
                type_, id_ = parts[-2], parts[-1][:64]
            url = url[:_MAX_INDEXED]
        else:
            parts = ref.split("/_history/")[0].split("/")
            if len(parts) == 2 and parts[0] in types:
                type_, id_ = parts[0], parts[1][:64]
            else:
                url = ref[:_MAX_INDEXED]
        if type_ is not None and id_ is not None:
            out.append({"h_full": _hash64(f"{type_}/{id_}"), "h_code": _hash64(id_)})
        if url is not None:
            out.append({"h_full": _hash64(url), "h_code": None})
    return out


def _values(kind: str, values: list[Any], types: frozenset[str]) -> list[dict[str, Any]]:
    if kind == "token":
        return _token(values)
    if kind == "reference":
        return _reference(values, types)
    return [{"num": f} for v in values if (f := _as_float(v)) is not None]  # number


def _composite_rows(doc: dict[str, Any], element_path: str, comps: tuple[tuple[str, str], ...],
                    types: frozenset[str]) -> list[tuple[str, dict[str, Any]]]:
    where = ("h1", "second", *("part",) * (len(comps) - 2))  # every component here: first is hashable
    rows: list[tuple[str, dict[str, Any]]] = []
    combo = 0
    for element in _walk(doc, element_path):
        if not isinstance(element, dict):
            continue
        values = [_values(kind, _walk(doc, path[len("%resource."):]) if path.startswith("%resource.")
                          else _walk(element, path), types) for kind, path in comps]
        for combination in itertools.product(*values):
            row: dict[str, Any] = {}
            parts: list[tuple[str, dict[str, Any]]] = []
            for pos, (slot, vals) in enumerate(zip(where, combination, strict=True)):
                if slot == "part":
                    parts.append(("composite_part", {"combo": combo, "pos": pos, **vals}))
                else:
                    names = {"h_full": "h1_full", "h_code": "h1_code"} if slot == "h1" else {
                        "h_full": "h2_full", "h_code": "h2_code"}
                    row.update({names.get(k, k): v for k, v in vals.items()})
            if parts:
                row["combo"] = combo
                combo += 1
            rows.append(("composite", row))
            rows.extend(parts)
    return rows


def _near_rows(doc: dict[str, Any], path: str) -> list[tuple[str, dict[str, Any]]]:
    rows: list[tuple[str, dict[str, Any]]] = []
    for value in _walk(doc, path):
        if not isinstance(value, dict):
            continue
        lat, lon = _as_float(value.get("latitude")), _as_float(value.get("longitude"))
        if lat is None or lon is None or not (-90 <= lat <= 90 and -180 <= lon <= 180):
            continue
        phi, lam = math.radians(lat), math.radians(lon)
        rows.append(("near", {"lat": lat, "lon": lon, "x": math.cos(phi) * math.cos(lam),
                              "y": math.cos(phi) * math.sin(lam), "z": math.sin(phi)}))
    return rows


def index_rows(res_type: str, doc: dict[str, Any], types: frozenset[str]) -> list[tuple[str, dict[str, Any]]]:
    """Rows of the revision's six parameters for one resource, by table kind, `param` set."""
    out: list[tuple[str, dict[str, Any]]] = []
    found: list[tuple[str, list[tuple[str, dict[str, Any]]]]] = [
        (code, _composite_rows(doc, path, comps, types)) for code, path, comps in _COMPOSITES.get(res_type, [])]
    if res_type in _NEAR:
        code, path = _NEAR[res_type]
        found.append((code, _near_rows(doc, path)))
    for code, rows in found:
        seen: set[tuple[str, tuple[Any, ...]]] = set()
        for kind, row in rows:
            key = (kind, tuple(row.values()))
            if key not in seen:
                seen.add(key)
                out.append((kind, {**row, "param": code}))
    return out


def _backfill(conn: Connection) -> None:
    """Index rows of the newly searchable parameters for every current resource of their types."""
    from fhir_server.definitions import resource_types  # the R4 list: fixed by the specification

    types = resource_types()
    for res_type, codes in NEW_PARAMS.items():
        for table in _TABLES.values():
            conn.execute(sa.delete(table).where(table.c.res_type == res_type, table.c.param.in_(codes)))
        last = 0
        while True:
            batch = conn.execute(
                sa.select(_resource.c.rid, _resource.c.body)
                .where(_resource.c.res_type == res_type, _resource.c.deleted == sa.false(), _resource.c.rid > last)
                .order_by(_resource.c.rid).limit(_BATCH)
            ).all()
            for rid, body in batch:
                for kind, row in index_rows(res_type, orjson.loads(bytes(body)), types):
                    full = {c.name: None for c in _TABLES[kind].c} | row | {"rid": rid, "res_type": res_type}
                    conn.execute(sa.insert(_TABLES[kind]).values(**full))
            if len(batch) < _BATCH:
                break
            last = int(batch[-1][0])


def downgrade() -> None:
    # Nothing to undo that 0002's downgrade does not: it drops every table `index_schema`
    # declares (these two included), and dropping `combo` alone would force SQLite to rebuild
    # idx_composite for a column that rows written before this revision simply leave NULL.
    pass
