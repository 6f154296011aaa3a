"""Tiny French identifier key checks used by the data tests (NIR/INS key, Luhn, FINESS).

The real rules, with messages, live in fhir_server.validation.fr_identifiers (another module);
these helpers only keep the example data honest until that module exists.
"""
from __future__ import annotations


def luhn_ok(digits: str) -> bool:
    """True when the digit string passes the Luhn check (RPPS, SIREN, SIRET)."""
    if not digits.isdigit():
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def nir_ok(nir: str) -> bool:
    """True for a 15-character NIR whose key is 97 - (13-digit number mod 97); 2A/2B count as 19/18."""
    if len(nir) != 15 or not nir[13:].isdigit():
        return False
    body = nir[:13].upper()
    # Corsica: department 2A/2B is replaced by 19/18 before computing the key.
    body = body[:5] + {"2A": "19", "2B": "18"}.get(body[5:7], body[5:7]) + body[7:]
    if not body.isdigit():
        return False
    return 97 - int(body) % 97 == int(nir[13:])


def finess_ok(finess: str) -> bool:
    """True for a 9-digit FINESS whose last digit is the Luhn key of the first 8."""
    return len(finess) == 9 and luhn_ok(finess)
