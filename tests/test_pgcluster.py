"""The PostgreSQL decision of the test suite (`tests/pgcluster.py`): server, throwaway cluster, or none."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import pgcluster

ROOT = Path(__file__).resolve().parents[1]
CLOSED = "postgresql+psycopg://fhir:fhir@127.0.0.1:1/fhir"


def test_binaries_can_be_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FHIR_TEST_PG_BINDIR", "/nonexistent")
    assert pgcluster.find_bindir() is None


def test_no_server_and_no_binaries_gives_none_with_the_reasons(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FHIR_TEST_PG_URL", CLOSED)
    monkeypatch.setenv("FHIR_TEST_PG_BINDIR", "/nonexistent")
    monkeypatch.setattr(pgcluster, "IN_CI", False)  # the banner of a developer's run (CI runs this test too)
    decision = pgcluster._decide()
    assert decision.url is None
    text = pgcluster.banner(decision)
    assert "fhir:***@127.0.0.1:1/fhir" in text and "fhir:fhir@" not in text
    assert "no PostgreSQL binaries" in text and "SKIPPED" in text
    monkeypatch.setattr(pgcluster, "IN_CI", True)
    assert "CI must test PostgreSQL" in pgcluster.banner(decision)


@pytest.mark.skipif(pgcluster.find_bindir() is None, reason="no PostgreSQL binaries installed")
def test_binaries_without_a_server_start_a_throwaway_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    from sqlalchemy import create_engine, text

    monkeypatch.setenv("FHIR_TEST_PG_URL", CLOSED)
    bindir = pgcluster.find_bindir()
    assert bindir is not None
    cluster = pgcluster.ThrowawayCluster(bindir)
    try:
        url = cluster.start()
        engine = create_engine(url)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT current_setting('fsync')")).scalar() == "off"
            conn.execute(text("CREATE TABLE t (x int)"))
        engine.dispose()
    finally:
        cluster.stop()
    assert not cluster.root.exists()


def _pytest_run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # One PostgreSQL-parametrised test file is enough to see the decision at work.
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/search/test_paging.py"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )


def test_without_postgresql_the_suite_passes_on_sqlite_with_one_banner() -> None:
    env = {**os.environ, "FHIR_TEST_PG_URL": CLOSED, "FHIR_TEST_PG_BINDIR": "/nonexistent", "CI": ""}
    out = _pytest_run(env)
    assert out.returncode == 0, out.stdout[-2000:]
    assert "the PostgreSQL tests are SKIPPED" in out.stdout
    assert "see the banner" in out.stdout
    assert " passed" in out.stdout and " skipped" in out.stdout


def test_without_postgresql_ci_fails() -> None:
    env = {**os.environ, "FHIR_TEST_PG_URL": CLOSED, "FHIR_TEST_PG_BINDIR": "/nonexistent", "CI": "true"}
    out = _pytest_run(env)
    assert out.returncode != 0
    assert "CI must run the suite on PostgreSQL" in out.stdout + out.stderr
