"""What `pip install .` and the Docker image install: the wheel carries the French profiles and
the R4 definitions, and a server run from it (far from any checkout) loads them.

The wheel is built the way the Dockerfile's build stage does it, from only the paths that stage
copies, so a file the image would miss fails here too (no Docker daemon needed).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _build_stage_copies() -> list[str]:
    """The sources the Dockerfile's build stage copies (`COPY a b ./` lines before the second FROM)."""
    stage = ROOT.joinpath("Dockerfile").read_text().split("\nFROM ")[1]
    return [src for line in re.findall(r"^COPY (?!--)(.+)$", stage, re.M) for src in line.split()[:-1]]


def test_the_image_context_leaves_out_the_venv_and_data() -> None:
    ignored = ROOT.joinpath(".dockerignore").read_text().split()
    assert {".venv", "data", ".git"} <= set(ignored)
    dockerfile = ROOT.joinpath("Dockerfile").read_text()
    assert 'VOLUME ["/data"]' in dockerfile and "COPY examples /app/examples" in dockerfile
    assert "USER fhir" in dockerfile


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("context")
    for name in _build_stage_copies():
        origin = ROOT / name
        if origin.is_dir():
            shutil.copytree(origin, src / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(origin, src / name)
    out = tmp_path_factory.mktemp("wheel")
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(src)],
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
