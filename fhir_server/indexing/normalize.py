"""Normalisation of search values: string folding, token hashing, dates as instant ranges.

https://hl7.org/fhir/R4/search.html#string and https://hl7.org/fhir/R4/search.html#date

Both the write side (index rows) and the read side (query values) go through these functions,
so a value always compares with itself. Dates become `[lo, hi)` ranges in microseconds since
the epoch: `2020` is the whole year, `2020-03-01T10:00` the whole minute, which is what the
spec's precision rules compare against. Times without an offset are taken as UTC.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from datetime import UTC, datetime, timedelta, timezone
from functools import lru_cache

from fhir_server.storage.index_schema import MAX_INDEXED

__all__ = [
    "MAX_US",
    "MIN_US",
    "clip",
    "date_range",
    "fold",
    "hash64",
    "instant_micros",
    "token_hashes",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MIN_US = -62135596800_000000  # 0001-01-01
MAX_US = 253402300800_000000  # 10000-01-01

_DATE = re.compile(
    r"^(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})"
    r"(?:T(?P<H>\d{2})(?::(?P<M>\d{2})(?::(?P<S>\d{2})(?:\.(?P<f>\d+))?)?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?$"
)


def clip(value: str) -> str:
    return value[:MAX_INDEXED]


@lru_cache(maxsize=65536)
def fold(value: str) -> str:
    """Lower case without accents, as FHIR string search compares (`Élodie` ~ `elodie`)."""
    decomposed = unicodedata.normalize("NFKD", value)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(stripped.casefold().split())[:MAX_INDEXED]


def hash64(value: str) -> int:
    """A signed 64-bit key for equality lookups; collisions are negligible at 2^-64."""
    return int.from_bytes(hashlib.blake2b(value.encode(), digest_size=8).digest(), "big", signed=True)


def token_hashes(system: str | None, code: str | None) -> tuple[int | None, int | None]:
    """(hash of `system|code`, hash of `code`); `|code` (no system) hashes as `"|code"`."""
    if code is None:
        return None, None
    return hash64(f"{system or ''}|{code}"), hash64(code)


def _add_months(dt: datetime, months: int) -> datetime:
    total = dt.year * 12 + dt.month - 1 + months
    return dt.replace(year=total // 12, month=total % 12 + 1)


def _micros(dt: datetime) -> int:
    delta = dt - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


@lru_cache(maxsize=65536)
def date_range(value: str) -> tuple[int, int] | None:
    """`[lo, hi)` in microseconds covered by a FHIR date, dateTime or instant; None if invalid."""
    m = _DATE.match(value.strip())
    if not m:
        return None
    g = m.groupdict()
    tz = UTC
    if g["tz"] and g["tz"] != "Z":
        sign = 1 if g["tz"][0] == "+" else -1
        tz = timezone(sign * timedelta(hours=int(g["tz"][1:3]), minutes=int(g["tz"][4:6])))
    try:
        return _range_of(g, tz)
    except ValueError:
        return None


def _range_of(g: dict[str, str | None], tz: timezone) -> tuple[int, int]:
    y = int(g["y"] or 0)
    if g["m"] is None:
        lo = datetime(y, 1, 1, tzinfo=tz)
        hi = datetime(y + 1, 1, 1, tzinfo=tz) if y < 9999 else datetime(9999, 12, 31, 23, 59, 59, tzinfo=tz)
    elif g["d"] is None:
        lo = datetime(y, int(g["m"]), 1, tzinfo=tz)
        hi = _add_months(lo, 1)
    elif g["H"] is None:
        lo = datetime(y, int(g["m"]), int(g["d"]), tzinfo=tz)
        hi = lo + timedelta(days=1)
    else:
        frac = g["f"] or ""
        micro = int((frac + "000000")[:6]) if frac else 0
        lo = datetime(
            y, int(g["m"]), int(g["d"]), int(g["H"]), int(g["M"] or 0), int(g["S"] or 0), micro, tzinfo=tz
        )
        if g["M"] is None:
            step = timedelta(hours=1)
        elif g["S"] is None:
            step = timedelta(minutes=1)
        elif not frac:
            step = timedelta(seconds=1)
        else:
            step = timedelta(microseconds=10 ** max(0, 6 - len(frac)))
        hi = lo + step
    return _micros(lo), _micros(hi)


def instant_micros(value: str) -> int | None:
    rng = date_range(value)
    return rng[0] if rng else None
