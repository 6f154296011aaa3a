"""Command line: `fhir-server serve`, `fhir-server db upgrade|current|downgrade`, `fhir-server load FOLDER`,
and the authorisation server's commands (`clients`, `users`, `token`, `keys`, ...: `fhir_server/auth/cli.py`).

Settings come from the FHIR_* environment variables (README, "Configuration"); a wrong one stops
the command with one line naming it (`error: FHIR_LOG_LEVEL='verbose' is not one of ...`) and
exit status 2. Database URLs are printed with their password masked.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from typing import Any

from fhir_server import FHIR_VERSION, __version__
from fhir_server.config import Settings, SettingsError, StartupError, get_settings

__all__ = ["main"]

_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _configure_logging(settings: Settings) -> None:
    """Our loggers print to stderr at FHIR_LOG_LEVEL (uvicorn configures only its own)."""
    logger = logging.getLogger("fhir_server")
    if not any(getattr(h, "_fhir_cli", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(_LOG_FORMAT))
        handler._fhir_cli = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.setLevel(settings.log_level.upper())
    logger.propagate = False


def _serve(args: argparse.Namespace) -> int:
    settings: Settings = args.settings
    import uvicorn

    from fhir_server.app import create_app
    from fhir_server.auth.cli import bootstrap

    if "access_log" in args:
        settings = settings.model_copy(update={"access_log": args.access_log})
    shown = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    base = settings.base_url.rstrip("/") or f"http://{shown}:{args.port}/fhir"
    print(f"FHIR server: {base}  (database: {settings.database_url_masked})", flush=True)
    for line in bootstrap(settings, base):
        print(line, flush=True)
    uvicorn.run(
        create_app(settings),
        host=args.host,
        port=args.port,
        log_level=settings.log_level,
        proxy_headers=True,
        access_log=False,  # ours (fhir_server.access) logs one line per request, query values masked
    )
    return 0


def _engine(settings: Settings):  # type: ignore[no-untyped-def]
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    return create_engine(settings.database_url, poolclass=NullPool)


def _db_upgrade(args: argparse.Namespace) -> int:
    settings: Settings = args.settings
    from fhir_server.storage import migrate

    migrate(settings.database_url)
    print(f"database at head: {settings.database_url_masked}")
    return 0


def _db_current(args: argparse.Namespace) -> int:
    settings: Settings = args.settings
    from fhir_server.storage.migrate import current, head

    engine = _engine(settings)
    try:
        revision = current(engine)
    finally:
        engine.dispose()
    latest = head()
    state = "at head" if revision == latest else f"head is {latest}: run `fhir-server db upgrade`"
    print(f"{settings.database_url_masked}: revision {revision or '(empty database)'} ({state})")
    return 0


def _db_downgrade(args: argparse.Namespace) -> int:
    settings: Settings = args.settings
    from fhir_server.storage.migrate import current, downgrade

    engine = _engine(settings)
    try:
        downgrade(engine, args.revision)
        revision = current(engine)
    finally:
        engine.dispose()
    print(f"{settings.database_url_masked}: downgraded to revision {revision or 'base (no tables)'}")
    return 0


def _load(args: argparse.Namespace) -> int:
    settings: Settings = args.settings
    import asyncio
    from pathlib import Path

    from fhir_server.app import create_app
    from fhir_server.errors import FhirError
    from fhir_server.interactions.load import load_folder

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
    print(f"loaded {args.folder} into {settings.database_url_masked}: {counts['created']} created, "
          f"{counts['updated']} updated, {counts['unchanged']} unchanged")
    return 0


class _Parser(argparse.ArgumentParser):
    """Every (sub)command's help shows each option's default; subparsers inherit the class."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", argparse.ArgumentDefaultsHelpFormatter)
        super().__init__(*args, **kwargs)


def _parser() -> argparse.ArgumentParser:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    parser = _Parser(
        prog="fhir-server", description="FHIR R4 (4.0.1) server for care-coordination networks.",
        epilog="Settings are FHIR_* environment variables (FHIR_DATABASE_URL, FHIR_LOG_LEVEL, ...): see README.md.",
        formatter_class=fmt,
    )
    parser.add_argument("--version", action="version", version=f"fhir-server {__version__} (FHIR {FHIR_VERSION})")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="serve the FHIR API over HTTP (migrates the database first)",
                           description="Serve the FHIR API under /fhir; the database schema is migrated at start.",
                           formatter_class=fmt)
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    serve.add_argument("--port", type=int, default=8080, help="TCP port to listen on")
    serve.add_argument("--access-log", action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                       help="one log line per request: method, path (query values masked), status, duration, "
                            "request id (default: on, or FHIR_ACCESS_LOG)")
    serve.set_defaults(run=_serve)

    db = sub.add_parser("db", help="database schema (Alembic migrations) of FHIR_DATABASE_URL",
                        description="Manage the schema of the database FHIR_DATABASE_URL names.", formatter_class=fmt)
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    db_sub.add_parser("upgrade", help="apply every migration up to head (serve also does it at start)",
                      formatter_class=fmt).set_defaults(run=_db_upgrade)
    db_sub.add_parser("current", help="print the database's revision and whether it is at head",
                      formatter_class=fmt).set_defaults(run=_db_current)
    down = db_sub.add_parser("downgrade", help="take the schema back to REVISION (data in dropped tables is lost)",
                             formatter_class=fmt)
    down.add_argument("revision", help="target revision, e.g. 0005, -1 (one step back) or base (no tables)")
    down.set_defaults(run=_db_downgrade)

    load = sub.add_parser(
        "load", help="validate a folder of resources and write it to the database directly",
        description="Validate every *.json resource of FOLDER (structure and claimed profiles) and store them in "
                    "one transaction, writing to the database FHIR_DATABASE_URL directly: no running server is "
                    "needed or used (a running server on the same database sees them at once).",
        formatter_class=fmt,
    )
    load.add_argument("folder", help="folder of *.json resources with ids, e.g. examples/pathway")
    load.set_defaults(run=_load)

    from fhir_server.auth.cli import register_commands

    register_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    try:
        settings = get_settings()
    except SettingsError as exc:
        for line in exc.lines:
            print(f"error: {line}", file=sys.stderr)
        sys.exit(2)
    _configure_logging(settings)
    args.settings = settings
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        sys.exit(run(args))
    except (StartupError, SettingsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
