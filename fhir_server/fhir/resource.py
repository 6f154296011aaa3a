"""Resource-level helpers with no I/O: ids, instants, meta, stored body bytes.

https://hl7.org/fhir/R4/resource.html
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

from fhir_server import clock
from fhir_server.fhir.json import dumps

__all__ = [
    "etag_version",
    "ID_RE",
    "http_date",
    "instant",
    "new_id",
    "parse_instant",
    "stamp",
    "valid_id",
]

ID_RE = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_INSTANT_RE = re.compile(
    r"^(\d{4})(-(\d{2})(-(\d{2})(T(\d{2}):(\d{2})(:(\d{2})(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?)?)?)?$"
)


def valid_id(value: str) -> bool:
    return bool(ID_RE.match(value))


def etag_version(value: str) -> int | None:
    """The version a version ETag names (`W/"3"`, `"3"` or `3`); None when it is not one.

    The one parser of If-Match, whether it comes as an HTTP header or a Bundle entry's
    `request.ifMatch`.
    """
    tag = value.strip()
    if tag.startswith("W/"):
        tag = tag[2:]
    tag = tag.strip('"')
    return int(tag) if tag.isdigit() and len(tag) <= 9 else None


def new_id() -> str:
    return clock.new_id()


def instant(micros: int) -> str:
    """FHIR instant for a microsecond timestamp, in UTC."""
    dt = datetime.fromtimestamp(micros / 1_000_000, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"


def http_date(micros: int) -> str:
    return format_datetime(datetime.fromtimestamp(micros // 1_000_000, tz=UTC), usegmt=True)


def parse_instant(value: str) -> int | None:
    """Microseconds for a FHIR date/dateTime/instant (the start of a partial one); None if invalid.

    A dateTime without a zone is read as UTC, a server's choice the spec allows.
    """
    m = _INSTANT_RE.match(value.strip())
    if not m:
        return None
    year, month, day = int(m.group(1)), int(m.group(3) or 1), int(m.group(5) or 1)
    hour, minute, second = int(m.group(7) or 0), int(m.group(8) or 0), int(m.group(10) or 0)
    frac = m.group(11)
    micro = int((frac[1:] + "000000")[:6]) if frac else 0
    zone = m.group(12)
    try:
        dt = datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)
    except ValueError:
        return None
    if zone and zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        offset = sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
        return int(dt.timestamp() * 1_000_000) - offset * 1_000_000
    return int(round(dt.timestamp() * 1_000_000))


def stamp(resource: dict[str, Any], id_: str, version: int, last_updated: int) -> tuple[dict[str, Any], bytes]:
    """The stored resource and its body: resourceType, id and meta first, with the server's meta."""
    meta = dict(resource.get("meta") or {})
    meta["versionId"] = str(version)
    meta["lastUpdated"] = instant(last_updated)
    ordered: dict[str, Any] = {"resourceType": resource["resourceType"], "id": id_, "meta": meta}
    for key, value in resource.items():
        if key not in ordered:
            ordered[key] = value
    return ordered, dumps(ordered)
