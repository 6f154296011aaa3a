"""A tiny OpenID provider on 127.0.0.1 (real HTTP, its own keys): authorize, token and JWKS endpoints.

Its authorize endpoint logs the professional in at once (as PSC does after the e-CPS step) and
sends the browser back with a code; its token endpoint returns an id_token carrying the nonce.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from joserfc import jwt

ISSUER = "https://auth.bas.psc.test/auth/realms/esante-wallet"


class FakePsc:
    def __init__(self, key: Any, client_id: str, client_secret: str, idnatps: str) -> None:
        self.key, self.client_id, self.client_secret, self.idnatps = key, client_id, client_secret, idnatps
        self.codes: dict[str, str] = {}
        self.url = ""


@contextmanager
def serve_psc(psc: FakePsc) -> Iterator[FakePsc]:
    class Handler(BaseHTTPRequestHandler):
        def _json(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802
            url = urlsplit(self.path)
            if url.path == "/certs":
                self._json(200, {"keys": [psc.key.as_dict(private=False)]})
                return
            q = {k: v[0] for k, v in parse_qs(url.query).items()}
            assert q["client_id"] == psc.client_id and q["response_type"] == "code"
            code = secrets.token_urlsafe(12)
            psc.codes[code] = q["nonce"]
            self.send_response(302)
            self.send_header("Location", q["redirect_uri"] + "?" + urlencode({"code": code, "state": q["state"]}))
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_POST(self) -> None:  # noqa: N802
            body = parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode())
            expected = "Basic " + base64.b64encode(f"{psc.client_id}:{psc.client_secret}".encode()).decode()
            code = body.get("code", [""])[0]
            if self.headers.get("Authorization") != expected or code not in psc.codes:
                self._json(400, {"error": "invalid_grant"})
                return
            now = int(time.time())
            claims = {"iss": ISSUER, "aud": psc.client_id, "sub": f"f:abc:{psc.idnatps}", "iat": now, "exp": now + 300,
                      "nonce": psc.codes.pop(code), "SubjectNameID": psc.idnatps, "acr": "eidas1"}
            token = jwt.encode({"alg": "RS256", "kid": psc.key.kid}, claims, psc.key)
            self._json(200, {"access_token": "psc-at", "token_type": "Bearer", "id_token": token})

        def log_message(self, *_args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    psc.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield psc
    finally:
        server.shutdown()
        server.server_close()
