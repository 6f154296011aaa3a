"""Bundle builders that splice stored resource bytes in without re-serialising them.

https://hl7.org/fhir/R4/bundle.html
"""

from __future__ import annotations

from typing import Any

import orjson

__all__ = ["bundle_bytes", "entry_bytes"]


def entry_bytes(fields: dict[str, Any], resource: bytes | None = None, after: dict[str, Any] | None = None) -> bytes:
    """One Bundle.entry: `fields` (fullUrl...), then the stored resource bytes, then `after`."""
    parts = [orjson.dumps(fields)[:-1]]
    if resource is not None:
        parts.append((b"," if fields else b"") + b'"resource":' + resource)
    if after:
        parts.append((b"," if fields or resource is not None else b"") + orjson.dumps(after)[1:-1])
    return b"".join(parts) + b"}"


def bundle_bytes(header: dict[str, Any], entries: list[bytes]) -> bytes:
    """A Bundle: `header` (resourceType, type, total, link...) then `entry` when there are any."""
    head = orjson.dumps(header)
    if not entries:
        return head
    return head[:-1] + b',"entry":[' + b",".join(entries) + b"]}"
