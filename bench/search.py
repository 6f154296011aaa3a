"""Search benchmark: a fixed blend of query shapes at N concurrent clients, p50/p95 per shape.

https://hl7.org/fhir/R4/search.html

Runs `interactions.search.search_type` (parse, plan, SQL, Bundle bytes) against a database
loaded by `bench/gen_data.py`, through the product's Storage (SQLite reader pool or PostgreSQL
pool), `--clients` coroutines at a time. HTTP is not in the loop: these are the engine's figures.
"Paging to page 5" shapes follow the next links and time the fifth page.

    python bench/search.py --url sqlite:///bench/data/search-1k.db --patients 1000
    python bench/search.py --url sqlite:///bench/data/search-1k.db --patients 1000 --practitioner pr-3
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

import orjson

from fhir_server.config import Settings
from fhir_server.context import EVERYTHING, Access, RequestContext
from fhir_server.interactions.search import search_compartment, search_type
from fhir_server.storage import open_storage

__all__ = ["SHAPES", "main"]

BASE = "http://bench/fhir"
INS = "urn:oid:1.2.250.1.213.1.4.8"
Shape = Callable[[random.Random, int], tuple[str, list[tuple[str, str]]]]


def _pat(rng: random.Random, n: int) -> int:
    return rng.randrange(n)


SHAPES: dict[str, Shape] = {
    "token identifier": lambda r, n: ("Patient", [("identifier", f"{INS}|{1_000_000_000_000 + _pat(r, n)}")]),
    "string name prefix": lambda r, n: ("Patient", [("name", r.choice(["dup", "mar", "ber", "lef"]))]),
    "string family exact": lambda r, n: ("Patient", [("family:exact", r.choice(["Dupont", "Lefèvre"]))]),
    "date birthdate range": lambda r, n: (
        "Patient", [("birthdate", f"ge{r.randint(1930, 2019)}-01-01"), ("birthdate", "lt2020-06-01")]),
    "token gender + count": lambda r, n: ("Patient", [("gender", "female"), ("_count", "20")]),
    "obs code + patient": lambda r, n: ("Observation", [("code", "http://loinc.org|8480-6"),
                                                        ("patient", f"Patient/pat-{_pat(r, n)}")]),
    "obs patient sort -date": lambda r, n: ("Observation", [("subject", f"Patient/pat-{_pat(r, n)}"),
                                                            ("_sort", "-date")]),
    "obs code OR-list + date": lambda r, n: ("Observation", [("code", "8480-6,8462-4,8867-4"),
                                                             ("date", f"ge{r.randint(2015, 2024)}-01-01")]),
    "obs quantity gt": lambda r, n: ("Observation", [("code", "2339-0"), ("value-quantity", "gt240")]),
    # the combinations below match some resources (the generator's patterns are periodic), except
    # `patient.name=lefèvre&code=4548-4`, which matches none: the worst case of an unselective chain
    "chain patient.name": lambda r, n: ("Observation", [("patient.name", r.choice(["dupont", "lefèvre"])),
                                                        ("code", "4548-4")]),
    "chain patient.identifier": lambda r, n: (
        "Observation", [("patient.identifier", f"{INS}|{1_000_000_000_000 + _pat(r, n)}")]),
    "_has condition code": lambda r, n: ("Patient", [("_has:Condition:patient:code", "363346000"),
                                                     ("address-city", "lyon")]),
    "condition _include patient": lambda r, n: ("Condition", [("patient", f"pat-{_pat(r, n)}"),
                                                              ("_include", "Condition:patient")]),
    "patient _revinclude careplan": lambda r, n: ("Patient", [("_id", f"pat-{_pat(r, n)}"),
                                                              ("_revinclude", "CarePlan:patient")]),
    "careplan active _include careteam": lambda r, n: (
        "CarePlan", [("patient", f"pat-{_pat(r, n)}"), ("status", "active"), ("_include", "CarePlan:care-team")]),
    "careteam participant": lambda r, n: ("CareTeam", [("participant", f"Practitioner/pr-{r.randrange(20)}")]),
    "servicerequest requester sort": lambda r, n: (
        "ServiceRequest", [("requester", f"Practitioner/pr-{r.randrange(20)}"), ("_sort", "-authored")]),
    "composite code-value-quantity": lambda r, n: ("Observation", [("code-value-quantity", "8480-6$gt175")]),
    "full text _content": lambda r, n: ("Patient", [("_content", r.choice(["grenoble", "nantes"]))]),
    "condition code _total": lambda r, n: ("Condition", [("code", "44054006"), ("_total", "accurate")]),
    "obs date month": lambda r, n: ("Observation", [("date", f"ge{r.randint(2015, 2023)}-03-01"),
                                                    ("date", "lt2024-04-01"), ("category", "laboratory")]),
    "page 5: obs code": lambda r, n: ("Observation", [("code", "8867-4"), ("_count", "20")]),
    "page 5: patient sort -birthdate": lambda r, n: ("Patient", [("_sort", "-birthdate"), ("_count", "20")]),
    "compartment patient observations": lambda r, n: ("@Patient", [("code", "8480-6,2339-0")]),
}


async def _one(ctx: RequestContext, store: Any, name: str, shape: Shape, rng: random.Random, n: int) -> float:
    res_type, params = shape(rng, n)
    pages = 5 if name.startswith("page 5") else 1
    started = 0.0
    for _page in range(pages):
        started = time.perf_counter()
        if res_type.startswith("@"):
            body = await search_compartment(ctx, store, "Patient", f"pat-{_pat(rng, n)}", "Observation", params, BASE)
        else:
            body = await search_type(ctx, store, res_type, params, BASE)
        nxt = [link["url"] for link in orjson.loads(body)["link"] if link["relation"] == "next"]
        if not nxt:
            break
        params = [p for p in params if p[0] != "_cursor"] + [("_cursor", nxt[0].rsplit("_cursor=", 1)[1])]
    return time.perf_counter() - started


async def run(
    url: str, patients: int, clients: int, rounds: int, seed: int = 7, practitioner: str | None = None
) -> dict[str, list[float]]:
    settings = Settings(database_url=url, sqlite_readers=clients, pg_pool_size=clients)
    store = open_storage(settings)
    await store.start()
    # --practitioner: every query as that practitioner's token sees the data (the care-team policy)
    access = Access("care-team", practitioner=practitioner) if practitioner else EVERYTHING
    ctx = RequestContext(settings=settings, base_url=BASE, access=access)
    timings: dict[str, list[float]] = {name: [] for name in SHAPES}
    errors: list[str] = []
    jobs = [(name, i) for i in range(rounds) for name in SHAPES]
    random.Random(seed).shuffle(jobs)
    queue: asyncio.Queue[tuple[str, int]] = asyncio.Queue()
    for job in jobs:
        queue.put_nowait(job)

    async def client(cid: int) -> None:
        rng = random.Random(seed * 1000 + cid)
        while not queue.empty():
            name, _ = queue.get_nowait()
            try:
                timings[name].append(await _one(ctx, store, name, SHAPES[name], rng, patients))
            except Exception as exc:  # noqa: BLE001 - counted and reported
                errors.append(f"{name}: {exc!r}")

    try:
        for name in SHAPES:  # warm caches and the registry once, untimed
            await _one(ctx, store, name, SHAPES[name], random.Random(0), patients)
        await asyncio.gather(*(client(c) for c in range(clients)))
    finally:
        await store.close()
    timings["errors"] = [float(len(errors))]
    for e in errors[:5]:
        print("ERROR", e)
    return timings


def _ms(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def report(timings: dict[str, list[float]]) -> None:
    errors = int(timings.pop("errors", [0])[0])
    print(f"{'shape':40s} {'n':>5s} {'p50 ms':>8s} {'p95 ms':>8s}")
    everything: list[float] = []
    for name, values in timings.items():
        everything += values
        print(f"{name:40s} {len(values):5d} {_ms(values, 0.5):8.1f} {_ms(values, 0.95):8.1f}")
    print(f"{'overall':40s} {len(everything):5d} {_ms(everything, 0.5):8.1f} {_ms(everything, 0.95):8.1f}"
          f"   mean {statistics.fmean(everything) * 1000:.1f} ms, errors {errors}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", required=True, help="database loaded by bench/gen_data.py")
    ap.add_argument("--patients", type=int, required=True, help="patients loaded (to pick existing ids)")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=20, help="runs of each shape")
    ap.add_argument("--practitioner", help="run every query under this Practitioner id's care-team access "
                    "(e.g. pr-3); default: unrestricted, as with FHIR_AUTH=off")
    args = ap.parse_args()
    report(asyncio.run(run(args.url, args.patients, args.clients, args.rounds, practitioner=args.practitioner)))


if __name__ == "__main__":
    main()
