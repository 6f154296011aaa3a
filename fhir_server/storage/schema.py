"""Tables of the resource store: the current version of each resource, and every version.

https://hl7.org/fhir/R4/http.html#history

`body` holds the JSON exactly as it is served, so a read returns stored bytes without
re-serialising. `rid` is a surrogate key that never changes for a resource: index tables
point at it, and search paging uses it as the keyset tie-breaker.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    UniqueConstraint,
)

__all__ = ["metadata", "resource", "resource_history"]

metadata = MetaData()

# SQLite only aliases rowid (fast, autoincrementing) for a column declared exactly INTEGER.
BigId = BigInteger().with_variant(Integer(), "sqlite")

resource = Table(
    "resource",
    metadata,
    Column("rid", BigId, primary_key=True, autoincrement=True),
    Column("res_type", String(64), nullable=False),
    Column("res_id", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("last_updated", BigInteger, nullable=False),  # microseconds since the epoch, UTC
    Column("deleted", Boolean, nullable=False),
    Column("body", LargeBinary, nullable=True),  # NULL once deleted
    UniqueConstraint("res_type", "res_id", name="uq_resource_type_id"),
)
Index("ix_resource_type_updated", resource.c.res_type, resource.c.last_updated)

resource_history = Table(
    "resource_history",
    metadata,
    Column("seq", BigId, primary_key=True, autoincrement=True),  # global order of all writes
    Column("rid", BigInteger, nullable=False),
    Column("res_type", String(64), nullable=False),
    Column("res_id", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("last_updated", BigInteger, nullable=False),
    Column("deleted", Boolean, nullable=False),
    Column("method", String(8), nullable=False),  # POST, PUT, PATCH or DELETE
    Column("body", LargeBinary, nullable=True),
    UniqueConstraint("res_type", "res_id", "version", name="uq_history_type_id_version"),
)
Index("ix_history_type_seq", resource_history.c.res_type, resource_history.c.seq)
Index("ix_history_updated", resource_history.c.last_updated)
