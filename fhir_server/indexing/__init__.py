"""Write side of search: index rows written in the same transaction as the resource.

https://hl7.org/fhir/R4/search.html

Minimal version: conditional interactions match by scanning (see `fhir_server.search`), so
there is nothing to index yet. The search engine replaces this behind the same signature.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

__all__ = ["write_index"]


def write_index(conn: Connection, rid: int, res_type: str, resource: dict[str, Any] | None) -> None:
    """Replace the index rows of `rid` with those of `resource` (None = deleted)."""
    return None
