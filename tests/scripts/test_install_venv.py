"""`scripts/install-venv.sh` (the Makefile's `install`): `make serve` and `make test` started at
the same moment on a fresh clone create the virtualenv once, one after the other, not twice at once.

A stand-in `python3` records what it is asked to do (create a venv, run pip) and takes its time,
so two installs without the lock would overlap.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "install-venv.sh"

FAKE_PYTHON = """#!/bin/sh
if [ "$1" = "-m" ] && [ "$2" = "venv" ]; then
  echo "venv $$" >> "$FAKE_LOG"; sleep 0.5; mkdir -p "$3/bin"; cp "$0" "$3/bin/python"; exit 0
fi
if [ "$1" = "-m" ] && [ "$2" = "pip" ] && [ "$3" = "--version" ]; then exit 0; fi
if [ "$1" = "-m" ] && [ "$2" = "pip" ]; then
  echo "pip-start $$" >> "$FAKE_LOG"; sleep 0.5; echo "pip-end $$" >> "$FAKE_LOG"; exit 0
fi
exit 3
"""


@pytest.mark.skipif(shutil.which("flock") is None, reason="flock (util-linux) is not installed")
def test_two_installs_at_once_run_one_after_the_other(tmp_path: Path) -> None:
    fake = tmp_path / "python3"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    (tmp_path / "pyproject.toml").write_text("")
    log = tmp_path / "log"
    env = {**os.environ, "PYTHON": str(fake), "VENV": ".venv", "FAKE_LOG": str(log)}
    env.pop("FHIR_VENV_LOCKED", None)
    procs = [subprocess.Popen(["sh", str(SCRIPT)], cwd=tmp_path, env=env) for _ in range(2)]
    assert [p.wait(timeout=60) for p in procs] == [0, 0]
    lines = log.read_text().split()
    events = lines[0::2]
    assert events.count("venv") == 1, lines  # the second install found the first one's venv
    assert events == ["venv", "pip-start", "pip-end", "pip-start", "pip-end"], lines
    assert (tmp_path / ".venv" / ".installed").exists()
    # Up to date: a third run does nothing.
    assert subprocess.run(["sh", str(SCRIPT)], cwd=tmp_path, env=env, timeout=60).returncode == 0
    assert log.read_text().split()[0::2] == events
