"""Fixtures for search tests: a migrated scratch database on SQLite and on PostgreSQL.

PostgreSQL tests run in a schema of their own (random name, dropped afterwards) in the database
of the server `tests/pgcluster.py` chose (the `pg_server` fixture); without one they are skipped.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, create_engine, insert, select, text, update

from fhir_server.fhir.json import dumps
from fhir_server.search.access import EVERYTHING
from fhir_server.search.indexer import write_index
from fhir_server.storage.migrate import upgrade
from fhir_server.storage.schema import resource
from tests.pgcluster import BACKENDS, skip_reason


def _pg_engine(url: str) -> Iterator[Engine]:
    schema = "t_" + uuid.uuid4().hex[:12]
    admin = create_engine(url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine = create_engine(url, connect_args={"options": f"-csearch_path={schema}"})
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    backend = "postgres" if request.param == "postgresql" else request.param
    if backend not in BACKENDS:
        pytest.skip(f"{backend} not in FHIR_TEST_BACKENDS")
    if request.param == "sqlite":
        path = Path(tmp_path_factory.mktemp("search")) / "search.db"
        eng = create_engine(f"sqlite:///{path}")
        upgrade(eng)
        yield eng
        eng.dispose()
    else:
        url = request.getfixturevalue("pg_server")
        if url is None:
            pytest.skip(skip_reason())
        gen = _pg_engine(url)
        eng = next(gen)
        upgrade(eng)
        yield eng
        gen.close()


class Loader:
    """Writes resources the way storage does: resource row + write_index in one transaction."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.clock = 1_600_000_000_000_000

    def put(self, conn: Connection, res: dict[str, Any]) -> int:
        self.clock += 1_000_000
        body = dumps(res)
        row = conn.execute(
            select(resource.c.rid, resource.c.version).where(
                resource.c.res_type == res["resourceType"], resource.c.res_id == res["id"]
            )
        ).first()
        values = {"last_updated": self.clock, "deleted": False, "body": body}
        if row is None:
            rid = conn.execute(
                insert(resource)
                .values(res_type=res["resourceType"], res_id=res["id"], version=1, **values)
                .returning(resource.c.rid)
            ).scalar_one()
        else:
            rid = row[0]
            conn.execute(update(resource).where(resource.c.rid == rid).values(version=row[1] + 1, **values))
        write_index(conn, int(rid), res["resourceType"], res)
        return int(rid)

    def delete(self, conn: Connection, res_type: str, res_id: str) -> None:
        rid = conn.execute(
            select(resource.c.rid).where(resource.c.res_type == res_type, resource.c.res_id == res_id)
        ).scalar_one()
        conn.execute(update(resource).where(resource.c.rid == rid).values(deleted=True, body=None))
        write_index(conn, int(rid), res_type, None)

    def load(self, resources: list[dict[str, Any]]) -> None:
        with self.engine.begin() as conn:
            for res in resources:
                self.put(conn, res)


@pytest.fixture(scope="module")
def loader(engine: Engine) -> Loader:
    return Loader(engine)


Search = Callable[..., list[str]]


P1 = {
    "resourceType": "Patient", "id": "p1",
    "meta": {"tag": [{"system": "http://example.org/tags", "code": "vip"}],
             "profile": ["http://example.org/fhir/StructureDefinition/fr-patient"],
             "security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}],
             "source": "http://ehr.example.org"},
    "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">Élodie Dupont, diabète</div>"},
    "identifier": [{"system": "urn:oid:1.2.250.1.213.1.4.8", "value": "1234567890123",
                    "type": {"coding": [{"system": "http://interopsante.org/CodeSystem/v2-0203", "code": "INS-NIR"}],
                             "text": "NIR"}}],
    "active": True,
    "name": [{"family": "Dupont", "given": ["Élodie", "Marie"]}],
    "telecom": [{"system": "phone", "value": "0601020304"}],
    "gender": "female", "birthDate": "1970-03-04", "deceasedBoolean": False,
    "address": [{"city": "Paris", "postalCode": "75001", "line": ["1 rue de la Paix"]}],
    "generalPractitioner": [{"reference": "Practitioner/dr1"}],
}
P2 = {
    "resourceType": "Patient", "id": "p2", "active": False,
    "name": [{"family": "Martin", "given": ["Jean"]}], "gender": "male", "birthDate": "1980",
    "address": [{"city": "Lyon"}], "managingOrganization": {"reference": "Organization/org1"},
    "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">Jean Martin</div>"},
}
P3 = {"resourceType": "Patient", "id": "p3", "name": [{"family": "O'Brien", "given": ["Zoë"]}]}
DR1 = {
    "resourceType": "Practitioner", "id": "dr1", "name": [{"family": "Durand", "given": ["Paul"]}],
    "identifier": [{"system": "urn:oid:1.2.250.1.71.4.2.1", "value": "810000000001"}],
}
ORG1 = {"resourceType": "Organization", "id": "org1", "name": "Clinique des Lilas"}
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"


def _bp(id_: str, patient: str, value: float, when: str, status: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation", "id": id_, "status": status,
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                  "code": "vital-signs"}]}],
        "code": {"coding": [{"system": LOINC, "code": "8480-6", "display": "Systolic blood pressure"}]},
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": when,
        "valueQuantity": {"value": value, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"},
        "component": [{"code": {"coding": [{"system": LOINC, "code": "8462-4"}]},
                       "valueQuantity": {"value": 80, "system": UCUM, "code": "mm[Hg]"}}],
    }


RESOURCES: list[dict[str, Any]] = [
    P1, P2, P3, DR1, ORG1,
    _bp("o1", "p1", 120, "2020-03-01T10:00:00Z", "final"),
    _bp("o2", "p2", 150, "2021-06-15", "preliminary"),
    {"resourceType": "Observation", "id": "o3", "status": "final", "code": {"text": "Glycaemia test"},
     "subject": {"reference": "Patient/p1"}, "effectivePeriod": {"start": "2019-01-01", "end": "2019-12-31"},
     "performer": [{"reference": "Practitioner/dr1"}], "valueString": "positive"},
    {"resourceType": "Observation", "id": "o4", "status": "amended",
     "code": {"coding": [{"system": "http://snomed.info/sct", "code": "365853002"}]},
     "subject": {"reference": "http://other.example.org/fhir/Patient/p3"},
     "effectiveDateTime": "2022", "valueCodeableConcept": {"coding": [{"system": "http://snomed.info/sct",
                                                                        "code": "260385009", "display": "Négatif"}]}},
    {"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/p1"},
     "code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006", "display": "Diabetes"}]},
     "onsetDateTime": "2015-06"},
    {"resourceType": "Condition", "id": "c2", "subject": {"reference": "Patient/p2"},
     "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "I10"}]}},
    {"resourceType": "CareTeam", "id": "ct1", "status": "active", "subject": {"reference": "Patient/p1"},
     "participant": [{"member": {"reference": "Practitioner/dr1"}}]},
    {"resourceType": "CarePlan", "id": "cp1", "status": "active", "intent": "plan",
     "subject": {"reference": "Patient/p1"}, "period": {"start": "2020-01-01"},
     "careTeam": [{"reference": "CareTeam/ct1"}]},
    {"resourceType": "ServiceRequest", "id": "sr1", "status": "active", "intent": "order",
     "subject": {"reference": "Patient/p2"}, "requester": {"reference": "Practitioner/dr1"},
     "occurrenceDateTime": "2023-05-01T08:30:00+02:00",
     "identifier": [{"system": "http://example.org/orders", "value": "A-1"}],
     "basedOn": [{"identifier": {"system": "http://example.org/plans", "value": "PLAN-9"}}]},
    {"resourceType": "RiskAssessment", "id": "ra1", "status": "final", "subject": {"reference": "Patient/p1"},
     "prediction": [{"probabilityDecimal": 0.25}]},
    {"resourceType": "ValueSet", "id": "vs1", "url": "http://example.org/fhir/ValueSet/bp", "status": "active",
     "compose": {"include": [{"system": LOINC, "concept": [{"code": "8480-6"}]}]}},
    {"resourceType": "ValueSet", "id": "vs2", "url": "http://example.org/fhir/ValueSet/snomed-all",
     "status": "active", "compose": {"include": [{"system": "http://snomed.info/sct"}]}},
]


@pytest.fixture(scope="module")
def loaded(engine: Engine, loader: Loader) -> Engine:
    from decimal import Decimal

    from fhir_server.fhir.json import loads

    # Through the JSON codec, so decimals arrive as Decimal as they do from a request.
    loader.load([loads(dumps(r)) for r in RESOURCES])
    assert isinstance(loads(dumps(RESOURCES[-3]))["prediction"][0]["probabilityDecimal"], Decimal)
    return engine


@pytest.fixture(scope="module")
def find(loaded: Engine) -> Callable[..., list[str]]:
    """find("Patient", "name=dupont&gender=female") -> sorted ids of the matches."""
    from urllib.parse import parse_qsl

    from fhir_server.search import search
    from fhir_server.search.parse import parse_query
    from fhir_server.search.registry import registry

    def run(res_type: str | None, qs: str, sort: bool = True, **kw: Any) -> list[str]:
        types = tuple(res_type.split(",")) if res_type else ()
        query = parse_query(registry(), types, parse_qsl(qs, keep_blank_values=True))
        with loaded.connect() as conn:
            result, _ = search(conn, query, kw.pop('access', EVERYTHING), **kw)
        ids = [m.id for m in result.matches]
        return sorted(ids) if sort else ids

    return run
