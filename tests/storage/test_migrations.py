"""Migrations from revision 0002 with data: each backfill writes the rows its own revision meant.

A database is built at 0002, filled as 0002 left it (resources without the index rows later
revisions add, quantities without base units, a `reindex_job` row), then taken to head. The
expected rows are written out here (hashes included), not computed by today's indexing code:
the migrations' backfills are frozen, and so is this test.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import sqlalchemy as sa
from sqlalchemy import Engine, create_engine, text

from fhir_server.storage.migrate import upgrade
from tests.pgcluster import skip_reason
from tests.search.conftest import _pg_engine

UCUM = "http://unitsofmeasure.org"
CHROMOSOME = "http://terminology.hl7.org/CodeSystem/chromosome-human"
NUCCORE = "http://www.ncbi.nlm.nih.gov/nuccore"


def h(value: str) -> int:
    return int.from_bytes(hashlib.blake2b(value.encode(), digest_size=8).digest(), "big", signed=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def empty(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An empty database (a fresh file; a fresh schema on PostgreSQL)."""
    if request.param == "sqlite":
        engine = create_engine(f"sqlite:///{tmp_path / 'old.db'}")
        yield engine
        engine.dispose()
        return
    url = request.getfixturevalue("pg_server")  # tests/pgcluster.py decides, once per run
    if url is None:
        pytest.skip(skip_reason())
    yield from _pg_engine(url)  # a scratch schema, dropped afterwards


SEQUENCE = {
    "resourceType": "MolecularSequence", "id": "seq", "type": "dna", "coordinateSystem": 0,
    "referenceSeq": {"chromosome": {"coding": [{"system": CHROMOSOME, "code": "1"}]},
                     "referenceSeqId": {"coding": [{"system": NUCCORE, "code": "NC_000001.11"}]},
                     "windowStart": 100, "windowEnd": 200},
    "variant": [{"start": 120, "end": 121}],
}
LOCATION = {"resourceType": "Location", "id": "paris", "position": {"latitude": 48.85, "longitude": 2.35}}
DOCUMENT = {"resourceType": "DocumentReference", "id": "new", "status": "current", "content": [],
            "relatesTo": [{"code": "replaces", "target": {"reference": "DocumentReference/old"}}]}
GLUCOSE = {"resourceType": "Observation", "id": "glucose", "status": "final", "code": {"text": "glucose"},
           "valueQuantity": {"value": 540, "system": UCUM, "code": "mg/dL"}}


def _fill_as_of_0002(engine: Engine) -> dict[str, int]:
    resource = sa.table("resource", *(sa.column(c) for c in (
        "rid", "res_type", "res_id", "version", "last_updated", "deleted", "body")))
    quantity = sa.table("idx_quantity", *(sa.column(c) for c in ("rid", "res_type", "param", "value", "system",
                                                                 "code")))
    near = sa.table("idx_near", *(sa.column(c) for c in ("rid", "res_type", "param", "lat", "lon", "x", "y", "z")))
    job = sa.table("reindex_job", *(sa.column(c) for c in (
        "job_id", "params", "status", "last_rid", "processed", "total", "started", "updated", "error")))
    rids: dict[str, int] = {}
    with engine.begin() as conn:
        for res in (SEQUENCE, LOCATION, DOCUMENT, GLUCOSE):
            rids[res["id"]] = conn.execute(sa.insert(resource).values(
                res_type=res["resourceType"], res_id=res["id"], version=1, last_updated=1, deleted=False,
                body=orjson.dumps(res)).returning(resource.c.rid)).scalar_one()
        conn.execute(sa.insert(quantity).values(rid=rids["glucose"], res_type="Observation",
                                                param="value-quantity", value=540.0, system=UCUM, code="mg/dL"))
        # a stale row of a parameter 0003 (re)indexes: replaced, not kept beside the new one
        conn.execute(sa.insert(near).values(rid=rids["paris"], res_type="Location", param="near",
                                            lat=0.0, lon=0.0, x=1.0, y=0.0, z=0.0))
        conn.execute(sa.insert(job).values(
            job_id="j1", params='[["Patient","hair"]]', status="running", last_rid=7, processed=7, total=20,
            started=10, updated=11, error=None))
    return rids


def test_a_database_built_at_0002_with_data_is_backfilled_on_upgrade(empty: Engine) -> None:
    upgrade(empty, "0002")
    rids = _fill_as_of_0002(empty)
    upgrade(empty)
    with empty.connect() as conn:
        def rows(sql: str) -> list[tuple[object, ...]]:
            return [tuple(r) for r in conn.execute(text(sql))]

        # 0003: the four coordinate composites (third component in idx_composite_part)
        seq = rids["seq"]
        chromosome, refseq = (h(f"{CHROMOSOME}|1"), h("1")), (h(f"{NUCCORE}|NC_000001.11"), h("NC_000001.11"))
        assert sorted(rows(f"SELECT param, h1_full, h1_code, num, combo FROM idx_composite WHERE rid = {seq}")) \
            == sorted([("chromosome-variant-coordinate", *chromosome, 120.0, 0),
                       ("chromosome-window-coordinate", *chromosome, 100.0, 0),
                       ("referenceseqid-variant-coordinate", *refseq, 120.0, 0),
                       ("referenceseqid-window-coordinate", *refseq, 100.0, 0)])
        assert sorted(rows(f"SELECT param, combo, pos, num FROM idx_composite_part WHERE rid = {seq}")) == sorted([
            ("chromosome-variant-coordinate", 0, 2, 121.0), ("chromosome-window-coordinate", 0, 2, 200.0),
            ("referenceseqid-variant-coordinate", 0, 2, 121.0), ("referenceseqid-window-coordinate", 0, 2, 200.0)])
        # 0003: DocumentReference relationship, (target, code) in the two slots
        assert rows(f"SELECT param, h1_full, h1_code, h2_full, h2_code FROM idx_composite "
                    f"WHERE rid = {rids['new']}") == [
            ("relationship", h("DocumentReference/old"), h("old"), h("|replaces"), h("replaces"))]
        # 0003: Location near, the stale row replaced
        [(lat, lon, z)] = rows(f"SELECT lat, lon, z FROM idx_near WHERE rid = {rids['paris']}")
        assert (lat, lon) == (48.85, 2.35) and abs(z - 0.75298) < 1e-4
        # 0005: UCUM base units from the row's own value
        [(c_value, c_unit)] = rows("SELECT c_value, c_unit FROM idx_quantity")
        assert abs(c_value - 5.4) < 1e-9 and c_unit == "kilogram / meter ** 3"
        # 0006: the reindex job is a `reindex` job, resumable from its last rid, lease free
        assert rows("SELECT job_id, type, state, params, cursor, processed, total, lease_owner, created, updated "
                    "FROM job") == [("j1", "reindex", "running", '[["Patient","hair"]]', "7", 7, 20, None, 10, 11)]
        assert "reindex_job" not in sa.inspect(conn).get_table_names()


def test_migration_0006_goes_back_to_reindex_job(empty: Engine) -> None:
    from fhir_server.storage.migrate import downgrade

    upgrade(empty, "0002")
    _fill_as_of_0002(empty)
    upgrade(empty)
    downgrade(empty, "0005")
    with empty.connect() as conn:
        assert [tuple(r) for r in conn.execute(text("SELECT job_id, status, last_rid FROM reindex_job"))] == [
            ("j1", "running", 7)]
        assert "job" not in sa.inspect(conn).get_table_names()
    upgrade(empty)
