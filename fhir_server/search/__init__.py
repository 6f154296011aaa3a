"""Search: parse -> scope (compartment, policy) -> compile -> execute, for every caller.

https://hl7.org/fhir/R4/search.html

`search` is the one entry point (type, system and compartment searches, `_include`,
conditional interactions); `find_ids` is its narrow form for conditional create, update and
delete; `capability_search_params` lists a type's parameters for the CapabilityStatement.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from sqlalchemy import Connection, func, select

from fhir_server import clock
from fhir_server.search.access import EVERYTHING, Access
from fhir_server.search.ast import Compartment, Query
from fhir_server.search.compile.common import Ctx
from fhir_server.search.compile.tree import count_cap
from fhir_server.search.execute import Match, SearchResult, explain, run
from fhir_server.search.includes import resolve_includes
from fhir_server.search.parse import Limits, parse_query
from fhir_server.search.plan import plan
from fhir_server.search.registry import Registry, registry
from fhir_server.search.valuesets import resolver

__all__ = [
    "EVERYTHING", "Access", "Match", "SearchResult", "capability_includes", "capability_search_params", "find_ids",
    "make_ctx", "search",
]


def make_ctx(conn: Connection, access: Access, base_url: str = "", reg: Registry | None = None) -> Ctx:
    cap = count_cap(conn.dialect.name)

    def count(sub: Any) -> int:
        # SQLite has no statistics on these subqueries, and PostgreSQL's (per column) badly
        # misjudge `res_type, param, hash` combinations: counting is cheap and exact.
        capped = sub.limit(cap).subquery()
        return int(conn.execute(select(func.count()).select_from(capped)).scalar_one())

    return Ctx(
        registry=reg or registry(),
        dialect=conn.dialect.name,
        base_url=base_url,
        valueset=resolver(conn),
        now_us=clock.now_micros(),
        count=count,
        db=_db_key(conn),
        access=access,
    )


def _db_key(conn: Connection) -> str:
    # The URL alone does not tell PostgreSQL schemas apart when search_path is set through
    # connect arguments (as the tests do); the engine's identity does, within this process.
    return f"{id(conn.engine)}:{conn.engine.url}"


def search(
    conn: Connection,
    query: Query,
    access: Access,
    base_url: str = "",
    compartment: Compartment | None = None,
) -> tuple[SearchResult, tuple[str, list[str]] | None]:
    """Run a parsed query as seen by `access`; returns the result and, with `_explain`,
    (SQL, database plan). Matches, includes, chains and `_has` all apply `access`."""
    ctx = make_ctx(conn, access, base_url)
    p = plan(query, ctx, compartment)
    result = run(conn, p)
    if query.includes and result.matches:
        result.included = resolve_includes(conn, query.includes, result.matches, ctx)
    return result, (explain(conn, p) if query.explain else None)


def find_ids(
    conn: Connection, res_type: str, params: list[tuple[str, str]], limit: int, access: Access
) -> list[tuple[int, str]]:
    """(rid, id) of current resources of `res_type` matching `params` (conditional interactions).

    Unknown or malformed parameters raise a 400 FhirError: a conditional write must never act
    on a criterion it did not understand.
    """
    query = parse_query(registry(), (res_type,), params, strict=True, limits=Limits(limit, max(limit, 1)))
    query = replace(query, count=limit, sort=(), includes=(), total="none", summary=None, cursor=None)
    result, _ = search(conn, query, access)
    return [(m.rid, m.id) for m in result.matches]


def _documentation(description: str, res_type: str) -> str:
    """The line about `res_type` from a shared parameter's bullet list, else the description."""
    marker = f"* [{res_type}]("
    for line in description.splitlines():
        if line.strip().startswith(marker):
            return line.split("):", 1)[-1].strip()
    return description.strip()


def capability_search_params(res_type: str) -> list[dict[str, Any]]:
    """CapabilityStatement.rest.resource.searchParam entries for `res_type`."""
    out = []
    for impl in registry().params(res_type):
        if impl.strategy == "unsupported" or impl.status != "active":
            continue
        out.append(
            {
                "name": impl.code,
                "definition": impl.url,
                "type": impl.type,
                "documentation": _documentation(impl.description, res_type),
            }
        )
    return out


def capability_includes(resource_types: list[str]) -> dict[str, tuple[list[str], list[str]]]:
    """searchInclude and searchRevInclude values per type, from the reference parameters.

    A reference parameter without declared targets can point at any type, so it is a
    `_revinclude` of every type.
    """
    reg = registry()
    known = set(resource_types)
    includes: dict[str, list[str]] = {t: [] for t in resource_types}
    revincludes: dict[str, list[str]] = {t: [] for t in resource_types}
    for source in reg.types():
        for impl in reg.params(source):
            if impl.strategy != "reference" or impl.status != "active" or source not in known:
                continue
            includes[source].append(f"{source}:{impl.code}")
            for target in impl.targets or resource_types:
                if target in known:
                    revincludes[target].append(f"{source}:{impl.code}")
    return {t: (["*", *sorted(includes[t])], sorted(revincludes[t])) for t in resource_types}
