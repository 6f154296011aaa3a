"""Location `near` on both databases: exact great-circle distance, default distance, units, errors."""

from __future__ import annotations

import math
from typing import Any

import pytest

from fhir_server.errors import FhirError
from fhir_server.search.access import EVERYTHING
from fhir_server.search.compile.near import EARTH_RADIUS_M

# Notre-Dame de Paris; the other points are placed at known great-circle distances from it.
LAT0, LON0 = 48.8530, 2.3499


def _destination(distance_m: float, bearing_deg: float) -> tuple[float, float]:
    """The point `distance_m` from (LAT0, LON0) along `bearing_deg` (spherical formulas)."""
    d, b = distance_m / EARTH_RADIUS_M, math.radians(bearing_deg)
    p1, l1 = math.radians(LAT0), math.radians(LON0)
    p2 = math.asin(math.sin(p1) * math.cos(d) + math.cos(p1) * math.sin(d) * math.cos(b))
    l2 = l1 + math.atan2(math.sin(b) * math.sin(d) * math.cos(p1), math.cos(d) - math.sin(p1) * math.sin(p2))
    return round(math.degrees(p2), 7), round(math.degrees(l2), 7)


def _location(id_: str, lat: float, lon: float) -> dict[str, Any]:
    return {"resourceType": "Location", "id": id_, "status": "active", "name": id_,
            "position": {"latitude": lat, "longitude": lon}}


@pytest.fixture(scope="module")
def places(loader: Any, loaded: Any) -> None:
    north_4km = _destination(4_000, 0)
    east_6km = _destination(6_000, 90)
    # 12 km north-east: inside the 10 km search's bounding box (8.5 km north, 8.5 km east; the
    # box's corner is 14.1 km away) but outside its circle
    corner_12km = _destination(12_000, 45)
    corner_inside = _destination(9_990, 45)
    loader.load([
        _location("center", LAT0, LON0),
        _location("north-4km", *north_4km),
        _location("east-6km", *east_6km),
        _location("ne-12km", *corner_12km),
        _location("ne-9990m", *corner_inside),
        _location("lyon", 45.7640, 4.8357),
        _location("nowhere", 0, 0) | {"position": {"longitude": 1}},  # no latitude: not indexed
        # just across the antimeridian from each other, 2.2 km apart
        _location("fiji-east", -16.5, 179.99),
        _location("fiji-west", -16.5, -179.99),
    ])


CASES = [
    # default distance 5 km (units irrelevant)
    (f"near={LAT0}|{LON0}", ["center", "north-4km"]),
    (f"near={LAT0}|{LON0}||km", ["center", "north-4km"]),
    # units default to km
    (f"near={LAT0}|{LON0}|7", ["center", "east-6km", "north-4km"]),
    (f"near={LAT0}|{LON0}|7|km", ["center", "east-6km", "north-4km"]),
    (f"near={LAT0}|{LON0}|3999|m", ["center"]),
    (f"near={LAT0}|{LON0}|4001|m", ["center", "north-4km"]),
    (f"near={LAT0}|{LON0}|3|[mi_i]", ["center", "north-4km"]),  # 4.83 km
    # the bounding box's corner region: 12 km is out, 9.99 km in, for 10 km
    (f"near={LAT0}|{LON0}|10|km", ["center", "east-6km", "ne-9990m", "north-4km"]),
    (f"near={LAT0}|{LON0}|9.995|km", ["center", "east-6km", "ne-9990m", "north-4km"]),
    (f"near={LAT0}|{LON0}|9.985|km", ["center", "east-6km", "north-4km"]),
    (f"near={LAT0}|{LON0}|11999|m", ["center", "east-6km", "ne-9990m", "north-4km"]),
    (f"near={LAT0}|{LON0}|12001|m", ["center", "east-6km", "ne-12km", "ne-9990m", "north-4km"]),
    (f"near={LAT0}|{LON0}|0|km", ["center"]),
    # Paris - Lyon is 392 km
    (f"near={LAT0}|{LON0}|390|km", ["center", "east-6km", "ne-12km", "ne-9990m", "north-4km"]),
    ("near=45.7640|4.8357|1|km", ["lyon"]),
    (f"near={LAT0}|{LON0}|395|km", ["center", "east-6km", "lyon", "ne-12km", "ne-9990m", "north-4km"]),
    ("near=-16.5|179.999|3|km", ["fiji-east", "fiji-west"]),
    ("near=-16.5|-179.999|1|km", ["fiji-west"]),
    ("near=0|0|100|km", []),
    # values OR
    (f"near=45.7640|4.8357|1|km,{LAT0}|{LON0}|1|m", ["center", "lyon"]),
]


@pytest.mark.parametrize(("qs", "expected"), CASES)
def test_near_matches_positions_within_the_great_circle_distance(places: None, find: Any, qs: str,
                                                                   expected: list[str]) -> None:
    assert find("Location", qs) == expected


def test_near_holds_when_another_term_drives_the_query(places: None, find: Any) -> None:
    # With a selective name term first, near is checked per row (EXISTS probe), not listed.
    assert find("Location", f"name=north-4km&near={LAT0}|{LON0}|5|km") == ["north-4km"]
    assert find("Location", f"name=east-6km&near={LAT0}|{LON0}|5|km") == []


def test_near_missing_finds_locations_with_and_without_a_position(places: None, find: Any) -> None:
    assert find("Location", "near:missing=true&name=nowhere") == ["nowhere"]
    assert find("Location", "near:missing=true&name=lyon") == []
    assert find("Location", "near:missing=false&name=lyon") == ["lyon"]
    assert find("Location", "near:missing=false&name=nowhere") == []


def test_near_pages_through_exact_matches(places: None, find: Any) -> None:
    assert len(find("Location", f"near={LAT0}|{LON0}|10|km&_count=2")) == 2


@pytest.mark.parametrize("value", [
    f"{LAT0}|{LON0}|5|furlong",  # not a UCUM length unit
    f"{LAT0}|{LON0}|5|mi",  # UCUM spells the mile [mi_i]
    f"{LAT0}|{LON0}|-1|km",
    f"{LAT0}|{LON0}|x|km",
    f"{LAT0}",
    f"91|{LON0}|5|km",
    f"{LAT0}|181|5|km",
    f"{LAT0}|{LON0}|5|km|extra",
    f"abc|{LON0}",
])
def test_malformed_near_is_a_400(places: None, find: Any, value: str) -> None:
    with pytest.raises(FhirError) as err:
        find("Location", f"near={value}")
    assert err.value.status == 400


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_engine(request: pytest.FixtureRequest, tmp_path: Any) -> Any:
    """An empty database (no migration run yet) on each backend."""
    from sqlalchemy import create_engine

    from tests.pgcluster import skip_reason
    from tests.search.conftest import _pg_engine

    if request.param == "sqlite":
        engine = create_engine(f"sqlite:///{tmp_path / 'old.db'}")
        yield engine
        engine.dispose()
        return
    url = request.getfixturevalue("pg_server")
    if url is None:
        pytest.skip(skip_reason())
    yield from _pg_engine(url)


def test_upgrade_to_0003_indexes_existing_resources_for_the_new_parameters(fresh_engine: Any) -> None:
    from urllib.parse import parse_qsl

    from sqlalchemy import insert, text

    from fhir_server.fhir.json import dumps
    from fhir_server.search import search
    from fhir_server.search.parse import parse_query
    from fhir_server.search.registry import registry
    from fhir_server.storage.migrate import upgrade
    from fhir_server.storage.schema import resource

    upgrade(fresh_engine, "0002")
    with fresh_engine.begin() as conn:  # the schema as revision 0002 created it before this change
        conn.execute(text("DROP TABLE idx_near"))
        conn.execute(text("DROP TABLE idx_composite_part"))
        conn.execute(text("ALTER TABLE idx_composite DROP COLUMN combo"))
        docs = [
            _location("old-center", LAT0, LON0),
            {"resourceType": "MolecularSequence", "id": "old-ms", "coordinateSystem": 0,
             "referenceSeq": {"chromosome": {"coding": [{"code": "7"}]}}, "variant": [{"start": 10, "end": 20}]},
            {"resourceType": "DocumentReference", "id": "old-doc", "status": "current", "content": [],
             "relatesTo": [{"code": "replaces", "target": {"reference": "DocumentReference/older"}}]},
        ]
        for i, doc in enumerate(docs):
            conn.execute(insert(resource).values(res_type=doc["resourceType"], res_id=doc["id"], version=1,
                                                 last_updated=i, deleted=False, body=dumps(doc)))
    upgrade(fresh_engine)

    def find(res_type: str, qs: str) -> list[str]:
        query = parse_query(registry(), (res_type,), parse_qsl(qs))
        with fresh_engine.connect() as conn:
            return [m.id for m in search(conn, query, EVERYTHING)[0].matches]

    assert find("Location", f"near={LAT0}|{LON0}|1|km") == ["old-center"]
    assert find("Location", "near=0|0|1|km") == []
    assert find("MolecularSequence", "chromosome-variant-coordinate=7$10$20") == ["old-ms"]
    assert find("MolecularSequence", "chromosome-variant-coordinate=7$10$21") == []
    assert find("DocumentReference", "relationship=DocumentReference/older$replaces") == ["old-doc"]


def test_near_and_every_composite_are_listed_in_the_capability_statement() -> None:
    from fhir_server.search import capability_search_params

    location = {p["name"]: p for p in capability_search_params("Location")}
    assert location["near"]["type"] == "special"
    assert location["near"]["definition"] == "http://hl7.org/fhir/SearchParameter/Location-near"
    sequence = {p["name"] for p in capability_search_params("MolecularSequence")}
    assert {"chromosome-variant-coordinate", "chromosome-window-coordinate", "referenceseqid-variant-coordinate",
            "referenceseqid-window-coordinate"} <= sequence
    assert "relationship" in {p["name"] for p in capability_search_params("DocumentReference")}
