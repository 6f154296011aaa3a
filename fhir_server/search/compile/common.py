"""Shared pieces of the per-type compilers: the compile context and index-table subqueries.

https://hl7.org/fhir/R4/search.html

Every predicate has the same shape, `resource.rid [NOT] IN (SELECT rid FROM idx_x WHERE
res_type = :t AND param = :code AND <value condition>)`: both SQLite and PostgreSQL turn it
into an index range scan on `(res_type, param, value)` feeding a rowid/primary-key probe, and
the planner is free to start from whichever predicate is most selective.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Table, and_, or_, select, true

from fhir_server.errors import invalid, not_supported
from fhir_server.search.ast import Param, Value
from fhir_server.search.registry import Registry, SearchParamImpl

__all__ = ["Ctx", "any_of", "bad_value", "in_index", "starts_with", "unsupported_modifier"]

Row = tuple[str, dict[str, Any]]  # (index kind, column values) produced by index_rows
# Bytes after every other UTF-8 sequence: `x >= p AND x < p + TOP` is "x starts with p".
TOP = "\U0010ffff"


@dataclass(frozen=True)
class Ctx:
    """What compiling needs beyond the tree: the registry, the server's base URL, lookups."""

    registry: Registry
    dialect: str = "sqlite"
    base_url: str = ""
    # canonical URL of a ValueSet -> its (system, code) pairs, or None when the server lacks it
    valueset: Callable[[str], list[tuple[str | None, str]] | None] = field(default=lambda _url: None)
    now_us: int = 0


def in_index(
    table: Table, r: Any, res_type: str, code: str, cond: ColumnElement[bool] | None, negate: bool = False
) -> ColumnElement[bool]:
    sub = select(table.c.rid).where(table.c.param == code)
    if res_type != "*":  # a system search without _type looks at every type
        sub = sub.where(table.c.res_type == res_type)
    if cond is not None:
        sub = sub.where(cond)
    # Never correlated: a chain nests the same index table inside itself.
    sub = sub.correlate(None)
    return r.c.rid.not_in(sub) if negate else r.c.rid.in_(sub)


def missing(table: Table, r: Any, res_type: str, p: Param) -> ColumnElement[bool]:
    """`:missing=true` -> no index row for the parameter; `false` -> at least one."""
    flag = p.values[0].text.lower() if len(p.values) == 1 else ""
    if flag not in ("true", "false"):
        raise invalid(f"':missing' takes true or false, not {p.values[0].text!r}", expression=p.code)
    return in_index(table, r, res_type, p.code, None, negate=flag == "true")


def starts_with(col: Any, prefix: str) -> ColumnElement[bool]:
    return and_(col >= prefix, col < prefix + TOP)


def any_of(conds: list[ColumnElement[bool]]) -> ColumnElement[bool]:
    if not conds:
        return ~true()
    return conds[0] if len(conds) == 1 else or_(*conds)


def unsupported_modifier(p: Param, impl: SearchParamImpl) -> Exception:
    return not_supported(f"Modifier ':{p.modifier}' is not supported on {impl.type} parameter '{p.code}'")


def bad_value(p: Param, v: Value, why: str) -> Exception:
    return invalid(f"Invalid value {v.text!r} for search parameter '{p.code}': {why}", expression=p.code)
