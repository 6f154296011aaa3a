"""Shared fixtures: every storage-touching test runs on SQLite and on PostgreSQL.

Which PostgreSQL is decided once, in `tests/pgcluster.py`: the server at FHIR_TEST_PG_URL, else a
throwaway cluster when the binaries are installed, else none (one banner, SQLite only; under
CI=true that is a failure). Each test session gets its own fresh database, dropped at the end;
each test starts from empty tables.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from fhir_server.app import create_app
from fhir_server.config import Settings
from fhir_server.storage import Storage, migrate, open_storage
from tests import pgcluster

BACKENDS = pgcluster.BACKENDS


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _announce(config: pytest.Config, text_: str) -> None:
    """Write to the terminal now, past pytest's output capture (a fixture's print is swallowed)."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None:
        print(text_)
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line("")
        for line in text_.splitlines():
            reporter.write_line(line, red=text_.startswith("!"), bold=text_.startswith("!"))


@pytest.fixture(scope="session")
def pg_server(request: pytest.FixtureRequest) -> str | None:
    """The PostgreSQL server URL the tests use (a role that may create databases), or None."""
    decision = pgcluster.decide()
    _announce(request.config, pgcluster.banner(decision))
    if decision.url is None and pgcluster.IN_CI:
        pytest.exit("CI must run the suite on PostgreSQL: " + "; ".join(decision.notes), returncode=1)
    return decision.url


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Repeat the banner at the end, where it is seen, when the PostgreSQL leg was skipped."""
    decision = pgcluster.current()
    if decision is not None and decision.url is None:
        terminalreporter.write_line(pgcluster.banner(decision), red=True, bold=True)


@pytest.fixture(scope="session")
def pg_database(pg_server: str | None) -> Iterator[str | None]:
    """A fresh PostgreSQL database for this test session (URL), or None without PostgreSQL."""
    if pg_server is None:
        yield None
        return
    admin = create_engine(pg_server, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    name = f"fhir_test_{secrets.token_hex(4)}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(pg_server).set(database=name).render_as_string(hide_password=False)
    migrate(url)
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _truncate_pg(url: str) -> None:
    engine = create_engine(url, poolclass=NullPool)
    with engine.begin() as conn:
        tables = conn.execute(
            text("SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'")
        ).scalars().all()
        if tables:
            conn.execute(text("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    """An empty, migrated database on each backend."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'fhir.db'}"
        migrate(url)
        return url
    pg = request.getfixturevalue("pg_database")
    if pg is None:
        pytest.skip(pgcluster.skip_reason())
    _truncate_pg(pg)
    return str(pg)


@pytest.fixture
def settings_factory(database_url: str) -> Any:
    def make(**overrides: Any) -> Settings:
        # Storing the profiles folder at each start costs ~0.7 s: only the tests about it ask for it.
        return Settings(database_url=database_url, **{"load_profiles": False, "auth": "off", **overrides})

    return make


@pytest.fixture
async def store(settings_factory: Any) -> AsyncIterator[Storage]:
    """A started Storage on each backend."""
    storage = open_storage(settings_factory())
    await storage.start()
    try:
        yield storage
    finally:
        await storage.close()


@pytest.fixture
def client_factory(settings_factory: Any) -> Any:
    """Builds an httpx client sending real HTTP into the ASGI app (lifespan included)."""

    def make(**overrides: Any) -> Any:
        app = create_app(settings_factory(**overrides))

        class _Client:
            async def __aenter__(self) -> httpx.AsyncClient:
                self._lifespan = app.router.lifespan_context(app)
                await self._lifespan.__aenter__()
                self._client = httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app), base_url="http://testserver/fhir"
                )
                return self._client

            async def __aexit__(self, *exc: Any) -> None:
                await self._client.aclose()
                await self._lifespan.__aexit__(*exc)

        return _Client()

    return make


@pytest.fixture
async def client(client_factory: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with client_factory() as c:
        yield c
