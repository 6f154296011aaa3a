"""Alembic environment: runs on the connection handed over by `fhir_server.storage.migrate`."""

from __future__ import annotations

from alembic import context

from fhir_server.storage.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only when alembic is run by hand without our CLI
    from sqlalchemy import create_engine

    from fhir_server.config import get_settings

    connection = create_engine(get_settings().database_url).connect()

context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
