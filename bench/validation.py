"""Benchmark: profile validation time per resource (p50/p95) for the coordination profiles and INS patient.

https://hl7.org/fhir/R4/validation.html

Validates each valid example of `tests/profiles/data/<profile>/` against its profile, many times, after
one warm-up run that compiles the validator (compile time is printed apart). Target: p95 <= 20 ms.
Wall-clock and CPU (thread) time are both printed: on a loaded machine the wall p95 mostly
measures waiting for a core, the CPU p95 what validation itself costs.

    .venv/bin/python bench/validation.py [--rounds 200]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from fhir_server.fhir.json import loads
from fhir_server.validation.conformance import ConformanceRegistry

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "profiles" / "data"
PROFILES = ["coord-careplan", "coord-servicerequest", "coord-task", "coord-consent", "coord-provenance",
            "fr-core-patient-ins"]  # fmt: skip


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200, help="validations per example file")
    args = parser.parse_args()
    started = time.perf_counter()
    registry = ConformanceRegistry()
    print(f"registry loaded in {(time.perf_counter() - started) * 1000:.0f} ms")
    print(f"{'profile':<24}{'files':>6}{'compile ms':>12}{'p50 ms':>9}{'p95 ms':>9}{'cpu p50':>9}{'cpu p95':>9}"
          f"{'errors':>8}")
    for profile_id in PROFILES:
        url = next(sd["url"] for sd in registry.all("StructureDefinition") if sd.get("id") == profile_id)
        files = sorted((DATA / profile_id).glob("valid-*.json"))
        resources = [loads(f.read_bytes()) for f in files]
        if not resources:
            print(f"{profile_id:<24}{0:>6}  (no example)")
            continue
        t0 = time.perf_counter()
        errors = sum(1 for r in resources for i in registry.validate(r, [url]) if i["severity"] == "error")
        compile_ms = (time.perf_counter() - t0) * 1000
        wall, cpu = [], []
        for _ in range(args.rounds):
            for resource in resources:
                t, c = time.perf_counter(), time.thread_time()
                registry.validate(resource, [url])
                cpu.append((time.thread_time() - c) * 1000)
                wall.append((time.perf_counter() - t) * 1000)
        print(f"{profile_id:<24}{len(files):>6}{compile_ms:>12.1f}{statistics.median(wall):>9.2f}"
              f"{_percentile(wall, 0.95):>9.2f}{statistics.median(cpu):>9.2f}{_percentile(cpu, 0.95):>9.2f}{errors:>8}")


if __name__ == "__main__":
    main()
