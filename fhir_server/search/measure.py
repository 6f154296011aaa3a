"""The search optimiser: how many index rows each term matches, to pick the one that drives.

https://hl7.org/fhir/R4/search.html

The measure phase of a search (parse -> scope -> measure -> compile -> execute, see
docs/architecture.md). SQLite keeps no statistics on the index subqueries and PostgreSQL's
per-column ones misjudge `(res_type, param, hash)` combinations, so the terms of a conjunction
are counted instead: each plain `rid IN (SELECT rid FROM idx_...)` term, compiled by the caller
(`compile_node`, handed in: this module sits below `search/compile/tree.py`, which uses it),
is counted up to a cap (`ctx.count`, built by `search.make_ctx`), in static-rank order, until
one has at most `FEW_ROWS` rows. `tree._conjunction` then lets the term with the fewest rows
drive, when it is below `count_cap`; counts are remembered a while per database (`ESTIMATES`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import BinaryExpression, ColumnElement
from sqlalchemy.sql import operators
from sqlalchemy.sql.selectable import ScalarSelect

from fhir_server.search.ast import And, Chain, Compartment, Has, Node, Not, Or, Param, Policy
from fhir_server.search.cache import WhereCache
from fhir_server.search.compile.common import Ctx, Probe

__all__ = [
    "COUNT_CAP",
    "DRIVER_MAX",
    "ESTIMATES",
    "FEW_ROWS",
    "PG_DRIVE_BELOW",
    "Compile",
    "Measured",
    "count_cap",
    "measured",
    "rank",
]

# How a term becomes its SQL condition (`tree.compile_node`).
Compile = Callable[[Node, str, Any, Ctx], ColumnElement[bool]]

# How selective a term usually is (lower = fewer rows): a static guess, since SQLite has no
# statistics on these subqueries. PostgreSQL plans by its own statistics either way.
_RANK = {"id": 0, "reference": 1, "uri": 2, "composite": 2, "fulltext": 3, "string": 3, "token": 4,
         "quantity": 5, "number": 5, "date": 6, "lastUpdated": 6}
DRIVER_MAX = 4  # terms ranked above this never drive: scanning in rid order and probing is cheaper


def rank(node: Node) -> int:
    match node:
        case Param(kind=kind, modifier=mod, code=code):
            if mod in ("missing", "not", "not-in", "contains", "text"):
                return 9
            if kind == "token" and (code == "identifier" or mod == "of-type"):
                return 1
            return _RANK.get(kind, 5) - (1 if mod == "exact" else 0)
        case Compartment():
            return 1
        case Policy():
            # measured like a term (a care team's patients are usually few, then it drives);
            # an access that sees most of the data measures large and is probed instead
            return 3
        case Chain(node=inner):
            return min(rank(inner) + 1, 9)
        case Has():
            return 5
        case Or(items) | And(items):
            return max(rank(i) for i in items) if isinstance(node, Or) else min(rank(i) for i in items)
        case Not():
            return 9
    return 8


def measured(items: tuple[Node, ...], res_type: str, r: Any, ctx: Ctx, compile_node: Compile) -> list[Measured]:
    """Terms with their estimated rows (counted from the index when `ctx.count` is given),
    static rank and, when measuring compiled it, the term's `IN` form (reused if it drives).

    Only plain `rid IN (SELECT rid FROM idx ...)` terms are counted (an index range scan
    stopped at `COUNT_CAP`, about a millisecond); other terms keep their static rank. Terms
    are counted in static-rank order and counting stops at the first one with at most
    `FEW_ROWS` rows: it drives, and the order of the probes behind it hardly matters.
    """
    out = []
    settled = ctx.count is None or isinstance(r, Probe)
    for item in sorted(items, key=rank):
        estimate: int | None = None
        expr = None
        if not settled and rank(item) <= 6:
            expr = compile_node(item, res_type, r, ctx)
            if (isinstance(expr, BinaryExpression) and expr.operator is operators.in_op
                    and isinstance(expr.right, ScalarSelect)):
                estimate = _estimate(item, res_type, expr.right.element, ctx)
                settled = estimate <= FEW_ROWS
        out.append(Measured(estimate, rank(item), item, expr))
    return sorted(out, key=lambda m: (COUNT_CAP if m.estimate is None else m.estimate, m.static))


COUNT_CAP = 4000
ESTIMATES = WhereCache()


def _estimate(item: Node, res_type: str, sub: Any, ctx: Ctx) -> int:
    """Rows of one term, remembered a while per database: a broad fixed term (a date bound,
    a category) recurs next to changing ones and would be counted up to the cap every time."""
    assert ctx.count is not None
    key = (item, res_type, ctx.dialect, ctx.db)
    found: int | None = ESTIMATES.get(key, ctx.registry)
    if found is None:
        found = ctx.count(sub)
        ESTIMATES.put(key, ctx.registry, found)
    return found


FEW_ROWS = 50
PG_DRIVE_BELOW = 1000


def count_cap(dialect: str) -> int:
    """Rows counted at most per term: a term drives only below this (see `tree._conjunction`)."""
    return COUNT_CAP if dialect == "sqlite" else PG_DRIVE_BELOW


@dataclass(frozen=True, slots=True)
class Measured:
    estimate: int | None
    static: int
    node: Node
    expr: ColumnElement[bool] | None
