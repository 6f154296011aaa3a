"""Benchmark app: the product's FastAPI stack plus bench-only routes (the ceiling and counters).

https://hl7.org/fhir/R4/http.html#read

`app` (built by `build_app`) is `create_app(settings)` from fhir_server.app, unchanged (same routes, same exception
handlers, same lifespan), with two routes added here and nowhere in the product:

- `GET /bench/ceiling` answers a fixed, pre-serialised Patient of the size the read benchmark
  returns, with the same headers a read sets. What it costs is uvicorn + Starlette routing +
  FastAPI's endpoint call + the Response: the most a read can reach on this stack.
- `GET /bench/stats` reports the SQLite writer's commit count and the history row count, so
  the benchmark can show how many writes each commit grouped (not observable over FHIR).

Run it exactly as `fhir-server serve` runs the product (one process, uvicorn's default loop
and HTTP implementation, proxy headers on, no access log):
`FHIR_DATABASE_URL=sqlite:///x.db python bench/ceiling.py --port 8081`.
"""

from __future__ import annotations

import argparse
import copy
from typing import TYPE_CHECKING, Any

# At module level: FastAPI resolves the routes' annotations against this module's globals.
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["SAMPLE_PATIENT", "build_app", "ceiling_body", "patient"]

# A plausible French patient (INS-NIR identifier, address, telecom): ~1 KB once stored.
SAMPLE_PATIENT: dict[str, Any] = {
    "resourceType": "Patient",
    "identifier": [
        {
            "use": "official",
            "type": {"coding": [{"system": "http://interopsante.org/CodeSystem/v2-0203", "code": "INS-NIR"}]},
            "system": "urn:oid:1.2.250.1.213.1.4.8",
            "value": "285076922500287",
        },
        {"system": "https://hopital.example.fr/patients", "value": "IPP-000123"},
    ],
    "active": True,
    "name": [
        {"use": "official", "family": "Martin", "given": ["Claire", "Anne"]},
        {"use": "usual", "family": "Dupont"},
    ],
    "telecom": [
        {"system": "phone", "value": "+33 6 12 34 56 78", "use": "mobile"},
        {"system": "email", "value": "claire.martin@example.fr"},
    ],
    "gender": "female",
    "birthDate": "1985-07-09",
    "address": [
        {
            "use": "home",
            "line": ["12 rue de la République"],
            "city": "Lyon",
            "postalCode": "69002",
            "country": "FRA",
        }
    ],
    "maritalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", "code": "M"}]},
}


def patient(id_: str | None = None) -> dict[str, Any]:
    """A copy of the sample Patient, with `id` set when given (PUT needs it to match the URL)."""
    body = copy.deepcopy(SAMPLE_PATIENT)
    if id_ is not None:
        body["id"] = id_
    return body


def ceiling_body() -> tuple[bytes, dict[str, str]]:
    """The sample Patient as the server stores it (id + meta), and the headers a read sends."""
    from fhir_server.fhir.resource import http_date, stamp
    from fhir_server.storage.backend import now_micros

    stamped_at = now_micros()
    _resource, body = stamp(patient(), "bench-ceiling", 1, stamped_at)
    return body, {"ETag": 'W/"1"', "Last-Modified": http_date(stamped_at)}


def build_app() -> FastAPI:
    """`create_app(settings)` exactly as the CLI builds it, plus the two bench-only routes."""
    # Imported here so that bench/crud.py can import the sample Patient without the server.
    from sqlalchemy import Connection, text

    import fhir_server
    from fhir_server.app import create_app
    from fhir_server.config import get_settings

    body, headers = ceiling_body()

    async def ceiling_route() -> Response:
        # No storage, no negotiation: only what every FHIR response pays on this stack.
        return Response(body, 200, headers, media_type="application/fhir+json; charset=utf-8")

    async def stats_route(request: Request) -> Response:
        store = request.app.state.storage

        def history_rows(conn: Connection) -> int:
            # Plain SQL: the bench must not depend on storage helpers that move between commits.
            return int(conn.execute(text("SELECT count(*) FROM resource_history")).scalar_one())

        rows = await store.run_read(history_rows)
        commits = getattr(store, "commits", None)
        return JSONResponse(
            {"dialect": store.dialect, "commits": commits, "history_rows": rows, "package": fhir_server.__file__}
        )

    app = create_app(get_settings())
    app.add_api_route("/bench/ceiling", ceiling_route, methods=["GET"], include_in_schema=False)
    app.add_api_route("/bench/stats", stats_route, methods=["GET"], include_in_schema=False)
    return app


def __getattr__(name: str) -> Any:
    # `uvicorn bench.ceiling:app` works too; the app is only built when asked for.
    if name == "app":
        return build_app()
    raise AttributeError(name)


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description="Serve the FHIR app plus the bench-only routes.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    args = parser.parse_args()
    if args.host not in ("127.0.0.1", "::1", "localhost"):
        parser.error("the benchmark server listens on loopback only")
    from fhir_server.config import get_settings

    # The same uvicorn.run options as fhir_server.cli._serve (without --access-log).
    uvicorn.run(
        build_app(),
        host=args.host,
        port=args.port,
        log_level=get_settings().log_level,
        proxy_headers=True,
        access_log=False,
    )


if __name__ == "__main__":
    main()
