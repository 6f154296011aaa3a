"""Search: the one entry point conditional interactions use to resolve criteria.

https://hl7.org/fhir/R4/search.html

Minimal version supporting `_id` and `identifier` by scanning the type's current resources;
the search engine replaces it behind the same signature.
"""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import Connection, select

from fhir_server.errors import invalid
from fhir_server.storage.schema import resource

__all__ = ["find_ids"]


def find_ids(conn: Connection, res_type: str, params: list[tuple[str, str]], limit: int) -> list[tuple[int, str]]:
    """(rid, id) of the current, non-deleted resources of `res_type` matching every param."""
    checks = [_matcher(name, value) for name, value in params]
    stmt = select(resource.c.rid, resource.c.res_id, resource.c.body).where(
        resource.c.res_type == res_type, resource.c.deleted.is_(False)
    )
    found: list[tuple[int, str]] = []
    for rid, res_id, body in conn.execute(stmt):
        doc = orjson.loads(body)
        if all(check(doc) for check in checks):
            found.append((rid, res_id))
            if len(found) >= limit:
                break
    return found


def _matcher(name: str, value: str) -> Any:
    alternatives = value.split(",")
    if name == "_id":
        return lambda doc: doc.get("id") in alternatives
    if name == "identifier":
        tokens = [_token(alt) for alt in alternatives]
        return lambda doc: any(
            _identifier_matches(ident, system, code) for ident in doc.get("identifier", []) for system, code in tokens
        )
    raise invalid(f"Search parameter '{name}' is not supported in conditional criteria (use _id or identifier)")


def _token(value: str) -> tuple[str | None, str | None]:
    if "|" not in value:
        return None, value
    system, code = value.split("|", 1)
    return system, code or None


def _identifier_matches(ident: dict[str, Any], system: str | None, code: str | None) -> bool:
    if system is not None and ident.get("system", "") != system:
        return False
    return code is None or ident.get("value") == code
