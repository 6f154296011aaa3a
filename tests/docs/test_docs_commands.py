"""Every shell example of the documentation runs, in order, and answers what its text says.

https://hl7.org/fhir/R4/http.html

A real server (`python -m fhir_server serve`, this tree) on a free loopback port and a fresh
SQLite database; the documents' base URL `http://127.0.0.1:8080` (or `localhost:8080`) is
replaced by that server's, and `.venv/bin/` by the folder of the Python running the tests. Each
command runs with bash from the repository root; `curl` is a shell function that records every
answer's status, headers and body, so the checks written in the docs (see doc_commands.py and
docs/contributing.md) can be verified. All failures are reported together.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.docs.doc_commands import Check, Command, doc_files, extract

ROOT = Path(__file__).resolve().parents[2]
DOC_PORTS = ("http://127.0.0.1:8080", "http://localhost:8080")
COMMAND_TIMEOUT = 30

# Records each answer (status, headers, body) and still prints what curl would print, so `$(curl
# ...)` and pipes work as in a reader's shell. -i is taken out and its headers printed from -D.
CURL_SHIM = r"""
curl() {
  local args=() a include=0
  for a in "$@"; do
    case "$a" in
      -i|--include) include=1 ;;
      -si|-is) include=1; args+=(-s) ;;
      *) args+=("$a") ;;
    esac
  done
  local n=$(( $(cat "$DOCTEST_DIR/count" 2>/dev/null || echo 0) + 1 ))
  echo "$n" > "$DOCTEST_DIR/count"
  command curl "${args[@]}" -D "$DOCTEST_DIR/headers.$n" -w '\n@@DOCTEST@@%{http_code}' > "$DOCTEST_DIR/raw.$n"
  local rc=$? raw
  raw=$(cat "$DOCTEST_DIR/raw.$n")
  echo "${raw##*@@DOCTEST@@}" >> "$DOCTEST_DIR/status"
  raw="${raw%@@DOCTEST@@*}"
  raw="${raw%$'\n'}"
  printf '%s' "$raw" > "$DOCTEST_DIR/body.$n"
  if [ "$include" = 1 ]; then cat "$DOCTEST_DIR/headers.$n"; fi
  if [ -n "$raw" ]; then printf '%s\n' "$raw"; fi
  return $rc
}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    """(root URL, environment for the commands): a server of this tree on a fresh database."""
    yield from _serve(tmp_path_factory.mktemp("docs"), auth="off")  # the API examples, without tokens


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    """The same with authentication on, for the blocks marked `docs-test: auth=on`."""
    yield from _serve(tmp_path_factory.mktemp("docs-auth"), auth="on")


def _serve(work: Path, auth: str) -> Iterator[tuple[str, dict[str, str]]]:
    port = _free_port()
    env = {
        **os.environ,
        "FHIR_DATABASE_URL": f"sqlite:///{work / 'fhir.db'}",
        "FHIR_AUTH": auth,
        "FHIR_BASE_URL": "",
        "PYTHONPATH": str(ROOT),
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
    }
    log = (work / "server.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "fhir_server", "serve", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/fhir/metadata?_summary=true", timeout=5).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((work / "server.log").read_text()) from None
                time.sleep(0.2)
        yield url, env
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _lookup(body: Any, path: str) -> Any:
    node = body
    for part in path.split("."):
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return _MISSING
    return node


_MISSING = object()


def _text(value: Any) -> str:
    if value is _MISSING:
        return "<missing>"
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _check(check: Check, body: Any, headers: dict[str, str]) -> str | None:
    if check.path.startswith("@"):
        got = headers.get(check.path[1:].lower(), "<missing>")
    else:
        got = _text(_lookup(body, check.path))
    if check.op == "=":
        ok = got == check.value
    else:
        ok = (check.value in got) == (check.op == "~")
    return None if ok else f"{check.path}{check.op}{check.value} expected, got {got[:200]}"


def _headers(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in path.read_text(errors="replace").splitlines():
        name, sep, value = line.partition(":")
        if sep:
            out[name.strip().lower()] = value.strip()
    return out


def _localise(text: str, url: str) -> str:
    for documented in DOC_PORTS:
        text = text.replace(documented, url)
    return text.replace(".venv/bin/", f"{Path(sys.executable).parent}/")


def _run(command: Command, url: str, env: dict[str, str], scratch: Path, assigns: str | None) -> list[str]:
    """The ways `command` differs from what its document says (empty: it behaves as written)."""
    for f in scratch.iterdir():
        f.unlink()
    text = _localise(command.text, url)
    keep = f'\nprintf %s "${{{assigns}}}" > "$DOCTEST_DIR/assigned"' if assigns else ""
    script = f"{CURL_SHIM}\n{env.get('DOCTEST_ASSIGNMENTS', '')}\n{text}{keep}\n"
    # A session of its own: a command that starts a server (a missing skip marker) is ended whole.
    proc = subprocess.Popen(
        ["bash", "-c", script],
        cwd=ROOT,
        env={**env, "DOCTEST_DIR": str(scratch)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=COMMAND_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return [f"still running after {COMMAND_TIMEOUT} s (a server? mark the block docs-test: skip)"]
    problems = []
    if proc.returncode != command.exit_code:
        problems.append(f"exit {proc.returncode}, expected {command.exit_code}: {(stderr or stdout)[-400:]}")
    status_file = scratch / "status"
    statuses = [int(s) for s in status_file.read_text().split()] if status_file.exists() else []
    for status in statuses:
        if (command.status is None and not 200 <= status < 300) or (command.status and status != command.status):
            last = (scratch / f"body.{len(statuses)}").read_text(errors="replace")[:300]
            problems.append(f"HTTP {status}, expected {command.status or '2xx'}: {last}")
            break
    if command.status is not None and not statuses:
        problems.append(f"no HTTP answer, expected {command.status}")
    if command.checks and statuses:
        raw = (scratch / f"body.{len(statuses)}").read_bytes()
        try:
            body = json.loads(raw) if raw.strip() else None
        except ValueError:
            body = None
        headers = _headers(scratch / f"headers.{len(statuses)}")
        problems += [p for c in command.checks if (p := _check(c, body, headers))]
    return problems


def _assigned_name(command: Command) -> str | None:
    """`B=...`, `JOB=$(curl ...)`: the name, whose value is kept for the commands that follow."""
    head, sep, _ = command.text.partition("=")
    return head if sep and head.isidentifier() and "\n" not in command.text.split("=", 1)[0] else None


def test_every_documented_command_answers_as_written(
    server: tuple[str, dict[str, str]], auth_server: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    envs = {False: dict(server[1]), True: dict(auth_server[1])}
    urls = {False: server[0], True: auth_server[0]}
    assignments: list[str] = []
    failures: list[str] = []
    ran = 0
    started = time.monotonic()
    for doc in doc_files(ROOT):
        for command in extract(doc, ROOT):
            ran += 1
            name = _assigned_name(command)
            env = envs[command.auth]
            problems = _run(command, urls[command.auth], env, tmp_path, name)
            failures += [f"{command.source}: {p}\n    {command.text.splitlines()[0][:160]}" for p in problems]
            if name:
                value = (tmp_path / "assigned").read_text() if (tmp_path / "assigned").exists() else ""
                assignments.append(f"{name}={shlex.quote(value)}")
                for e in envs.values():
                    e["DOCTEST_ASSIGNMENTS"] = "\n".join(assignments)
    assert ran > 50, f"only {ran} commands found in the docs"
    assert not failures, f"{len(failures)} documented commands do not do what the docs say:\n" + "\n".join(failures)
    assert time.monotonic() - started < 90
