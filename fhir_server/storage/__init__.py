"""Resource storage: SQLite (embedded default) and PostgreSQL backends behind one seam."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from fhir_server.config import Settings
from fhir_server.storage.backend import HistoryEntry, Storage, StoredResource, WriteTx
from fhir_server.storage.migrate import upgrade

__all__ = ["HistoryEntry", "Storage", "StoredResource", "WriteTx", "migrate", "open_storage"]


def migrate(database_url: str) -> None:
    """Apply every Alembic migration to the database (idempotent)."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(database_url, poolclass=NullPool)
    try:
        upgrade(engine)
    finally:
        engine.dispose()
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        # WAL now, alone: switching later, while the app's connections open at once, can be refused.
        import sqlite3

        from fhir_server.storage.sqlite import use_wal

        conn = sqlite3.connect(url.database, timeout=10)
        try:
            use_wal(conn.cursor())
        finally:
            conn.close()


def open_storage(settings: Settings) -> Storage:
    """The backend for `settings.database_url` (not started; call `await storage.start()`)."""
    url = settings.database_url
    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        from fhir_server.storage.sqlite import SqliteStorage

        return SqliteStorage(
            url, readers=settings.sqlite_readers, group_commit_max=settings.group_commit_max,
            mmap_bytes=settings.sqlite_mmap_bytes,
        )
    if backend == "postgresql":
        from fhir_server.storage.postgres import PostgresStorage

        return PostgresStorage(url, pool_size=settings.pg_pool_size)
    raise ValueError(f"Unsupported database URL scheme: {backend}")
