"""The frozen auth tables of migration 0007 agree with what `fhir_server.auth.tables` declares."""

from __future__ import annotations

from sqlalchemy import create_engine, inspect
from sqlalchemy.pool import NullPool

from fhir_server.auth import tables


def test_migrated_auth_tables_match_the_code(database_url: str) -> None:
    engine = create_engine(database_url, poolclass=NullPool)
    try:
        found = inspect(engine)
        for table in tables.metadata.sorted_tables:
            columns = {c["name"] for c in found.get_columns(table.name)}
            assert columns == {c.name for c in table.columns}, table.name
    finally:
        engine.dispose()
