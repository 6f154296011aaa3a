"""FHIR JSON in and out: bytes in, bytes out, decimals kept as written.

https://hl7.org/fhir/R4/json.html

FHIR decimals carry their precision in their text (`1.50` is not `1.5`), so they are parsed as
`decimal.Decimal` and written back verbatim with `orjson.Fragment`. orjson's own parser would
turn them into floats and lose that, so parsing uses the standard library's C scanner.
"""

from __future__ import annotations

import decimal
import json
from typing import Any

import orjson

from fhir_server.errors import invalid

__all__ = ["dumps", "dumps_pretty", "loads"]


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


_decoder = json.JSONDecoder(parse_float=decimal.Decimal, parse_constant=_reject_constant)


def loads(data: bytes | str) -> Any:
    """Parse JSON; raise a 400 FhirError that says where the text is broken."""
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise invalid(f"The body is not UTF-8 text: {exc}") from None
    else:
        text = data
    try:
        value, end = _decoder.raw_decode(text, _skip_ws(text, 0))
    except json.JSONDecodeError as exc:
        raise invalid(f"Malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except (ValueError, RecursionError) as exc:
        raise invalid(f"Malformed JSON: {exc}") from None
    if _skip_ws(text, end) != len(text):
        raise invalid("Malformed JSON: extra data after the JSON value")
    return value


def _skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\n\r":
        pos += 1
    return pos


def _default(obj: Any) -> Any:
    if isinstance(obj, decimal.Decimal):
        if not obj.is_finite():
            raise TypeError("non-finite decimal")
        return orjson.Fragment(str(obj))
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def dumps(obj: Any) -> bytes:
    try:
        return orjson.dumps(obj, default=_default)
    except (TypeError, orjson.JSONEncodeError) as exc:
        raise invalid(f"Value cannot be represented in FHIR JSON: {exc}") from None


def dumps_pretty(obj: Any) -> bytes:
    return orjson.dumps(obj, default=_default, option=orjson.OPT_INDENT_2)
