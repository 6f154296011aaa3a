"""Which PostgreSQL the tests use: one decision per test session, made in one place.

1. `FHIR_TEST_PG_URL` (default `postgresql+psycopg://fhir:fhir@127.0.0.1:5432/fhir`) when a
   server answers there (CI's `.ci/run` starts one and sets it).
2. Otherwise, when the PostgreSQL binaries are installed (`initdb`, `pg_ctl`; searched in
   `FHIR_TEST_PG_BINDIR`, then `pg_config --bindir`, `/usr/lib/postgresql/*/bin`, the PATH), a
   throwaway cluster in a temporary folder, on 127.0.0.1 and a free port, stopped and removed when
   the session ends. PostgreSQL refuses to run as root: as root, the cluster runs as the
   `postgres` user (or `nobody`) through `runuser`. `FHIR_TEST_PG_BINDIR=/nonexistent` hides the
   binaries, to see the SQLite-only path.
3. Otherwise None: the PostgreSQL leg is skipped, with one banner at the start and at the end of
   the run; under `CI=true` the session fails instead.
"""

from __future__ import annotations

import atexit
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["BACKENDS", "IN_CI", "PgDecision", "banner", "current", "decide", "skip_reason"]

DEFAULT_URL = "postgresql+psycopg://fhir:fhir@127.0.0.1:5432/fhir"
# FHIR_TEST_BACKENDS=sqlite runs the SQLite leg alone, without asking for PostgreSQL at all.
BACKENDS = [b for b in os.environ.get("FHIR_TEST_BACKENDS", "sqlite,postgres").split(",") if b]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
_START_TIMEOUT_S = 30


@dataclass
class PgDecision:
    """The URL the PostgreSQL leg runs on (None: skipped) and what led to it, line by line."""

    url: str | None
    notes: list[str] = field(default_factory=list)


def _reachable(url: str) -> str | None:
    """None when a connection succeeds, else why not (one line)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    engine = create_engine(url, poolclass=NullPool, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return None
    except Exception as exc:  # noqa: BLE001 - any failure means "not usable"
        return f"{exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    finally:
        engine.dispose()


def _masked(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def find_bindir() -> Path | None:
    """The folder holding initdb and pg_ctl, or None."""
    override = os.environ.get("FHIR_TEST_PG_BINDIR")
    candidates: list[str] = []
    if override is not None:
        candidates = [override]
    else:
        if shutil.which("pg_config"):
            try:
                out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, timeout=10)
                candidates.append(out.stdout.strip())
            except (OSError, subprocess.SubprocessError):
                pass
        versions = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: _version(p), reverse=True)
        candidates += versions
        if shutil.which("initdb"):
            candidates.append(str(Path(shutil.which("initdb") or "").parent))
    for folder in candidates:
        path = Path(folder)
        if (path / "initdb").is_file() and (path / "pg_ctl").is_file():
            return path
    return None


def _version(path: str) -> tuple[int, ...]:
    part = Path(path).parent.name
    return tuple(int(p) for p in part.split(".") if p.isdigit())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ThrowawayCluster:
    """initdb + pg_ctl in a temporary folder; `stop()` (also run at exit) removes it all."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.user = _run_as_user()
        self.root = Path(tempfile.mkdtemp(prefix="fhir-test-pg-"))
        self.data = self.root / "data"
        self.port = 0
        if self.user is not None:
            os.chown(self.root, self.user.pw_uid, self.user.pw_gid)
        atexit.register(self.stop)

    def _cmd(self, *args: str) -> list[str]:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        return ["runuser", "-u", self.user.pw_name, "--", *cmd] if self.user is not None else cmd

    def start(self) -> str:
        subprocess.run(
            self._cmd("initdb", "-D", str(self.data), "-U", "fhir", "--auth=trust", "-E", "UTF8",
                      "--locale=C", "--no-sync"),
            check=True, capture_output=True, text=True, timeout=120,
        )
        last = ""
        for _ in range(3):  # the free port may be taken between the probe and the start
            self.port = _free_port()
            # Durability is worth nothing in a throwaway cluster; speed is.
            options = (f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.root} "
                       "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
            proc = subprocess.run(
                self._cmd("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-o", options,
                          "-w", "-t", str(_START_TIMEOUT_S), "start"),
                capture_output=True, text=True, timeout=_START_TIMEOUT_S + 10,
            )
            if proc.returncode == 0:
                return f"postgresql+psycopg://fhir@127.0.0.1:{self.port}/postgres"
            last = (proc.stderr or proc.stdout).strip()
            time.sleep(0.2)
        raise RuntimeError(f"pg_ctl start failed: {last}")

    def stop(self) -> None:
        if not self.root.exists():
            return
        if (self.data / "postmaster.pid").exists():
            subprocess.run(self._cmd("pg_ctl", "-D", str(self.data), "-m", "immediate", "stop"),
                           capture_output=True, timeout=60)
        shutil.rmtree(self.root, ignore_errors=True)


def _run_as_user() -> pwd.struct_passwd | None:
    """The user the cluster runs as when we are root (PostgreSQL refuses root), else None."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError("running as root and neither a 'postgres' nor a 'nobody' user exists")


_decision: PgDecision | None = None


def decide() -> PgDecision:
    """The PostgreSQL to test on (decided once per process)."""
    global _decision
    if _decision is None:
        _decision = _decide()
    return _decision


def current() -> PgDecision | None:
    """The decision when one was made in this process, else None (nothing asked for PostgreSQL)."""
    return _decision


def _decide() -> PgDecision:
    url = os.environ.get("FHIR_TEST_PG_URL") or DEFAULT_URL
    why = _reachable(url)
    if why is None:
        return PgDecision(url, [f"PostgreSQL tests on {_masked(url)}"])
    notes = [f"no PostgreSQL server at {_masked(url)} ({why})"]
    bindir = find_bindir()
    if bindir is None:
        where = os.environ.get("FHIR_TEST_PG_BINDIR") or "pg_config, /usr/lib/postgresql/*/bin, PATH"
        notes.append(f"no PostgreSQL binaries (initdb, pg_ctl) found in {where}")
        notes.append("install them (Debian: apt-get install postgresql) or set FHIR_TEST_PG_URL")
        return PgDecision(None, notes)
    cluster = ThrowawayCluster(bindir)
    try:
        started = cluster.start()
    except (OSError, subprocess.SubprocessError, RuntimeError) as exc:
        cluster.stop()
        detail = getattr(exc, "stderr", None) or str(exc)
        notes.append(f"could not start a throwaway cluster with {bindir}: {str(detail).strip()[:300]}")
        return PgDecision(None, notes)
    as_user = f" as {cluster.user.pw_name}" if cluster.user else ""
    notes.append(f"started a throwaway PostgreSQL cluster{as_user} from {bindir} in {cluster.root} "
                 f"(port {cluster.port}); removed at the end of the run")
    return PgDecision(started, notes)


def banner(decision: PgDecision) -> str:
    """One block of text saying what the PostgreSQL leg does (loud when it is skipped)."""
    if decision.url is not None:
        return "\n".join(decision.notes)
    bar = "!" * 78
    lines = [bar, *(f"!! {n}" for n in decision.notes)]
    lines.append("!! CI=true: the run stops, CI must test PostgreSQL" if IN_CI
                 else "!! the PostgreSQL tests are SKIPPED: SQLite only")
    lines.append(bar)
    return "\n".join(lines)


def skip_reason() -> str:
    """The reason a PostgreSQL test is skipped (the banner above and below says the same)."""
    return "PostgreSQL unavailable: see the banner at the start and at the end of the run"
