"""The auth commands for real: first start prints a working token command; clients and keys."""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "FHIR_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}", "FHIR_LOAD_PROFILES": "false",
            **extra}


def _cli(tmp_path: Path, *args: str, check: bool = True, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fhir_server", *args], env=_env(tmp_path, **env),
                          capture_output=True, text=True, timeout=120, check=check)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str, token: str | None = None) -> tuple[int, Any]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _post_form(url: str, form: dict[str, str], basic: tuple[str, str] | None = None) -> tuple[int, Any]:
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if basic:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{basic[0]}:{basic[1]}".encode()).decode()
    req = urllib.request.Request(url, data=urllib.parse.urlencode(form).encode(), headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_serve_requires_tokens_and_prints_how_to_get_one(tmp_path: Path) -> None:
    port = _free_port()
    base = f"http://127.0.0.1:{port}/fhir"
    proc = subprocess.Popen([sys.executable, "-m", "fhir_server", "serve", "--port", str(port)],
                            env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(6)]
        text = "".join(lines)
        assert base in lines[0] and f"TOKEN=$({sys.executable} -m fhir_server token --client admin)" in text
        secret = re.search(r"-u 'admin:([^']+)'", text)
        assert secret is not None
        deadline = time.monotonic() + 30
        while True:
            try:
                status, cs = _get(f"{base}/metadata")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        assert status == 200 and cs["rest"][0]["security"]["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"
        status, outcome = _get(f"{base}/Patient")
        assert status == 401 and outcome["resourceType"] == "OperationOutcome"
        token = _cli(tmp_path, "token", "--client", "admin", "--base-url", base).stdout.strip()
        assert _get(f"{base}/Patient", token)[0] == 200
        status, body = _post_form(f"http://127.0.0.1:{port}/auth/token",
                                  {"grant_type": "client_credentials", "scope": "system/*.cruds"},
                                  ("admin", secret.group(1)))
        assert status == 200, body
        assert _get(f"{base}/Patient", body["access_token"])[0] == 200

        # A practice software registers with its own key pair and gets a token with an assertion.
        _cli(tmp_path, "client-keys", "--out", str(tmp_path / "gp"), "--kid", "gp-1")
        out = _cli(tmp_path, "clients", "add", "GP software", "--id", "gp", "--jwks", str(tmp_path / "gp.jwks.json"),
                   "--scopes", "system/*.rs", "--acts-for", "Organization/cabinet-1").stdout
        assert "client_id: gp" in out
        assertion = _cli(tmp_path, "assertion", "--client", "gp", "--key", str(tmp_path / "gp.private.pem"),
                         "--kid", "gp-1", "--token-url", f"http://127.0.0.1:{port}/auth/token").stdout.strip()
        status, body = _post_form(f"http://127.0.0.1:{port}/auth/token", {
            "grant_type": "client_credentials", "scope": "system/Patient.rs",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion})
        assert status == 200, body
        assert _get(f"{base}/Patient", body["access_token"])[0] == 200
        listed = _cli(tmp_path, "clients", "list").stdout
        assert "gp\tactive\tprivate_key_jwt" in listed and "admin\tadmin" in listed
        _cli(tmp_path, "clients", "revoke", "gp")
        time.sleep(5.5)  # another process revoked it: the server polls revocations every 5 s
        assert _get(f"{base}/Patient", body["access_token"])[0] == 401
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        if proc.stdout is not None:
            proc.stdout.close()
    # A second start creates no second administrator and shows no secret.
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "fhir_server", "serve", "--port", str(port)],
                            env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        text = "".join(proc.stdout.readline() for _ in range(4))
        assert "token --client admin" in text and "admin:" not in text
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        proc.stdout.close() if proc.stdout else None


def test_cli_refuses_bad_registrations(tmp_path: Path) -> None:
    out = _cli(tmp_path, "clients", "add", "x", "--scopes", "system/*.rs", check=False)
    assert out.returncode == 2 and "JWKS" in out.stderr
    out = _cli(tmp_path, "clients", "add", "x", "--auth", "client_secret_basic", "--scopes", "doctor/*.rs",
               check=False)
    assert out.returncode == 2
    out = _cli(tmp_path, "users", "add", "bob", "--fhir-user", "Practitioner/p1", FHIR_USER_PASSWORD="long enough")
    assert "bob -> Practitioner/p1" in out.stdout
    for _ in range(2):
        assert "new signing key" in _cli(tmp_path, "keys", "rotate").stdout
    listed = _cli(tmp_path, "keys", "list").stdout
    assert listed.count("\tsigning\t") == 1 and listed.count("\tverifying\t") == 1


def test_auth_off_is_loud(tmp_path: Path) -> None:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "fhir_server", "serve", "--port", str(port)],
                            env=_env(tmp_path, FHIR_AUTH="off"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        assert proc.stdout is not None
        text = "".join(proc.stdout.readline() for _ in range(2))
        assert "FHIR_AUTH=off" in text and "NO authentication" in text
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        if proc.stdout is not None:
            proc.stdout.close()
