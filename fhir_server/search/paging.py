"""Keyset paging: opaque cursors naming the last (or first) row seen, never an OFFSET.

https://hl7.org/fhir/R4/http.html#paging

A page is `ORDER BY keys..., rid LIMIT count + 1`: the extra row says whether another page
exists. The next page starts strictly after the last row's (keys, rid), so rows inserted or
deleted meanwhile never shift a page (an OFFSET would skip or repeat them), and each page
costs the same however deep it is. Missing sort values (NULL) sort last in both directions.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import ColumnElement, and_, false, or_, true

from fhir_server.errors import invalid

__all__ = ["Cursor", "SortExpr", "decode", "encode", "keyset_condition", "order_by"]

SortExpr = tuple[Any, bool]  # (SQL expression, descending)


@dataclass(frozen=True, slots=True)
class Cursor:
    forward: bool  # True: the page after `keys/rid`; False: the page before them
    keys: tuple[Any, ...]
    rid: int
    signature: str  # the sort it was made for; a cursor is useless under another sort


def encode(cursor: Cursor) -> str:
    raw = orjson.dumps(["n" if cursor.forward else "p", list(cursor.keys), cursor.rid, cursor.signature])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(token: str, signature: str) -> Cursor:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        direction, keys, rid, sig = orjson.loads(raw)
        if direction not in ("n", "p") or not isinstance(rid, int) or not isinstance(keys, list):
            raise ValueError
    except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError):
        raise invalid("Invalid _cursor: follow the Bundle's links instead of editing them", "_cursor") from None
    if sig != signature:
        raise invalid("This _cursor was made for another _sort", "_cursor")
    return Cursor(direction == "n", tuple(keys), rid, sig)


def rid_descending(exprs: list[SortExpr]) -> bool:
    """Ties go by rid in the last key's direction, so one index serves key and tie-break."""
    return bool(exprs) and exprs[-1][1]


def order_by(exprs: list[SortExpr], rid: Any, reverse: bool) -> list[Any]:
    out: list[Any] = []
    for expr, desc in exprs:
        out.append(expr.is_(None).desc() if reverse else expr.is_(None))
        out.append(expr.asc() if desc == reverse else expr.desc())
    out.append(rid.asc() if rid_descending(exprs) == reverse else rid.desc())
    return out


def keyset_condition(exprs: list[SortExpr], rid: Any, cursor: Cursor) -> ColumnElement[bool]:
    """Rows strictly after (forward) or before (backward) the cursor in the sort order."""
    after = cursor.forward
    alternatives: list[ColumnElement[bool]] = []
    equal: list[ColumnElement[bool]] = []
    for (expr, desc), value in zip(exprs, cursor.keys, strict=True):
        if value is None:
            beyond = false() if after else expr.is_not(None)
            same = expr.is_(None)
        else:
            bigger = expr < value if desc else expr > value
            smaller = expr > value if desc else expr < value
            beyond = or_(expr.is_(None), bigger) if after else smaller
            same = expr == value
        alternatives.append(and_(*equal, beyond) if equal else beyond)
        equal.append(same)
    last = rid > cursor.rid if after != rid_descending(exprs) else rid < cursor.rid
    alternatives.append(and_(*equal, last) if equal else last)
    return or_(*alternatives) if len(alternatives) > 1 else and_(alternatives[0], true())
