"""String search on both databases: starts-with folded, :exact, :contains, :missing, name/address parts."""

from __future__ import annotations

from typing import Any

import pytest

CASES = [
    ("Patient", "name=dup", ["p1"]),
    ("Patient", "name=DUPONT", ["p1"]),
    ("Patient", "name=pont", []),
    ("Patient", "given=elodie", ["p1"]),  # accent folded on both sides
    ("Patient", "given=zoe", ["p3"]),
    ("Patient", "family=o'b", ["p3"]),
    ("Patient", "name=dupont,martin", ["p1", "p2"]),
    ("Patient", "name=dupont&name=marie", ["p1"]),
    ("Patient", "name=dupont&name=jean", []),
    ("Patient", "name:exact=Élodie", ["p1"]),
    ("Patient", "name:exact=elodie", []),
    ("Patient", "name:contains=pon", ["p1"]),
    ("Patient", "name:contains=xyz", []),
    ("Patient", "name:contains=100%", []),  # LIKE wildcards are escaped
    ("Patient", "address-city=par", ["p1"]),
    ("Patient", "address=lyon", ["p2"]),
    ("Patient", "address-postalcode=75", ["p1"]),
    ("Patient", "address-city:missing=true", ["p3"]),
    ("Patient", "address-city:missing=false", ["p1", "p2"]),
    ("Organization", "name=clinique", ["org1"]),
]


@pytest.mark.parametrize(("res_type", "qs", "expected"), CASES)
def test_string_search(find: Any, res_type: str, qs: str, expected: list[str]) -> None:
    assert find(res_type, qs) == expected
