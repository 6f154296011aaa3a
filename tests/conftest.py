"""Shared fixtures: every storage-touching test runs on SQLite and on PostgreSQL.

PostgreSQL comes from FHIR_TEST_PG_URL (default: the loopback server `.ci/run` starts). Each
test session gets its own fresh database, dropped at the end; each test starts from empty
tables. When no server answers, the PostgreSQL leg is skipped with a loud message, except
in CI (CI=true), where that is a failure.
"""

from __future__ import annotations

import os
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

PG_URL = os.environ.get("FHIR_TEST_PG_URL", "postgresql+psycopg://fhir:fhir@127.0.0.1:5432/fhir")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
BACKENDS = [b for b in os.environ.get("FHIR_TEST_BACKENDS", "sqlite,postgres").split(",") if b]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str | None]:
    """A fresh PostgreSQL database for this test session (URL), or None when unreachable."""
    admin = create_engine(PG_URL, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    name = f"fhir_test_{secrets.token_hex(4)}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001 - any failure to reach the server means the same
        message = f"PostgreSQL not reachable at {PG_URL}: {exc.__class__.__name__}: {exc}"
        if IN_CI:
            pytest.fail(message + " (CI must run the suite on PostgreSQL)")
        print("\n" + "!" * 78 + f"\n!! {message}\n!! PostgreSQL tests are SKIPPED\n" + "!" * 78)
        yield None
        return
    url = make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
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
        pytest.skip("PostgreSQL not reachable (see the message above)")
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
