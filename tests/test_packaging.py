"""What `pip install .` installs: the wheel carries the French profiles and the R4 definitions,
and a server run from it (far from any checkout) loads them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)],
        capture_output=True, text=True, timeout=600,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    (found,) = out.glob("fhir_server-*.whl")
    return found


@pytest.mark.slow
def test_the_wheel_carries_profiles_and_definitions(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for path in sorted((ROOT / "profiles").glob("*.json")):
        assert f"fhir_server/profiles/{path.name}" in names
    for path in sorted((ROOT / "fhir_server" / "definitions" / "r4").iterdir()):
        assert f"fhir_server/definitions/r4/{path.name}" in names


@pytest.mark.slow
def test_a_server_installed_from_the_wheel_loads_the_shipped_profiles(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    bad = json.loads((ROOT / "examples" / "pathway" / "Patient-patient-durand.json").read_text())
    bad["identifier"][0]["value"] = bad["identifier"][0]["value"][:-2] + "00"
    folder = tmp_path / "load"
    folder.mkdir()
    (folder / "Patient-bad.json").write_text(json.dumps(bad))
    env = {k: v for k, v in os.environ.items() if not k.startswith("FHIR_")}
    env.update(PYTHONPATH=str(site), FHIR_DATABASE_URL=f"sqlite:///{tmp_path / 'w.db'}")
    probe = ("import fhir_server, sys; from fhir_server.validation.conformance import DEFAULT_PROFILES_DIR; "
             "print(fhir_server.__file__); print(DEFAULT_PROFILES_DIR)")
    where = subprocess.run([sys.executable, "-c", probe], env=env, cwd=tmp_path, capture_output=True, text=True,
                           timeout=60, check=True).stdout.split()
    assert all(line.startswith(str(site)) for line in where), where
    out = subprocess.run([sys.executable, "-m", "fhir_server", "load", str(folder)], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "Patient.identifier[0]" in out.stdout  # the INS key is checked: fr-core-patient-ins is known
    assert "12 search parameters" in out.stderr and "1 implementation guides" in out.stderr
