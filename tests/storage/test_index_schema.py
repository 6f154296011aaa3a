"""Migration 0002 creates exactly the index tables `index_schema` declares, on both databases."""

from __future__ import annotations

from sqlalchemy import Engine, create_engine, inspect

from fhir_server.storage import index_schema, job_schema
from fhir_server.storage.schema import metadata


def test_migration_creates_the_declared_index_tables_and_indexes(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        insp = inspect(engine)
        tables = set(insp.get_table_names())
        declared = {*index_schema.INDEX_TABLES, "idx_fulltext", "search_param_status", job_schema.job.name}
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


def _date_keys(engine: Engine) -> dict[str, list[str]]:
    return {ix["name"]: ix["column_names"] for ix in inspect(engine).get_indexes("idx_date")
            if ix["name"] in ("ix_idx_date_k0", "ix_idx_date_k1")}


def test_migration_0004_gives_existing_date_keys_both_bounds(database_url: str) -> None:
    from fhir_server.storage.migrate import downgrade, upgrade

    engine = create_engine(database_url)
    try:
        downgrade(engine, "0003")  # back to the keys revision 0003 had
        assert _date_keys(engine) == {"ix_idx_date_k0": ["res_type", "param", "lo", "rid"],
                                      "ix_idx_date_k1": ["res_type", "param", "hi", "rid"]}
        upgrade(engine)
        assert _date_keys(engine) == {"ix_idx_date_k0": ["res_type", "param", "lo", "rid", "hi"],
                                      "ix_idx_date_k1": ["res_type", "param", "hi", "rid", "lo"]}
        upgrade(engine)  # nothing left to do
        assert len(_date_keys(engine)) == 2
    finally:
        engine.dispose()


def test_migration_0005_fills_base_units_for_quantities_already_indexed(database_url: str) -> None:
    from decimal import Decimal

    from sqlalchemy import insert, select

    from fhir_server.fhir.json import dumps
    from fhir_server.search.indexer import write_index
    from fhir_server.storage.index_schema import idx_quantity
    from fhir_server.storage.migrate import downgrade, upgrade
    from fhir_server.storage.schema import resource

    obs = {"resourceType": "Observation", "id": "mig-ucum", "status": "final", "code": {"text": "glucose"},
           "valueQuantity": {"value": Decimal("540"), "system": "http://unitsofmeasure.org", "code": "mg/dL"}}
    engine = create_engine(database_url)
    try:
        with engine.begin() as conn:
            rid = conn.execute(insert(resource).values(res_type="Observation", res_id="mig-ucum", version=1,
                                                       last_updated=1, deleted=False, body=dumps(obs))
                               .returning(resource.c.rid)).scalar_one()
            write_index(conn, rid, "Observation", obs)
        downgrade(engine, "0004")  # the columns as they were before: absent
        assert "c_value" not in {c["name"] for c in inspect(engine).get_columns("idx_quantity")}
        upgrade(engine)
        with engine.connect() as conn:
            row = conn.execute(select(idx_quantity.c.c_value, idx_quantity.c.c_unit)
                               .where(idx_quantity.c.rid == rid, idx_quantity.c.param == "value-quantity")).one()
        assert abs(row.c_value - 5.4) < 1e-9 and row.c_unit == "kilogram / meter ** 3"
    finally:
        engine.dispose()
