"""Migration 0002 creates exactly the index tables `index_schema` declares, on both databases."""

from __future__ import annotations

from sqlalchemy import create_engine, inspect

from fhir_server.storage import index_schema
from fhir_server.storage.schema import metadata


def test_migration_creates_the_declared_index_tables_and_indexes(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        insp = inspect(engine)
        tables = set(insp.get_table_names())
        declared = {*index_schema.INDEX_TABLES, "idx_fulltext", "search_param_status", "reindex_job"}
        declared = {index_schema.INDEX_TABLES[k].name if k in index_schema.INDEX_TABLES else k for k in declared}
        assert declared <= tables
        for name in declared:
            wanted = {ix.name for ix in metadata.tables[name].indexes}
            assert wanted <= {ix["name"] for ix in insp.get_indexes(name)}, name
            assert {c.name for c in metadata.tables[name].columns} == {c["name"] for c in insp.get_columns(name)}
        assert "ix_resource_type_rid" in {ix["name"] for ix in insp.get_indexes("resource")}
        if engine.dialect.name == "sqlite":
            assert "idx_fulltext_fts" in tables
    finally:
        engine.dispose()
