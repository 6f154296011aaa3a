"""CRUD benchmark: read, create and update throughput and latency against the read's ceiling.

https://hl7.org/fhir/R4/http.html

Starts the server (bench/ceiling.py: the product app plus a fixed-body route) on a free
loopback port, against a fresh SQLite file and, with --pg-url, a fresh PostgreSQL database;
seeds patients; then for each client count runs wrk on: the ceiling, read by id, update (PUT,
no If-Match) and create (POST). Prints one table and the derived figures with their targets:
read >= 70 % of the ceiling, SQLite create at 32 clients >= 10x create at 1 client, 0 errors.

    .venv/bin/python bench/crud.py [--pg-url URL] [--duration 10] [--clients 1,8,32]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
from sqlalchemy.engine import make_url

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
WRK_DIR = BENCH / "wrk"
LOOPBACK = ("127.0.0.1", "localhost", "::1")
OPERATIONS = ("ceiling", "read", "update", "create")
READ_TARGET = 70.0  # read req/s as a % of the ceiling
GROUP_COMMIT_TARGET = 10.0  # SQLite create req/s at 32 clients / at 1 client

sys.path.insert(0, str(BENCH))
from ceiling import patient  # noqa: E402 - needs the bench folder on sys.path


@dataclass
class Cell:
    operation: str
    backend: str
    clients: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int
    writes: int | None = None  # history rows the server wrote during the cell
    commits: int | None = None  # SQLite commits during the cell
    load1: float = 0.0  # 1-minute load average at the end of the cell: others' work skews figures
    round_rps: list[float] = field(default_factory=list)  # req/s of each round, in order
    raw: dict[str, Any] = field(default_factory=dict)


# -- set-up --------------------------------------------------------------------------------
def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() != 0:
        sys.exit("wrk is missing: install it with `apt-get install -y wrk` (needs root)")
    print("installing wrk (apt-get install -y wrk) ...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "install", "-y", "wrk"], check=True, timeout=600, env=env, stdout=subprocess.DEVNULL)
    found = shutil.which("wrk")
    if not found:
        sys.exit("apt-get install wrk did not provide a wrk binary")
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def pg_database(admin_url: str) -> Iterator[str]:
    """A fresh PostgreSQL database on a loopback server, dropped on exit."""
    url = make_url(admin_url)
    if url.host not in LOOPBACK:
        sys.exit(f"--pg-url must point at a loopback server, not {url.host}")
    name = f"fhir_bench_{os.getpid()}_{int(time.time())}"
    conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True, connect_timeout=10) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield url.set(drivername="postgresql+psycopg", database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(conninfo, autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def source_tree(rev: str | None, work: Path, tree_dir: Path | None = None) -> tuple[Path, str]:
    """Where the server's code comes from: the working tree, `git archive REV`, or another folder.

    Several people edit the working tree at once; --rev measures one committed state instead,
    --tree a copy holding an experiment (it must contain fhir_server/ and profiles/).
    """
    if tree_dir is not None:
        if not (tree_dir / "fhir_server" / "__init__.py").is_file():
            sys.exit(f"--tree {tree_dir} holds no fhir_server package")
        return tree_dir.resolve(), f"folder {tree_dir.resolve()}"

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, check=True, timeout=60
        ).stdout.strip()

    if rev is None:
        dirty = " + uncommitted changes" if git("status", "--porcelain", "--", "fhir_server") else ""
        return REPO, f"working tree at {git('rev-parse', '--short', 'HEAD')}{dirty}"
    sha = git("rev-parse", "--verify", f"{rev}^{{commit}}")
    tree = work / "tree"
    tree.mkdir()
    archive = subprocess.run(
        ["git", "archive", sha, "fhir_server", "profiles"], cwd=REPO, capture_output=True, check=True, timeout=120
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True, timeout=120)
    return tree, f"commit {sha[:10]}"


@contextmanager
def server(tree: Path, database_url: str, log_path: Path) -> Iterator[str]:
    """bench/ceiling.py in a subprocess on a free loopback port; killed on exit, whatever happens."""
    port = free_port()
    # PYTHONPATH comes before the editable install's path: the server imports fhir_server from `tree`.
    env = {
        **os.environ,
        "FHIR_DATABASE_URL": database_url,
        "FHIR_LOG_LEVEL": "warning",
        # Without tokens, as before auth existed, so commits stay comparable; the cost of a token
        # check is measured by bench/auth_tokens.py. FHIR_AUTH=on in the environment overrides it.
        "FHIR_AUTH": os.environ.get("FHIR_AUTH", "off"),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(tree), os.environ.get("PYTHONPATH")])),
    }
    cmd = [sys.executable, str(BENCH / "ceiling.py"), "--host", "127.0.0.1", "--port", str(port)]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=tree, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, proc, log_path)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def wait_ready(base: str, proc: subprocess.Popen[bytes], log_path: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        with suppress(httpx.HTTPError):
            # 401: up, with authentication on (every path but the public ones needs a token)
            if httpx.get(f"{base}/bench/stats", timeout=2).status_code in (200, 401):
                return
        time.sleep(0.2)
    raise RuntimeError(f"server not ready after {timeout:.0f} s:\n{log_path.read_text()[-3000:]}")


def seed(base: str, count: int, concurrency: int = 32, timeout: float = 300) -> list[str]:
    """PUT `count` Patients with known ids (update-as-create); returns the ids."""
    ids = [f"bench-{i:06d}" for i in range(count)]

    async def run() -> None:
        limit = asyncio.Semaphore(concurrency)
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:

            async def put(id_: str) -> None:
                async with limit:
                    r = await client.put(
                        f"/fhir/Patient/{id_}", json=patient(id_), headers={"Content-Type": "application/fhir+json"}
                    )
                if r.status_code not in (200, 201):
                    raise RuntimeError(f"seeding {id_}: HTTP {r.status_code} {r.text[:300]}")

            await asyncio.gather(*(put(i) for i in ids))

    asyncio.run(asyncio.wait_for(run(), timeout))
    return ids


def stats(base: str) -> dict[str, Any]:
    r = httpx.get(f"{base}/bench/stats", timeout=30)
    r.raise_for_status()
    result: dict[str, Any] = r.json()
    return result


# -- measuring -----------------------------------------------------------------------------
def run_wrk(wrk: str, base: str, script: str, clients: int, seconds: float, args: list[str]) -> dict[str, Any]:
    flags = f"-c {clients} -t {min(clients, 2)} -d {max(1, round(seconds))}s --timeout 10s".split()
    cmd = [wrk, *flags, "-s", str(WRK_DIR / script), base, "--", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=False)
    for line in done.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            result: dict[str, Any] = json.loads(line.removeprefix("BENCH_JSON "))
            return result
    raise RuntimeError(f"wrk gave no result (exit {done.returncode}):\n{done.stdout}\n{done.stderr}")


def measure(
    wrk: str, base: str, backend: str, op: str, clients: int, opts: argparse.Namespace, files: dict[str, str]
) -> Cell:
    script, args = {
        "ceiling": ("ceiling.lua", []),
        "read": ("read.lua", [files["ids"]]),
        "update": ("update.lua", [files["ids"], files["template"]]),
        "create": ("create.lua", [files["patient"]]),
    }[op]
    if opts.warmup > 0:
        run_wrk(wrk, base, script, clients, opts.warmup, args)
    before = stats(base) if op in ("create", "update") else None
    raw = run_wrk(wrk, base, script, clients, opts.duration, args)
    errors = raw["non2xx"] + raw["connect"] + raw["read"] + raw["write"] + raw["timeout"]
    cell = Cell(
        op,
        backend,
        clients,
        raw["rps"],
        raw["p50_ms"],
        raw["p99_ms"],
        errors,
        raw["requests"],
        load1=os.getloadavg()[0],
        raw=raw,
    )
    if before is not None:
        time.sleep(0.5)  # let requests still in flight when wrk stopped reach the database
        after = stats(base)
        cell.writes = after["history_rows"] - before["history_rows"]
        if after["commits"] is not None:
            cell.commits = after["commits"] - before["commits"]
    return cell


def bench_backend(wrk: str, backend: str, database_url: str, opts: argparse.Namespace, work: Path) -> list[Cell]:
    cells: list[Cell] = []
    with server(opts.tree, database_url, work / f"server-{backend}.log") as base:
        package = Path(stats(base)["package"]).resolve()
        if not package.is_relative_to(opts.tree.resolve()):
            raise RuntimeError(f"the server imported {package}, not the code under {opts.tree}")
        print(f"[{backend}] server at {base}; seeding {opts.seed} patients ...", flush=True)
        ids = seed(base, opts.seed)
        files = write_inputs(work, ids)
        for clients in opts.clients:
            rounds: dict[str, list[Cell]] = {op: [] for op in OPERATIONS}
            # Rounds interleave the operations, so the ceiling and the read of one round run
            # back to back under the same background load.
            for number in range(1, opts.rounds + 1):
                for op in OPERATIONS:
                    cell = measure(wrk, base, backend, op, clients, opts, files)
                    rounds[op].append(cell)
                    print(
                        f"[{backend}] round {number} {op:<7} c={clients:<3} {cell.rps:9.1f} req/s  "
                        f"p50 {cell.p50_ms:7.2f} ms  p99 {cell.p99_ms:7.2f} ms  errors {cell.errors}  "
                        f"load {cell.load1:.1f}",
                        flush=True,
                    )
            cells += [merge(rounds[op]) for op in OPERATIONS]
    return cells


def merge(rounds: list[Cell]) -> Cell:
    """One cell from its rounds: the median round's figures; errors and writes summed."""
    ordered = sorted(rounds, key=lambda c: c.rps)
    cell = Cell(**{**asdict(ordered[(len(ordered) - 1) // 2]), "raw": {}})
    cell.raw = {"rounds": [c.raw for c in rounds]}
    cell.round_rps = [c.rps for c in rounds]
    cell.errors = sum(c.errors for c in rounds)
    cell.requests = sum(c.requests for c in rounds)
    cell.load1 = max(c.load1 for c in rounds)
    if all(c.writes is not None for c in rounds):
        cell.writes = sum(c.writes or 0 for c in rounds)
    if all(c.commits is not None for c in rounds):
        cell.commits = sum(c.commits or 0 for c in rounds)
    return cell


def write_inputs(work: Path, ids: list[str]) -> dict[str, str]:
    files = {"ids": work / "ids.txt", "patient": work / "patient.json", "template": work / "template.json"}
    files["ids"].write_text("\n".join(ids) + "\n")
    files["patient"].write_text(json.dumps(patient(), ensure_ascii=False))
    files["template"].write_text(json.dumps(patient("@ID@"), ensure_ascii=False))
    return {k: str(v) for k, v in files.items()}


# -- reporting -----------------------------------------------------------------------------
def table(cells: list[Cell]) -> str:
    head = "| operation | backend | clients | req/s | p50 ms | p99 ms | errors | writes/commit | load1 |"
    lines = [head, "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for c in cells:
        group = f"{c.writes / c.commits:.1f} ({c.writes}/{c.commits})" if c.commits and c.writes is not None else ""
        lines.append(
            f"| {c.operation} | {c.backend} | {c.clients} | {c.rps:.0f} | {c.p50_ms:.2f} | "
            f"{c.p99_ms:.2f} | {c.errors} | {group} | {c.load1:.1f} |"
        )
    return "\n".join(lines)


def verdicts(cells: list[Cell]) -> list[str]:
    """The derived figures, each with its target and PASS/FAIL."""
    by = {(c.operation, c.backend, c.clients): c for c in cells}
    out: list[str] = []
    for c in cells:
        if c.operation != "read":
            continue
        ceiling = by.get(("ceiling", c.backend, c.clients))
        if ceiling and min(ceiling.round_rps) > 0:
            # Median of the per-round ratios: each round's read ran right after its ceiling.
            ratios = [100 * r / top for r, top in zip(c.round_rps, ceiling.round_rps, strict=True)]
            pct = sorted(ratios)[(len(ratios) - 1) // 2]  # the lower middle one for an even count
            mark = "PASS" if pct >= READ_TARGET else "FAIL"
            if len(ratios) == 1:
                figure = f"{c.rps:.0f} / {ceiling.rps:.0f} req/s = {pct:.1f} %"
            else:
                rounds = ", ".join(f"{x:.0f}" for x in ratios)
                figure = f"median of the rounds' ratios {pct:.1f} % (round by round: {rounds} %)"
            out.append(f"read/ceiling {c.backend} c={c.clients}: {figure} (target >= {READ_TARGET:.0f} %) {mark}")
    for backend in sorted({c.backend for c in cells}):
        low, high = by.get(("create", backend, 1)), by.get(("create", backend, 32))
        if low and high and low.rps > 0:
            ratio = high.rps / low.rps
            target = (
                " (target >= 10x) " + ("PASS" if ratio >= GROUP_COMMIT_TARGET else "FAIL")
                if backend == "sqlite"
                else " (no target)"
            )
            out.append(f"create c=32 / c=1 {backend}: {high.rps:.0f} / {low.rps:.0f} req/s = {ratio:.1f}x{target}")
    errors = sum(c.errors for c in cells)
    out.append(
        f"errors (non-2xx, socket, timeout) over all cells: {errors} (target 0) {'PASS' if errors == 0 else 'FAIL'}"
    )
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pg-url", help="PostgreSQL admin URL on loopback (a scratch database is made and dropped)")
    parser.add_argument("--duration", type=float, default=10, help="seconds per measured cell (default 10)")
    parser.add_argument("--warmup", type=float, default=1, help="unmeasured seconds before each cell (0 = none)")
    parser.add_argument("--clients", default="1,8,32", help="comma-separated connection counts")
    parser.add_argument("--seed", type=int, default=1000, help="patients created before measuring")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="measure every cell this many times, interleaved; the table shows the median round (default 1)",
    )
    parser.add_argument("--json-out", type=Path, help="also write every cell (with wrk's raw figures) here")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--rev", help="serve this git commit (git archive) instead of the working tree")
    source.add_argument("--tree", type=Path, help="serve the fhir_server package found in this folder")
    opts = parser.parse_args(argv)
    opts.clients = [int(c) for c in opts.clients.split(",") if c.strip()]
    if not opts.clients or min(opts.clients) < 1 or opts.duration <= 0 or opts.seed < 1 or opts.rounds < 1:
        parser.error("clients, duration, seed and rounds must be positive")
    if opts.pg_url and make_url(opts.pg_url).host not in LOOPBACK:
        parser.error(f"--pg-url must point at a loopback server, not {make_url(opts.pg_url).host}")
    return opts


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    wrk = ensure_wrk()
    cells: list[Cell] = []
    with tempfile.TemporaryDirectory(prefix="fhir-bench-") as tmp:
        work = Path(tmp)
        opts.tree, source = source_tree(opts.rev, work, opts.tree)
        print(f"server code: {source}", flush=True)
        try:
            cells += bench_backend(wrk, "sqlite", f"sqlite:///{work / 'bench.db'}", opts, work)
            if opts.pg_url:
                with pg_database(opts.pg_url) as url:
                    cells += bench_backend(wrk, "postgresql", url, opts, work)
        finally:
            for log in work.glob("server-*.log"):
                text = log.read_text(errors="replace").strip()
                if "Traceback" in text or "ERROR" in text:
                    print(f"--- {log.name} (last lines) ---\n{text[-2000:]}", file=sys.stderr)
    print(
        f"\nFHIR CRUD benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, "
        f"{opts.duration:g} s per cell x {opts.rounds} round(s), wrk -c N -t min(N,2), {opts.seed} seeded patients, "
        f"server code: {source}\n"
    )
    print(table(cells))
    print()
    for line in verdicts(cells):
        print(line)
    if opts.json_out:
        opts.json_out.write_text(json.dumps([asdict(c) for c in cells], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
