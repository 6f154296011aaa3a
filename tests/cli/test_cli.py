"""The console script: `fhir-server db upgrade` and `fhir-server serve` for real."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import orjson


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "FHIR_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}"}


def test_db_upgrade_creates_the_schema(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "fhir_server", "db", "upgrade"], env=_env(tmp_path), capture_output=True, text=True,
        timeout=60, check=True,
    )
    assert "database at head" in out.stdout
    assert (tmp_path / "cli.db").exists()


def test_serve_prints_url_and_answers_metadata(tmp_path: Path) -> None:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "fhir_server", "serve", "--port", str(port)],
        env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert f"http://127.0.0.1:{port}/fhir" in first
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/fhir/metadata", timeout=2) as r:
                    cs = orjson.loads(r.read())
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        assert cs["resourceType"] == "CapabilityStatement"
        assert cs["implementation"]["url"] == f"http://127.0.0.1:{port}/fhir"
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        if proc.stdout is not None:
            proc.stdout.close()


def test_load_stores_the_example_pathway_once(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "fhir_server", "load", "examples/pathway"]
    env = {**_env(tmp_path), "FHIR_LOAD_PROFILES": "false"}
    first = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, check=True)
    assert "30 created" in first.stdout
    second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, check=True)
    assert "30 unchanged" in second.stdout


def test_load_refuses_an_invalid_folder_and_writes_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "bad"
    folder.mkdir()
    good = {"resourceType": "Patient", "id": "ok"}
    bad = {"resourceType": "Patient", "id": "bad", "birthDate": "yesterday"}
    (folder / "a.json").write_bytes(orjson.dumps(good))
    (folder / "b.json").write_bytes(orjson.dumps(bad))
    env = {**_env(tmp_path), "FHIR_LOAD_PROFILES": "false"}
    out = subprocess.run([sys.executable, "-m", "fhir_server", "load", str(folder)], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1
    assert "Patient/bad" in out.stdout and "birthDate" in out.stdout
    again = subprocess.run([sys.executable, "-m", "fhir_server", "load", str(folder / "a.json")], env=env,
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 2
