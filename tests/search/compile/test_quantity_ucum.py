"""Quantity search in UCUM units compares in base units, on both databases.

540 mg/dL is 5.4 g/L; 37 Cel is 98.6 [degF]; a mole is not a gram; arbitrary units ([iU])
and codes without a canonical form are still found by their own unit only.
"""

from __future__ import annotations

from typing import Any

import pytest

from fhir_server.search.ucum import canonical

UCUM = "http://unitsofmeasure.org"


def _obs(id_: str, value: float | str, code: str, system: str = UCUM) -> dict[str, Any]:
    from decimal import Decimal

    return {"resourceType": "Observation", "id": id_, "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "ucum-test"}]},
            "valueQuantity": {"value": Decimal(str(value)), "unit": code, "system": system, "code": code}}


@pytest.fixture(scope="module")
def quantities(loader: Any, loaded: Any) -> None:
    loader.load([
        _obs("u-mgdl", 540, "mg/dL"),  # 5.4 g/L
        _obs("u-gl", "5.35", "g/L"),  # the low edge of 5.4's implicit range [5.35, 5.45)
        _obs("u-ugml", 5500, "ug/mL"),  # 5.5 g/L
        _obs("u-mmol", "5.4", "mmol/L"),  # another dimension
        _obs("u-cel", 37, "Cel"),
        _obs("u-degf", "98.6", "[degF]"),  # 37 Cel
        _obs("u-iu", 540, "[iU]/L"),  # arbitrary unit: no canonical form
        _obs("u-local", 540, "mg/dL", system="http://example.org/units"),  # not UCUM
    ])


CASES = [
    # the same concentration written in three units
    (f"value-quantity=5.4|{UCUM}|g/L", ["u-gl", "u-mgdl"]),
    (f"value-quantity=540|{UCUM}|mg/dL", ["u-mgdl"]),  # [539.5, 540.5) mg/dL misses 5.35 g/L
    (f"value-quantity=0.54|{UCUM}|g/dL", ["u-gl", "u-mgdl"]),
    (f"value-quantity=5.5|{UCUM}|g/L", ["u-ugml"]),
    (f"value-quantity=5.40|{UCUM}|g/L", ["u-mgdl"]),  # more digits, narrower range
    (f"value-quantity=gt5.4|{UCUM}|g/L", ["u-ugml"]),
    (f"value-quantity=ge5.4|{UCUM}|g/L", ["u-mgdl", "u-ugml"]),
    (f"value-quantity=lt5.4|{UCUM}|g/L", ["u-gl"]),
    (f"value-quantity=le540|{UCUM}|mg/dL", ["u-gl", "u-mgdl"]),
    (f"value-quantity=ne5.4|{UCUM}|g/L", ["u-ugml"]),
    (f"value-quantity=ap5.4|{UCUM}|g/L", ["u-gl", "u-mgdl", "u-ugml"]),
    (f"value-quantity=7|{UCUM}|g/L", []),
    # moles are not grams: no match across dimensions
    (f"value-quantity=5.4|{UCUM}|mmol/L", ["u-mmol"]),
    (f"value-quantity=5400|{UCUM}|umol/L", ["u-mmol"]),
    # affine temperatures
    (f"value-quantity=98.6|{UCUM}|[degF]", ["u-cel", "u-degf"]),
    (f"value-quantity=37|{UCUM}|Cel", ["u-cel", "u-degf"]),
    (f"value-quantity=gt38|{UCUM}|Cel", []),
    (f"value-quantity=310.15|{UCUM}|K", ["u-cel", "u-degf"]),
    # no canonical form: the unit as written
    (f"value-quantity=540|{UCUM}|[iU]/L", ["u-iu"]),
    (f"value-quantity=0.54|{UCUM}|[iU]/mL", []),
    # not UCUM, or no system: compared in the unit written, as before
    ("value-quantity=540|http://example.org/units|mg/dL", ["u-local"]),
    ("value-quantity=540||mg/dL", ["u-local", "u-mgdl"]),
    ("value-quantity=5.4||g/L", ["u-gl"]),
]


@pytest.mark.parametrize(("qs", "expected"), CASES)
def test_ucum_quantities_compare_in_base_units(quantities: None, find: Any, qs: str, expected: list[str]) -> None:
    assert find("Observation", qs + "&code=http://loinc.org|ucum-test") == expected


def test_units_without_a_canonical_form() -> None:
    assert canonical("mg/dL") is not None and canonical("mg/dL").dimension == canonical("g/L").dimension  # type: ignore[union-attr]
    for code in ("[iU]/L", "[pH]", "dB", "%[slope]", "not a unit", "{score}", ""):
        assert canonical(code) is None, code


def test_a_value_that_overflows_in_base_units_keeps_only_its_own_unit() -> None:
    from fhir_server.search.compile.quantity import index_rows

    (_kind, row), = index_rows([({"value": 1e300, "system": UCUM, "code": "10*12/L"}, None)], None)  # type: ignore[arg-type]
    assert "c_value" not in row and row["code"] == "10*12/L"
    (_kind, row), = index_rows([({"value": 5, "system": UCUM, "code": "g/L"}, None)], None)  # type: ignore[arg-type]
    assert abs(row["c_value"] - 5) < 1e-9
