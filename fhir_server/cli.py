"""Command line: `fhir-server serve`, `fhir-server db upgrade`, `fhir-server load FOLDER`."""

from __future__ import annotations

import argparse
import sys

from fhir_server.config import get_settings

__all__ = ["main"]


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from fhir_server.app import create_app
    from fhir_server.auth.cli import bootstrap

    settings = get_settings()
    shown = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    base = settings.base_url.rstrip("/") or f"http://{shown}:{args.port}/fhir"
    print(f"FHIR server: {base}  (database: {settings.database_url})", flush=True)
    for line in bootstrap(settings, base):
        print(line, flush=True)
    uvicorn.run(
        create_app(settings),
        host=args.host,
        port=args.port,
        log_level=settings.log_level,
        proxy_headers=True,
        access_log=args.access_log,
    )
    return 0


def _db_upgrade(_args: argparse.Namespace) -> int:
    from fhir_server.storage import migrate

    url = get_settings().database_url
    migrate(url)
    print(f"database at head: {url}")
    return 0


def _load(args: argparse.Namespace) -> int:
    import asyncio
    from pathlib import Path

    from fhir_server.app import create_app
    from fhir_server.errors import FhirError
    from fhir_server.interactions.load import load_folder

    settings = get_settings()
    app = create_app(settings)

    async def run() -> dict[str, int]:
        async with app.router.lifespan_context(app):
            ctx = app.state.context_factory(None)
            return await load_folder(ctx, app.state.storage, Path(args.folder))

    try:
        counts = asyncio.run(run())
    except FhirError as exc:
        for item in exc.issues:
            where = ", ".join(item.get("expression", []))
            print(f"{item.get('severity')}: {item.get('diagnostics')}" + (f" ({where})" if where else ""))
        return 1
    except FileNotFoundError as exc:
        print(exc)
        return 2
    print(f"loaded {args.folder}: {counts['created']} created, {counts['updated']} updated, "
          f"{counts['unchanged']} unchanged")
    return 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="fhir-server", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve the FHIR API over HTTP")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--access-log", action="store_true", help="log every request")
    serve.set_defaults(run=_serve)
    db = sub.add_parser("db", help="database schema")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser("upgrade", help="apply the Alembic migrations").set_defaults(run=_db_upgrade)
    load = sub.add_parser("load", help="validate and store a folder of resources (one transaction)")
    load.add_argument("folder", help="folder of *.json resources with ids, e.g. examples/pathway")
    load.set_defaults(run=_load)
    from fhir_server.auth.cli import register_commands

    register_commands(sub)
    args = parser.parse_args(argv)
    sys.exit(args.run(args))
