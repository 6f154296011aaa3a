"""The console script's surface: --version, help and defaults, configuration errors, db actions,
masked database URLs, the access log and start-up refusals."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from fhir_server import __version__

ROOT = Path(__file__).resolve().parents[2]
INS = "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-patient-ins"


def _run(args: list[str], env: dict[str, str], cwd: Path | None = None, timeout: int = 120) -> Any:
    # PYTHONPATH: the checkout under test, whatever the working directory.
    env = {**env, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "fhir_server", *args], env=env, cwd=cwd or ROOT,
                          capture_output=True, text=True, timeout=timeout)


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FHIR_") or k.startswith("FHIR_TEST")}
    return {**env, "FHIR_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}", **extra}


def test_version(tmp_path: Path) -> None:
    out = _run(["--version"], _env(tmp_path))
    assert out.returncode == 0
    assert out.stdout.strip() == f"fhir-server {__version__} (FHIR 4.0.1)"


@pytest.mark.parametrize("command", [[], ["serve"], ["db"], ["db", "upgrade"], ["db", "current"],
                                     ["db", "downgrade"], ["load"]])
def test_every_command_has_help_and_every_option_its_default(tmp_path: Path, command: list[str]) -> None:
    out = _run([*command, "--help"], _env(tmp_path))
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stdout.split())
    assert "usage: fhir-server" in text
    if command == ["serve"]:
        assert "(default: 127.0.0.1)" in text and "(default: 8080)" in text and "(default: on" in text
    if command == ["load"]:
        assert "writing to the database FHIR_DATABASE_URL directly" in text
    if command == ["db"]:
        assert all(action in text for action in ("upgrade", "current", "downgrade"))


def test_a_wrong_setting_stops_with_one_line_and_status_2(tmp_path: Path) -> None:
    out = _run(["serve"], _env(tmp_path, FHIR_LOG_LEVEL="verbose"))
    assert out.returncode == 2
    assert out.stderr.strip() == "error: FHIR_LOG_LEVEL='verbose' is not one of debug, info, warning, error"
    out = _run(["db", "upgrade"], _env(tmp_path, FHIR_PROFILES_DIR=str(tmp_path / "missing")))
    assert out.returncode == 2
    assert "error: FHIR_PROFILES_DIR=" in out.stderr and "is not a folder" in out.stderr
    assert "Traceback" not in out.stderr


def test_db_current_upgrade_and_downgrade(tmp_path: Path) -> None:
    env = _env(tmp_path)
    assert "(empty database)" in _run(["db", "current"], env).stdout
    assert _run(["db", "upgrade"], env).returncode == 0
    assert "(at head)" in _run(["db", "current"], env).stdout
    down = _run(["db", "downgrade", "-1"], env)
    assert down.returncode == 0 and "downgraded to revision" in down.stdout
    assert "run `fhir-server db upgrade`" in _run(["db", "current"], env).stdout
    assert "base" in _run(["db", "downgrade", "base"], env).stdout


def test_postgres_urls_as_typed_work_and_the_password_is_masked(
    tmp_path: Path, pg_database: str | None
) -> None:
    if pg_database is None:
        pytest.skip("PostgreSQL unavailable: see the banner")
    url = make_url(pg_database)
    typed = url.set(drivername="postgres").render_as_string(hide_password=False)
    out = _run(["db", "upgrade"], _env(tmp_path, FHIR_DATABASE_URL=typed))
    assert out.returncode == 0, out.stderr
    assert "database at head: postgresql+psycopg://" in out.stdout
    if url.password:
        assert f":{url.password}@" not in out.stdout + out.stderr
        assert ":***@" in out.stdout


def _bad_ins_folder(tmp_path: Path) -> Path:
    patient = json.loads((ROOT / "examples" / "pathway" / "Patient-patient-durand.json").read_text())
    assert INS in patient["meta"]["profile"]
    bad = copy.deepcopy(patient)
    value = bad["identifier"][0]["value"]
    bad["identifier"][0]["value"] = value[:-2] + ("00" if value[-2:] != "00" else "01")
    folder = tmp_path / "bad-ins"
    folder.mkdir()
    (folder / "Patient-bad.json").write_text(json.dumps(bad))
    return folder


def test_load_refuses_a_bad_ins_with_the_shipped_profiles_from_any_folder(tmp_path: Path) -> None:
    # No FHIR_PROFILES_DIR and a working directory without profiles/: the shipped ones apply.
    out = _run(["load", str(_bad_ins_folder(tmp_path))], _env(tmp_path, FHIR_LOAD_PROFILES="false"), cwd=tmp_path)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "error:" in out.stdout and "Patient.identifier[0]" in out.stdout
    assert "12 search parameters" in out.stderr  # what was loaded, logged at start


def test_a_shipped_search_parameter_that_cannot_be_registered_stops_the_start(tmp_path: Path) -> None:
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    broken = {"resourceType": "SearchParameter", "id": "broken", "url": "http://example.org/sp/broken",
              "name": "broken", "status": "active", "code": "broken", "base": ["Patient"], "type": "string",
              "expression": "Practitioner.name", "description": "names another type than its base"}
    (profiles / "SearchParameter-broken.json").write_text(json.dumps(broken))
    out = _run(["db", "upgrade"], _env(tmp_path, FHIR_PROFILES_DIR=str(profiles)))
    assert out.returncode == 0  # the schema does not need the profiles
    out = _run(["load", str(tmp_path)], _env(tmp_path, FHIR_PROFILES_DIR=str(profiles)))
    assert out.returncode == 2
    assert out.stderr.startswith("error: a SearchParameter of the profiles folder cannot be registered")
    assert "SearchParameter/broken" in out.stderr and "Traceback" not in out.stderr


def test_serve_logs_one_line_per_request_without_query_values(tmp_path: Path) -> None:
    from tests.cli.test_cli import _free_port

    port = _free_port()
    env = {**_env(tmp_path, FHIR_AUTH="off", FHIR_LOAD_PROFILES="false"), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "fhir_server", "serve", "--port", str(port)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        base = f"http://127.0.0.1:{port}/fhir"
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{base}/metadata", timeout=2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        request = urllib.request.Request(f"{base}/Patient?family=Secret&_count=1", headers={"X-Request-Id": "r-42"})
        with urllib.request.urlopen(request, timeout=5) as r:
            assert r.headers["X-Request-Id"] == "r-42"
    finally:
        proc.terminate()
        _out, err = proc.communicate(timeout=20)
    lines = [line for line in err.splitlines() if "fhir_server.access" in line]
    assert any(line.endswith("GET /fhir/Patient?family=***&_count=*** 200 " + line.split(" 200 ")[-1])
               and line.endswith("id=r-42") for line in lines), lines
    assert "Secret" not in err
    assert any("GET /fhir/metadata 200" in line for line in lines)
