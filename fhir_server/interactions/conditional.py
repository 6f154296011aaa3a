"""Resolve the search criteria of a conditional interaction to 0, 1 or many resources.

https://hl7.org/fhir/R4/http.html#cond-update
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from fhir_server.errors import invalid
from fhir_server.search import EVERYTHING, find_ids
from fhir_server.search.reads import read_visible
from fhir_server.storage import WriteTx

__all__ = ["criteria", "resolve", "visible_to"]

# Parameters that shape a response, not a match: never part of the criteria.
_RESULT_PARAMS = frozenset({"_format", "_pretty", "_summary", "_elements"})


def criteria(query: str) -> list[tuple[str, str]]:
    """The (name, value) pairs of a criteria query string (`If-None-Exist` or the URL's)."""
    params = [
        (k, v)
        for k, v in parse_qsl(query.lstrip("?"), keep_blank_values=True)
        if k not in _RESULT_PARAMS
    ]
    if not params:
        raise invalid("Conditional interaction without search criteria")
    return params


def resolve(tx: WriteTx, type_: str, params: list[tuple[str, str]], limit: int) -> list[tuple[int, str]]:
    """Matches of the criteria the writer may see (a hidden resource is never matched, so a
    conditional write cannot probe for it), locked against concurrent writers deciding on the
    same criteria."""
    tx.lock(type_ + "?" + "&".join(f"{k}={v}" for k, v in sorted(params)))
    access = tx.ctx.access if tx.ctx is not None else EVERYTHING
    return find_ids(tx.conn, type_, params, limit, access)


def visible_to(tx: WriteTx, type_: str, id_: str) -> bool:
    """Whether the writer may see the current `type_/id_` (always, for unrestricted access)."""
    access = tx.ctx.access if tx.ctx is not None else EVERYTHING
    return access.unrestricted or read_visible(tx.conn, access, type_, id_) is not None
