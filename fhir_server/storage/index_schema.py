"""Search index tables: one table per search-value type, written in the resource's transaction.

https://hl7.org/fhir/R4/search.html

Every row carries the resource's surrogate `rid`, its type and the search parameter code, then
the normalised values of that parameter type. Queries always start from `(res_type, param,
value...)`, so each table has that index; `(rid, param)` serves deletion on rewrite, `:missing`
and sort keys. Indexed strings are cut to `MAX_INDEXED` characters so that PostgreSQL's btree
row limit can never reject a write (a longer value still matches on its first 512 characters).

Composites keep a combination's first two components in `idx_composite` and any others in
`idx_composite_part`; Location `near` keeps positions in `idx_near` (see `search/compile/`).
Full text (`_text`, `_content`) lives in `idx_fulltext`: on PostgreSQL two `tsvector` columns
with GIN indexes; on SQLite plain text columns mirrored into the FTS5 table `idx_fulltext_fts`
by triggers (created by `fulltext_ddl`, from both `metadata.create_all` and the migration).
"""

from __future__ import annotations

from sqlalchemy import (
    DDL,
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    String,
    Table,
    Text,
    event,
)
from sqlalchemy.dialects.postgresql import TSVECTOR

from fhir_server.storage.schema import metadata, resource

__all__ = [
    "INDEX_TABLES",
    "MAX_INDEXED",
    "fulltext_ddl",
    "idx_composite",
    "idx_composite_part",
    "idx_date",
    "idx_fulltext",
    "idx_near",
    "idx_number",
    "idx_quantity",
    "idx_reference",
    "idx_string",
    "idx_token",
    "idx_uri",
    "search_param_status",
]

MAX_INDEXED = 512

# Byte-wise ordering makes `value >= 'abc' AND value < 'abc\uffff'` a prefix scan on a btree
# whatever the database's default collation.
Key = String(MAX_INDEXED).with_variant(String(MAX_INDEXED, collation="C"), "postgresql")
Rid = BigInteger().with_variant(Integer(), "sqlite")
TsVector = Text().with_variant(TSVECTOR(), "postgresql")


def _head() -> list[Column]:  # type: ignore[type-arg]
    return [
        Column("rid", Rid, nullable=False),
        Column("res_type", String(64), nullable=False),
        Column("param", String(128), nullable=False),
    ]


def _table(
    name: str, *columns: Column, keys: list[tuple[str, ...]], probe: tuple[str, ...] = ()  # type: ignore[type-arg]
) -> Table:
    table = Table(name, metadata, *_head(), *columns)
    # (rid, param, values...): deletes by rid, and per-row probes (`EXISTS ... WHERE rid = r.rid`)
    # answered from the index alone.
    Index(f"ix_{name}_rid", table.c.rid, table.c.param, *(table.c[c] for c in probe))
    for i, key in enumerate(keys):
        # rid last: the index covers the subquery `SELECT rid ... WHERE res_type, param, value`,
        # so both databases answer it from the index alone.
        Index(f"ix_{name}_k{i}", *(table.c[k] for k in key), *(() if "rid" in key else (table.c.rid,)))
    return table


idx_token = _table(
    "idx_token",
    Column("system", Key, nullable=True),
    Column("code", Key, nullable=True),
    Column("h_full", BigInteger, nullable=True),  # hash of "system|code": `system|code`, `|code`
    Column("h_code", BigInteger, nullable=True),  # hash of "code": a code in any system
    Column("text", Key, nullable=True),  # folded display / text, for :text
    keys=[("res_type", "param", "h_code"), ("res_type", "param", "h_full"), ("res_type", "param", "system")],
)

idx_string = _table(
    "idx_string",
    Column("value", Key, nullable=False),  # lower case, accents folded
    Column("exact", Key, nullable=False),
    probe=("value",),
    keys=[("res_type", "param", "value")],
)

idx_date = _table(
    "idx_date",
    Column("lo", BigInteger, nullable=False),  # microseconds, inclusive
    Column("hi", BigInteger, nullable=False),  # microseconds, exclusive
    probe=("lo", "hi"),
    # Both bounds in both keys: a range term is counted and listed from the index alone (a
    # broad date range on 64k patients: counted in 0.6 ms instead of 3.5 ms). The other bound
    # comes after rid, so each key still lists one bound's values in (value, rid) order, the
    # order `_sort` and its keyset cursor walk.
    keys=[("res_type", "param", "lo", "rid", "hi"), ("res_type", "param", "hi", "rid", "lo")],
)

idx_number = _table(
    "idx_number",
    Column("value", Float, nullable=False),
    probe=("value",),
    keys=[("res_type", "param", "value")],
)

idx_quantity = _table(
    "idx_quantity",
    Column("value", Float, nullable=False),
    Column("system", Key, nullable=True),
    Column("code", Key, nullable=True),  # Quantity.code, else Quantity.unit
    # UCUM quantities also in base units (`search/ucum.py`): the value and its dimension
    Column("c_value", Float, nullable=True),
    Column("c_unit", String(128), nullable=True),
    probe=("value",),
    keys=[("res_type", "param", "value"), ("res_type", "param", "c_unit", "c_value")],
)

idx_reference = _table(
    "idx_reference",
    Column("target_type", String(64), nullable=True),
    Column("target_id", String(64), nullable=True),
    Column("url", Key, nullable=True),  # absolute reference or canonical, without |version
    Column("version", String(64), nullable=True),
    probe=("target_type", "target_id"),
    keys=[
        ("res_type", "param", "target_id", "target_type"),
        ("target_id", "target_type", "res_type", "param"),
        ("res_type", "param", "url"),
    ],
)

idx_uri = _table(
    "idx_uri",
    Column("value", Key, nullable=False),
    probe=("value",),
    keys=[("res_type", "param", "value")],
)

idx_composite = _table(
    "idx_composite",
    Column("h1_full", BigInteger, nullable=True),  # first component, when token/reference/string/uri
    Column("h1_code", BigInteger, nullable=True),
    Column("h2_full", BigInteger, nullable=True),  # second component, token/reference/string/uri (hashed)
    Column("h2_code", BigInteger, nullable=True),
    Column("num", Float, nullable=True),  # second component, number or quantity value
    Column("q_system", Key, nullable=True),
    Column("q_code", Key, nullable=True),
    Column("lo", BigInteger, nullable=True),  # second component, date
    Column("hi", BigInteger, nullable=True),
    # Set only when some component lives in idx_composite_part (a third one, or a first one
    # that is not hashable): the combination those part rows belong to.
    Column("combo", Integer, nullable=True),
    # the value columns of the second component after the first's hash: covering for `$gtN`
    keys=[("res_type", "param", "h1_code", "num"), ("res_type", "param", "h1_full", "num")],
)

# The components of a combination that do not fit idx_composite's two slots, one row each,
# keyed by (rid, param, combo, pos): only ever probed from an idx_composite row.
idx_composite_part = _table(
    "idx_composite_part",
    Column("combo", Integer, nullable=False),
    Column("pos", Integer, nullable=False),  # the component's index in the definition
    Column("h_full", BigInteger, nullable=True),  # token, reference, string, uri (hashed)
    Column("h_code", BigInteger, nullable=True),
    Column("num", Float, nullable=True),  # number, quantity
    Column("q_system", Key, nullable=True),
    Column("q_code", Key, nullable=True),
    Column("lo", BigInteger, nullable=True),  # date
    Column("hi", BigInteger, nullable=True),
    probe=("combo", "pos"),
    keys=[],
)

# Location.position (`near`): degrees for the bounding box, and the point on the unit sphere
# (x, y, z) for the exact distance test, which then needs no trigonometry in SQL.
idx_near = _table(
    "idx_near",
    Column("lat", Float, nullable=False),
    Column("lon", Float, nullable=False),
    Column("x", Float, nullable=False),
    Column("y", Float, nullable=False),
    Column("z", Float, nullable=False),
    probe=("lat", "lon", "x", "y", "z"),
    keys=[("res_type", "param", "lat", "lon", "x", "y", "z")],
)

idx_fulltext = Table(
    "idx_fulltext",
    metadata,
    Column("rid", Rid, primary_key=True, autoincrement=False),
    Column("res_type", String(64), nullable=False),
    Column("narrative", TsVector, nullable=True),
    Column("content", TsVector, nullable=True),
)

# Custom SearchParameters and their indexing state (`job_id`: the $reindex job, table `job`).
search_param_status = Table(
    "search_param_status",
    metadata,
    Column("url", String(512), primary_key=True),
    Column("res_type", String(64), primary_key=True),
    Column("code", String(128), nullable=False),
    Column("status", String(16), nullable=False),  # pending | indexing | active | failed
    Column("job_id", String(64), nullable=True),
)

# Rows of one type in rid order: a search with no selective term scans this and stops at the
# page size, instead of sorting every row of the type (created by migration 0002 as well).
ix_resource_type_rid = Index("ix_resource_type_rid", resource.c.res_type, resource.c.rid)

INDEX_TABLES: dict[str, Table] = {
    "token": idx_token,
    "string": idx_string,
    "date": idx_date,
    "number": idx_number,
    "quantity": idx_quantity,
    "reference": idx_reference,
    "uri": idx_uri,
    "composite": idx_composite,
    "composite_part": idx_composite_part,
    "near": idx_near,
}

_SQLITE_FTS = [
    "CREATE VIRTUAL TABLE IF NOT EXISTS idx_fulltext_fts USING fts5("
    "narrative, content, content='idx_fulltext', content_rowid='rid', "
    "tokenize='unicode61 remove_diacritics 2')",
    "CREATE TRIGGER IF NOT EXISTS idx_fulltext_ai AFTER INSERT ON idx_fulltext BEGIN "
    "INSERT INTO idx_fulltext_fts(rowid, narrative, content) VALUES (new.rid, new.narrative, new.content); END",
    "CREATE TRIGGER IF NOT EXISTS idx_fulltext_ad AFTER DELETE ON idx_fulltext BEGIN "
    "INSERT INTO idx_fulltext_fts(idx_fulltext_fts, rowid, narrative, content) "
    "VALUES ('delete', old.rid, old.narrative, old.content); END",
]
_PG_FTS = [
    "CREATE INDEX IF NOT EXISTS ix_idx_fulltext_narrative ON idx_fulltext USING gin (narrative)",
    "CREATE INDEX IF NOT EXISTS ix_idx_fulltext_content ON idx_fulltext USING gin (content)",
]


def fulltext_ddl(dialect: str) -> list[str]:
    """Statements that complete `idx_fulltext` on `dialect` (FTS5 mirror or GIN indexes)."""
    if dialect == "sqlite":
        return list(_SQLITE_FTS)
    if dialect == "postgresql":
        return list(_PG_FTS)
    return []


for _sql in _SQLITE_FTS:
    event.listen(idx_fulltext, "after_create", DDL(_sql).execute_if(dialect="sqlite"))  # type: ignore[no-untyped-call]
for _sql in _PG_FTS:
    event.listen(idx_fulltext, "after_create", DDL(_sql).execute_if(dialect="postgresql"))  # type: ignore[no-untyped-call]
event.listen(
    idx_fulltext,
    "before_drop",
    DDL("DROP TABLE IF EXISTS idx_fulltext_fts").execute_if(dialect="sqlite"),  # type: ignore[no-untyped-call]
)
