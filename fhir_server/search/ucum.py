"""UCUM units to canonical form, so quantity search compares 540 mg/dL with 5.4 g/L.

https://hl7.org/fhir/R4/search.html#quantity and https://ucum.org/ucum

R4 lets a server "canonicalise" UCUM quantities: both the indexed value and the searched value
are converted to base units and compared there. `ucumvert` parses UCUM codes (annotations such
as `{1.73_m2}` count as 1, as UCUM says) into `pint` units; a unit then becomes an affine map
`canonical = a * value + b` (b is not 0 for Cel and [degF] only) and the name of its base
dimension (`kilogram / meter ** 3`), which must be the same for two quantities to compare. A
code that does not parse, or parses into something pint cannot reduce, has no canonical form:
such quantities are still found by their own unit, as before.
"""

from __future__ import annotations

import threading
from functools import lru_cache
from typing import Any, NamedTuple

__all__ = ["UCUM", "Canonical", "canonical", "warm_up"]

UCUM = "http://unitsofmeasure.org"

_lock = threading.Lock()
_registry: Any = None


class Canonical(NamedTuple):
    a: float  # scale
    b: float  # offset (temperatures)
    dimension: str  # the base units, e.g. "kilogram / meter ** 3"

    def of(self, value: float) -> float:
        return self.a * value + self.b


def _ucum_registry() -> Any:
    global _registry
    with _lock:  # building it takes ~0.4 s: once, on first use
        if _registry is None:
            from ucumvert import PintUcumRegistry

            _registry = PintUcumRegistry()
        return _registry


@lru_cache(maxsize=1)
def _not_comparable() -> frozenset[str]:
    """Bracketed UCUM atoms that have no canonical form: arbitrary units ([iU], [CFU]...: "not
    of any specific dimension and not commensurable with any other unit") and special ones
    other than the two temperatures ([pH], [hp_X]...), from the UCUM table `ucumvert` ships."""
    import xml.etree.ElementTree as ET
    from importlib import resources

    root = ET.fromstring(resources.files("ucumvert").joinpath("vendor/ucum-essence.xml").read_bytes())
    return frozenset(
        code
        for unit in root.iter()
        if unit.tag.rpartition("}")[2] == "unit"
        and (unit.get("isArbitrary") == "yes" or unit.get("isSpecial") == "yes")
        and "[" in (code := unit.get("Code", "")) and code != "[degF]"
    )


@lru_cache(maxsize=4096)
def canonical(code: str) -> Canonical | None:
    """The canonical map of a UCUM code, or None when it has none here."""
    if not code or len(code) > 128:
        return None
    try:
        if "[" in code and any(atom in code for atom in _not_comparable()):
            return None
        reg = _ucum_registry()
        unit = reg.from_ucum(code)
        unit = getattr(unit, "units", unit)
        # Two points of the map; far apart, so the scale keeps its precision next to an offset.
        zero = reg.Quantity(0.0, unit).to_base_units()
        far = reg.Quantity(1000.0, unit).to_base_units()
        b = float(zero.magnitude)
        a = (float(far.magnitude) - b) / 1000.0
        dimension = str(far.units)
    except Exception:  # noqa: BLE001 - any unit ucumvert/pint cannot handle simply has no canonical form
        return None
    # (logarithmic units such as dB come out of pint as absurd scales: no canonical form)
    if not 1e-30 < a < 1e30 or len(dimension) > 128:
        return None
    return Canonical(a, b, dimension)


def warm_up() -> None:
    """Build the UCUM registry in the background, so the first UCUM quantity written after a
    start does not wait for it (writes that come sooner wait on the lock, never build twice)."""
    threading.Thread(target=_ucum_registry, name="ucum-warm-up", daemon=True).start()
