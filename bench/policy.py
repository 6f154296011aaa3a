"""Cost of the access policy: read by id and search under a practitioner's token vs FHIR_AUTH=off.

https://hl7.org/fhir/smart-app-launch/ (tokens) and docs/access-policy.md (the policy)

Serves a copy of a database loaded by `bench/gen_data.py` twice in one run, alternating: with
`FHIR_AUTH=off`, then with auth on and a real token (signed by the server's own key, read from
the database) of Practitioner `--practitioner`, whose care teams the generator made. Each cell is
wrk at `--clients` connections over the same paths: the practitioner's patients by id, and an
Observation search per patient. With auth on every request also pays the token check, the
policy's SQL and its AuditEvent (stored in batches).

    .venv/bin/python bench/gen_data.py --url sqlite:///bench/data/search-1k.db --patients 1000
    .venv/bin/python bench/policy.py --db bench/data/search-1k.db --patients 1000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from crud import ensure_wrk, run_wrk, server, source_tree  # noqa: E402 - needs the bench folder on sys.path

from fhir_server.storage import migrate  # noqa: E402

BASE_URL = "http://bench.local/fhir"


def visible_patients(practitioner: str, patients: int) -> list[str]:
    """The patients whose CareTeam names `practitioner` (the generator's rule, bench/gen_data.py)."""
    n_pract = max(1, patients // 50)
    p = int(practitioner.removeprefix("pr-"))
    return [f"pat-{i}" for i in range(patients) if i % n_pract == p or (i * 7 + 3) % n_pract == p]


def mint_token(database_url: str, practitioner: str) -> str:
    from fhir_server.auth.scopes import parse_scopes
    from fhir_server.auth.service import AuthService
    from fhir_server.config import Settings
    from fhir_server.storage import open_storage

    settings = Settings(database_url=database_url, auth="on", base_url=BASE_URL, token_lifetime_seconds=3600)

    async def run() -> str:
        store = open_storage(settings)
        await store.start()
        try:
            service = AuthService(settings)
            await service.ensure_keys(store)
            token, _ = service.access_token(
                BASE_URL, client_id="bench", subject=practitioner, kind="user",
                scopes=parse_scopes("user/*.rs"), fhir_user=f"Practitioner/{practitioner}",
            )
            return token
        finally:
            await store.close()

    return asyncio.run(run())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", required=True, type=Path, help="SQLite file loaded by bench/gen_data.py (copied)")
    ap.add_argument("--patients", type=int, required=True)
    ap.add_argument("--practitioner", default="pr-3")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--duration", type=float, default=10)
    ap.add_argument("--warmup", type=float, default=3)
    ap.add_argument("--rounds", type=int, default=2)
    opts = ap.parse_args()
    wrk = ensure_wrk()
    ids = visible_patients(opts.practitioner, opts.patients)
    work = Path(tempfile.mkdtemp(prefix="fhir-policy-bench-"))
    try:
        files = {
            "read": work / "read.txt",
            "search": work / "search.txt",
        }
        files["read"].write_text("".join(f"/fhir/Patient/{i}\n" for i in ids))
        files["search"].write_text(
            "".join(f"/fhir/Observation?code=http://loinc.org|8480-6&patient=Patient/{i}\n" for i in ids))
        tree, _label = source_tree(None, work)
        results: dict[tuple[str, str], list[float]] = {}
        for round_ in range(opts.rounds):
            for mode in ("off", "on"):
                db = work / f"{mode}-{round_}.db"
                shutil.copyfile(opts.db, db)
                url = f"sqlite:///{db}"
                migrate(url)  # a database generated before the latest migrations
                os.environ["FHIR_AUTH"] = mode
                os.environ["FHIR_BASE_URL"] = BASE_URL
                os.environ["FHIR_RATE_LIMIT_PER_MINUTE"] = "0"  # one token hammering: not what is measured
                os.environ["BENCH_TOKEN"] = mint_token(url, opts.practitioner) if mode == "on" else ""
                with server(tree, url, work / f"server-{mode}-{round_}.log") as base:
                    for op in ("read", "search"):
                        if opts.warmup:
                            run_wrk(wrk, base, "paths.lua", opts.clients, opts.warmup, [str(files[op])])
                        cell = run_wrk(wrk, base, "paths.lua", opts.clients, opts.duration, [str(files[op])])
                        bad = sum(int(cell.get(k, 0)) for k in ("non2xx", "connect", "read", "write", "timeout"))
                        if bad:
                            raise RuntimeError(f"{op} with auth {mode}: {bad} errors ({cell})")
                        results.setdefault((op, mode), []).append(float(cell["rps"]))
                        print(f"round {round_ + 1} auth={mode:3s} {op:6s} {cell['rps']:9.1f} req/s "
                              f"p50 {cell.get('p50_ms', 0):.2f} ms p99 {cell.get('p99_ms', 0):.2f} ms", flush=True)
        print(f"\n{len(ids)} patients visible to Practitioner/{opts.practitioner}; {opts.clients} connections; "
              f"median of {opts.rounds} rounds")
        print(f"{'operation':10s} {'auth off':>10s} {'policy on':>10s} {'overhead':>9s}")
        for op in ("read", "search"):
            off, on = statistics.median(results[(op, "off")]), statistics.median(results[(op, "on")])
            print(f"{op:10s} {off:10.1f} {on:10.1f} {100 * (1 - on / off):8.1f}%  (target <= 15 %)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
