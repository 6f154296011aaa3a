"""Synthetic care-coordination data for the search benchmark, bulk-loaded with the real index rows.

https://hl7.org/fhir/R4/search.html

Each patient gets 5 Observations (vital signs and labs, LOINC), 1 Condition (SNOMED), 1
CareTeam (2 practitioners), 1 CarePlan (pointing at the CareTeam) and 1 ServiceRequest; there is
one Practitioner per 50 patients and one Organization per 500. The data is deterministic
(seeded), so queries in `bench/search.py` can name values that exist.

Rows are written in batches with the same index rows `write_index` produces
(`search.indexer.resource_rows` and the full-text row), only grouped into one executemany per
table per batch instead of a few statements per resource.

    python bench/gen_data.py --url sqlite:///bench/data/search-1k.db --patients 1000
    python bench/gen_data.py --url postgresql+psycopg://fhir:fhir@127.0.0.1/fhir --schema bench_1k --patients 1000
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, insert, text
from sqlalchemy.engine import make_url

from fhir_server.fhir.json import dumps
from fhir_server.search.compile.fulltext import fulltext_row
from fhir_server.search.indexer import resource_rows
from fhir_server.search.registry import registry
from fhir_server.storage.index_schema import INDEX_TABLES, idx_fulltext
from fhir_server.storage.migrate import upgrade
from fhir_server.storage.schema import resource, resource_history

__all__ = ["FAMILIES", "INS_SYSTEM", "LOINC", "SNOMED", "generate", "load", "main"]

INS_SYSTEM = "urn:oid:1.2.250.1.213.1.4.8"
RPPS_SYSTEM = "urn:oid:1.2.250.1.71.4.2.1"
FAMILIES = ["Martin", "Bernard", "Thomas", "Petit", "Robert", "Richard", "Durand", "Dubois", "Moreau", "Laurent",
            "Simon", "Michel", "Lefèvre", "Leroy", "Roux", "David", "Bertrand", "Morel", "Fournier", "Girard",
            "Bonnet", "Dupont", "Lambert", "Fontaine", "Rousseau", "Vincent", "Muller", "Lefebvre", "Faure",
            "André", "Mercier", "Blanc", "Guérin", "Boyer", "Garnier", "Chevalier", "François", "Legrand",
            "Gauthier", "Garcia", "Perrin", "Robin", "Clément", "Morin", "Nicolas", "Henry", "Roussel",
            "Mathieu", "Gautier", "Masson"]
GIVEN = ["Élodie", "Marie", "Jean", "Pierre", "Louise", "Hélène", "Paul", "Chloé", "Lucas", "Léa", "Hugo",
         "Manon", "Jules", "Camille", "Arthur", "Inès", "Louis", "Zoé", "Gabriel", "Anaïs"]
CITIES = [("Paris", "75001"), ("Lyon", "69001"), ("Marseille", "13001"), ("Lille", "59000"),
          ("Nantes", "44000"), ("Bordeaux", "33000"), ("Rennes", "35000"), ("Grenoble", "38000")]
LOINC = [("8480-6", "Systolic blood pressure", "mm[Hg]", 100, 180), ("8462-4", "Diastolic blood pressure",
         "mm[Hg]", 60, 110), ("8867-4", "Heart rate", "/min", 50, 120), ("29463-7", "Body weight", "kg", 40, 120),
         ("2339-0", "Glucose", "mg/dL", 70, 250), ("4548-4", "Hemoglobin A1c", "%", 4, 12),
         ("2093-3", "Cholesterol", "mg/dL", 120, 300), ("718-7", "Hemoglobin", "g/dL", 9, 17),
         ("2160-0", "Creatinine", "mg/dL", 0.5, 2.5), ("33914-3", "eGFR", "mL/min", 15, 120)]
SNOMED = [("44054006", "Diabetes mellitus type 2"), ("38341003", "Hypertension"), ("195967001", "Asthma"),
          ("13645005", "COPD"), ("84114007", "Heart failure"), ("49436004", "Atrial fibrillation"),
          ("35489007", "Depression"), ("26929004", "Alzheimer disease"), ("709044004", "Chronic kidney disease"),
          ("363346000", "Malignant neoplasm")]
UCUM = "http://unitsofmeasure.org"


def _date(rng: random.Random, start: int, end: int) -> str:
    return f"{rng.randint(start, end)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"


def _patient(i: int, rng: random.Random, n_pract: int, n_org: int) -> dict[str, Any]:
    family, given = FAMILIES[i % len(FAMILIES)], GIVEN[(i // len(FAMILIES)) % len(GIVEN)]
    city, zip_ = CITIES[i % len(CITIES)]
    return {
        "resourceType": "Patient", "id": f"pat-{i}",
        "text": {"status": "generated", "div": f'<div xmlns="http://www.w3.org/1999/xhtml">{given} {family}</div>'},
        "identifier": [{"system": INS_SYSTEM, "value": f"{1_000_000_000_000 + i}"}],
        "active": True,
        "name": [{"family": family, "given": [given]}],
        "gender": "female" if i % 2 else "male",
        "birthDate": _date(rng, 1930, 2020),
        "address": [{"city": city, "postalCode": zip_}],
        "telecom": [{"system": "phone", "value": f"06{i:08d}"}],
        "generalPractitioner": [{"reference": f"Practitioner/pr-{i % n_pract}"}],
        "managingOrganization": {"reference": f"Organization/org-{i % n_org}"},
    }


def _observation(i: int, k: int, rng: random.Random) -> dict[str, Any]:
    code, display, unit, lo, hi = LOINC[(i * 5 + k) % len(LOINC)]
    category = "vital-signs" if code in ("8480-6", "8462-4", "8867-4", "29463-7") else "laboratory"
    return {
        "resourceType": "Observation", "id": f"obs-{i}-{k}", "status": "final" if k % 4 else "amended",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                  "code": category}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": code, "display": display}]},
        "subject": {"reference": f"Patient/pat-{i}"},
        "effectiveDateTime": _date(rng, 2015, 2024) + f"T{rng.randint(7, 19):02d}:00:00Z",
        "valueQuantity": {"value": round(rng.uniform(lo, hi), 1), "unit": unit, "system": UCUM, "code": unit},
    }


def _care(i: int, rng: random.Random, n_pract: int) -> list[dict[str, Any]]:
    code, display = SNOMED[i % len(SNOMED)]
    subject = {"reference": f"Patient/pat-{i}"}
    pr1, pr2 = f"Practitioner/pr-{i % n_pract}", f"Practitioner/pr-{(i * 7 + 3) % n_pract}"
    return [
        {"resourceType": "Condition", "id": f"cond-{i}", "subject": subject,
         "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                        "code": "active"}]},
         "code": {"coding": [{"system": "http://snomed.info/sct", "code": code, "display": display}]},
         "onsetDateTime": _date(rng, 1990, 2023)},
        {"resourceType": "CareTeam", "id": f"ct-{i}", "status": "active", "subject": subject,
         "participant": [{"member": {"reference": pr1}}, {"member": {"reference": pr2}}]},
        {"resourceType": "CarePlan", "id": f"cp-{i}", "status": "active" if i % 3 else "completed",
         "intent": "plan", "subject": subject, "careTeam": [{"reference": f"CareTeam/ct-{i}"}],
         "period": {"start": _date(rng, 2018, 2024)}},
        {"resourceType": "ServiceRequest", "id": f"sr-{i}", "status": "active", "intent": "order",
         "subject": subject, "requester": {"reference": pr2},
         "code": {"coding": [{"system": "http://snomed.info/sct", "code": "183519002",
                              "display": "Referral to cardiology service"}]},
         "authoredOn": _date(rng, 2020, 2024)},
    ]


def generate(patients: int, seed: int = 42) -> Iterator[dict[str, Any]]:
    rng = random.Random(seed)
    n_pract, n_org = max(20, patients // 50), max(5, patients // 500)
    for p in range(n_pract):
        yield {"resourceType": "Practitioner", "id": f"pr-{p}",
               "identifier": [{"system": RPPS_SYSTEM, "value": f"10{p:09d}"}],
               "name": [{"family": FAMILIES[p % len(FAMILIES)], "given": [GIVEN[p % len(GIVEN)]]}]}
    for o in range(n_org):
        yield {"resourceType": "Organization", "id": f"org-{o}", "name": f"Maison de santé {o}"}
    for i in range(patients):
        yield _patient(i, rng, n_pract, n_org)
        for k in range(5):
            yield _observation(i, k, rng)
        yield from _care(i, rng, n_pract)


def _flush(conn: Any, batch: list[dict[str, Any]], clock: int) -> None:
    dialect = conn.dialect.name
    bodies = [dumps(r) for r in batch]
    rows = [{"res_type": r["resourceType"], "res_id": r["id"], "version": 1, "last_updated": clock + n,
             "deleted": False, "body": b} for n, (r, b) in enumerate(zip(batch, bodies, strict=True))]
    stmt = insert(resource).returning(resource.c.rid, sort_by_parameter_order=True)
    rids = conn.execute(stmt, rows).scalars().all()
    history = [{**row, "rid": rid, "method": "PUT"} for row, rid in zip(rows, rids, strict=True)]
    conn.execute(insert(resource_history), history)
    by_kind: dict[str, list[dict[str, Any]]] = {}
    texts = []
    for res, rid in zip(batch, rids, strict=True):
        for kind, krows in resource_rows(registry(), res["resourceType"], res).items():
            by_kind.setdefault(kind, []).extend({**r, "rid": rid, "res_type": res["resourceType"]} for r in krows)
        texts.append({"rid": rid, "res_type": res["resourceType"], **fulltext_row(res, dialect)})
    for kind, krows in by_kind.items():
        keys = {k for r in krows for k in r}
        conn.execute(insert(INDEX_TABLES[kind]), [{**dict.fromkeys(keys), **r} for r in krows])
    if dialect == "postgresql":
        for row in texts:  # SQL expressions (to_tsvector) cannot go through executemany
            conn.execute(insert(idx_fulltext).values(**row))
    else:
        conn.execute(insert(idx_fulltext), texts)


def load(engine: Engine, patients: int, batch_size: int = 1000) -> int:
    upgrade(engine)
    clock, count, batch = time.time_ns() // 1000, 0, []
    with engine.connect() as conn:
        for res in generate(patients):
            batch.append(res)
            if len(batch) >= batch_size:
                with conn.begin():
                    _flush(conn, batch, clock + count)
                count += len(batch)
                batch = []
        if batch:
            with conn.begin():
                _flush(conn, batch, clock + count)
            count += len(batch)
        conn.commit()
        conn.exec_driver_sql("ANALYZE")  # planner statistics: without them PostgreSQL guesses 1 row
        conn.commit()
    return count


def engine_for(url: str, schema: str | None) -> Engine:
    database = make_url(url).database
    if make_url(url).get_backend_name() == "sqlite" and database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)  # bench/data/ is not in the repository
    if schema:
        admin = create_engine(url)
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        admin.dispose()
        return create_engine(url, connect_args={"options": f"-csearch_path={schema}"})
    return create_engine(url)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--schema", help="PostgreSQL schema to create and load into")
    ap.add_argument("--patients", type=int, default=1000)
    args = ap.parse_args()
    started = time.perf_counter()
    n = load(engine_for(args.url, args.schema), args.patients)
    elapsed = time.perf_counter() - started
    print(f"loaded {n} resources for {args.patients} patients in {elapsed:.1f} s ({n / elapsed:.0f}/s)")


if __name__ == "__main__":
    main()
