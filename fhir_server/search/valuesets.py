"""ValueSets stored on the server, expanded for the token modifiers `:in` and `:not-in`.

https://hl7.org/fhir/R4/search.html#token and https://hl7.org/fhir/R4/valueset.html

Only what can be expanded without a terminology server: `expansion.contains` (nested), and
`compose.include` with listed concepts or a whole code system (matched as `system|`).
Filters and `valueSet` imports are not expanded; such a ValueSet is refused, never matched
partially.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, false, select

from fhir_server.fhir.json import loads
from fhir_server.storage.index_schema import idx_uri
from fhir_server.storage.schema import resource

__all__ = ["expand", "resolver"]

Pairs = list[tuple[str | None, str]]


def _contains(items: list[dict[str, Any]], out: Pairs) -> None:
    for item in items:
        if item.get("code"):
            out.append((item.get("system"), item["code"]))
        _contains(item.get("contains", []), out)


def expand(vs: dict[str, Any]) -> Pairs | None:
    """(system, code) pairs; a code of '' stands for every code of the system."""
    out: Pairs = []
    if vs.get("expansion", {}).get("contains"):
        _contains(vs["expansion"]["contains"], out)
        return out
    compose = vs.get("compose") or {}
    if compose.get("exclude"):
        return None
    for inc in compose.get("include", []):
        if inc.get("filter") or inc.get("valueSet"):
            return None
        system = inc.get("system")
        if inc.get("concept"):
            out.extend((system, c["code"]) for c in inc["concept"] if c.get("code"))
        elif system:
            out.append((system, ""))
    return out


def resolver(conn: Connection) -> Any:
    def lookup(url: str) -> list[tuple[str | None, str]] | None:
        base = url.split("|", 1)[0]
        sub = select(idx_uri.c.rid).where(
            idx_uri.c.res_type == "ValueSet", idx_uri.c.param == "url", idx_uri.c.value == base
        )
        row = conn.execute(
            select(resource.c.body).where(resource.c.rid.in_(sub), resource.c.deleted == false()).limit(1)
        ).first()
        return expand(loads(row[0])) if row else None

    return lookup
