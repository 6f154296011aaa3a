"""Running a plan: the page of matches, its cursors, the total when asked, and `_explain`.

https://hl7.org/fhir/R4/search.html#total

The count runs only when `_total=accurate|estimate`, `_summary=count` or `_count=0` asks for
it: a COUNT over a large type costs far more than a page (fhirbase #138). `estimate` uses the
planner's row estimate on PostgreSQL and an exact count on SQLite.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, text

from fhir_server.search.paging import Cursor, encode
from fhir_server.search.plan import Plan

__all__ = ["Match", "SearchResult", "explain", "run"]


@dataclass(frozen=True, slots=True)
class Match:
    rid: int
    type: str
    id: str
    body: bytes


@dataclass
class SearchResult:
    matches: list[Match]
    next_cursor: str | None = None
    prev_cursor: str | None = None
    total: int | None = None
    included: list[Match] = field(default_factory=list)


def _count(conn: Connection, plan: Plan) -> int | None:
    assert plan.count is not None
    if plan.query.total == "estimate" and conn.dialect.name == "postgresql":
        sql = str(plan.count.compile(conn, compile_kwargs={"literal_binds": True}))
        row = conn.execute(text("EXPLAIN (FORMAT JSON) " + sql)).scalar_one()
        data = row if isinstance(row, list) else json.loads(row)
        return int(data[0]["Plan"].get("Plan Rows", 0))
    return int(conn.execute(plan.count).scalar_one())


def run(conn: Connection, plan: Plan) -> SearchResult:
    total = _count(conn, plan) if plan.count is not None else None
    if plan.page is None and plan.fill is None:
        return SearchResult([], total=total)
    n = plan.query.count
    rows = list(conn.execute(plan.page)) if plan.page is not None else []
    if plan.fill is not None and len(rows) <= n:
        rows += list(conn.execute(plan.fill.limit(n + 1 - len(rows))))
    more = len(rows) > n
    rows = rows[:n]
    backward = plan.cursor is not None and not plan.cursor.forward
    if backward:
        rows.reverse()
    matches = [Match(int(row[0]), row[1], row[2], bytes(row[3])) for row in rows]
    k = len(plan.sort_exprs)

    def cursor_at(row: Any, forward: bool) -> str:
        return encode(Cursor(forward, tuple(row[4 : 4 + k]), int(row[0]), plan.signature))

    result = SearchResult(matches, total=total)
    if rows:
        # Going forward there is a next page when we got the extra row; going backward we came
        # from a later page, so there always is one.
        if (more and not backward) or backward:
            result.next_cursor = cursor_at(rows[-1], True)
        if (plan.cursor is not None and not backward) or (backward and more):
            result.prev_cursor = cursor_at(rows[0], False)
    return result


def explain(conn: Connection, plan: Plan) -> tuple[str, list[str]]:
    """The page's SQL (with values inlined) and the database's plan for it."""
    stmt = next(s for s in (plan.page, plan.fill, plan.count) if s is not None)
    assert stmt is not None
    sql = str(stmt.compile(conn, compile_kwargs={"literal_binds": True}))
    prefix = "EXPLAIN QUERY PLAN " if conn.dialect.name == "sqlite" else "EXPLAIN "
    lines = [" | ".join(str(c) for c in row) for row in conn.execute(text(prefix + sql))]
    return sql, lines
