"""Location `near`: positions within a distance of a point, on a sphere, the same SQL on both databases.

https://hl7.org/fhir/R4/location.html#positional (value `latitude|longitude|distance|units`)

Rows of `idx_near` keep `Location.position` in degrees and as the point (x, y, z) on the unit
sphere. A value becomes a bounding box on (lat, lon), which the `(res_type, param, lat, lon,
...)` index answers as a range scan, and the exact test

    (x - x0)^2 + (y - y0)^2 + (z - z0)^2 <= (2 sin(d / 2R))^2

on the same index rows. The left side is the squared chord between the two points, and
`chord^2 / 4 = sin^2(dlat/2) + cos lat1 cos lat2 sin^2(dlon/2)` is the haversine, so this is
the great-circle distance test itself, written with `+ - *` only. That choice over a Python
function registered on SQLite connections (SQLite has no trigonometry by default): the whole
filter stays in SQL, so `_count`, paging and `_total` are exact; it needs no hook on every
connection of every engine; both databases evaluate the same IEEE double arithmetic, so a point
on the edge answers the same; and unlike the spherical law of cosines it stays accurate for
distances of a few metres. The box is a superset of the circle (the exact test decides), with
a tiny margin so that rounding in its bounds can never drop a point the exact test keeps.

The distance defaults to 5 km (R4B's guidance; R4 leaves it to the server), the units to km.
Units are UCUM length units; anything else is a 400, as are coordinates out of range.
"""

from __future__ import annotations

import math
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import ColumnElement, and_, or_, true

from fhir_server.indexing.extract import Node
from fhir_server.search.ast import Param, Value
from fhir_server.search.compile.common import Ctx, Row, any_of, bad_value, in_index, missing, unsupported_modifier
from fhir_server.search.compile.number import as_float
from fhir_server.search.registry import SearchParamImpl
from fhir_server.storage.index_schema import idx_near

__all__ = ["DEFAULT_DISTANCE_M", "EARTH_RADIUS_M", "UNITS", "index_rows", "parse_near", "predicate", "unit_vector"]

EARTH_RADIUS_M = 6_371_008.8  # IUGG mean radius; WGS84 is an ellipsoid, "near" need not be
DEFAULT_DISTANCE_M = 5_000.0
# UCUM length units, in metres.
UNITS: dict[str, float] = {
    "m": 1.0, "km": 1000.0, "hm": 100.0, "dam": 10.0, "dm": 0.1, "cm": 0.01, "mm": 0.001,
    "[mi_i]": 1609.344, "[mi_us]": 6336000 / 3937, "[nmi_i]": 1852.0, "[yd_i]": 0.9144,
    "[ft_i]": 0.3048, "[ft_us]": 1200 / 3937, "[in_i]": 0.0254,
}
_MARGIN_DEG = 1e-9  # about 0.1 mm: the box only has to be a superset


def unit_vector(lat: float, lon: float) -> tuple[float, float, float]:
    phi, lam = math.radians(lat), math.radians(lon)
    return math.cos(phi) * math.cos(lam), math.cos(phi) * math.sin(lam), math.sin(phi)


def index_rows(nodes: list[Node], impl: SearchParamImpl) -> list[Row]:
    rows: list[Row] = []
    for value, _hint in nodes:
        if not isinstance(value, dict):
            continue
        lat, lon = as_float(value.get("latitude")), as_float(value.get("longitude"))
        if lat is None or lon is None or not (-90 <= lat <= 90 and -180 <= lon <= 180):
            continue  # not a position a search could be about
        x, y, z = unit_vector(lat, lon)
        rows.append(("near", {"lat": lat, "lon": lon, "x": x, "y": y, "z": z}))
    return rows


def _decimal(p: Param, v: Value, text: str, what: str) -> float:
    try:
        d = Decimal(text)
    except InvalidOperation:
        raise bad_value(p, v, f"the {what} is not a number") from None
    if not d.is_finite():
        raise bad_value(p, v, f"the {what} is not a finite number")
    return float(d)


def parse_near(p: Param, v: Value) -> tuple[float, float, float]:
    """(latitude, longitude, distance in metres) of `lat|lon[|distance[|units]]`."""
    parts = v.text.split("|")
    if not 2 <= len(parts) <= 4:
        raise bad_value(p, v, "expected latitude|longitude|distance|units")
    lat = _decimal(p, v, parts[0], "latitude")
    lon = _decimal(p, v, parts[1], "longitude")
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise bad_value(p, v, "latitude must be within [-90, 90] and longitude within [-180, 180]")
    distance = parts[2] if len(parts) > 2 else ""
    units = parts[3] if len(parts) > 3 else ""
    if not distance:
        return lat, lon, DEFAULT_DISTANCE_M
    d = _decimal(p, v, distance, "distance")
    if d < 0:
        raise bad_value(p, v, "the distance is negative")
    factor = UNITS.get(units or "km")
    if factor is None:
        raise bad_value(p, v, f"unknown distance unit {units!r} (UCUM length units: {', '.join(UNITS)})")
    return lat, lon, d * factor


def _longitudes(lon: float, half: float) -> ColumnElement[bool] | None:
    """Longitudes within `half` degrees of `lon`, wrapping at the antimeridian (None: all)."""
    t = idx_near
    if half >= 180:
        return None
    lo, hi = lon - half, lon + half
    if lo < -180:
        return or_(t.c.lon >= lo + 360, t.c.lon <= hi)
    if hi > 180:
        return or_(t.c.lon >= lo, t.c.lon <= hi - 360)
    return and_(t.c.lon >= lo, t.c.lon <= hi)


def near_condition(lat: float, lon: float, distance_m: float) -> ColumnElement[bool]:
    """Positions within `distance_m` metres of (lat, lon) on the sphere."""
    t = idx_near
    theta = distance_m / EARTH_RADIUS_M  # the distance as an angle at the centre
    if theta >= math.pi:
        return true()  # the whole sphere
    theta_deg = math.degrees(theta) + _MARGIN_DEG
    lat_lo, lat_hi = lat - theta_deg, lat + theta_deg
    conds: list[ColumnElement[bool]] = [t.c.lat >= lat_lo, t.c.lat <= lat_hi]
    if lat_lo > -90 and lat_hi < 90:  # no pole inside: the circle spans a bounded longitude range
        half = math.degrees(math.asin(min(1.0, math.sin(theta) / math.cos(math.radians(lat)))))
        lons = _longitudes(lon, half + _MARGIN_DEG)
        if lons is not None:
            conds.append(lons)
    x0, y0, z0 = unit_vector(lat, lon)
    chord2 = (2 * math.sin(theta / 2)) ** 2
    dx, dy, dz = t.c.x - x0, t.c.y - y0, t.c.z - z0
    conds.append(dx * dx + dy * dy + dz * dz <= chord2)
    return and_(*conds)


def predicate(p: Param, impl: SearchParamImpl, r: Any, ctx: Ctx) -> ColumnElement[bool]:
    if p.modifier == "missing":  # Locations with (true) or without (false) a usable position
        return missing(idx_near, r, impl.res_type, p)
    if p.modifier is not None:
        raise unsupported_modifier(p, impl)
    conds = [near_condition(*parse_near(p, v)) for v in p.values]
    return in_index(idx_near, r, impl.res_type, p.code, any_of(conds))
