"""Date search on both databases: every prefix with a positive and a negative case, precision rules,
Periods, timezones, :missing and _lastUpdated."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_server.errors import FhirError

# p1 birthDate 1970-03-04 (a day), p2 1980 (a year), p3 none.
# o1 2020-03-01T10:00:00Z, o2 2021-06-15, o3 Period 2019-01-01..2019-12-31, o4 2022.
CASES = [
    ("Patient", "birthdate=1970-03-04", ["p1"]),
    ("Patient", "birthdate=1970-03", ["p1"]),  # the day lies within the month
    ("Patient", "birthdate=1970-03-05", []),
    ("Patient", "birthdate=1980-05-01", []),  # a year is not within a day
    ("Patient", "birthdate=eq1980", ["p2"]),
    ("Patient", "birthdate=ne1980", ["p1"]),
    ("Patient", "birthdate=ne1970-03-04", ["p2"]),
    ("Patient", "birthdate=gt1975", ["p2"]),
    ("Patient", "birthdate=gt1980", []),
    ("Patient", "birthdate=lt1975", ["p1"]),
    ("Patient", "birthdate=lt1970-03-04", []),
    ("Patient", "birthdate=ge1980", ["p2"]),
    ("Patient", "birthdate=ge1981", []),
    ("Patient", "birthdate=le1970-03-04", ["p1"]),
    ("Patient", "birthdate=le1970-03-03", []),
    ("Patient", "birthdate=sa1970-03-03", ["p1", "p2"]),
    ("Patient", "birthdate=sa1980", []),
    ("Patient", "birthdate=eb1971", ["p1"]),
    ("Patient", "birthdate=eb1970", []),
    ("Patient", "birthdate=ap1970-03-05", ["p1"]),
    ("Patient", "birthdate=ap1950", []),
    ("Patient", "birthdate=ge1970&birthdate=lt1971", ["p1"]),
    ("Patient", "birthdate=1970,1980", ["p1", "p2"]),
    ("Patient", "birthdate:missing=true", ["p3"]),
    ("Patient", "birthdate:missing=false", ["p1", "p2"]),
    # dateTime with a timezone: 2020-03-01T10:00Z is 11:00 in Paris
    ("Observation", "date=2020-03-01T11:00:00%2B01:00", ["o1"]),
    ("Observation", "date=2020-03-01T10:00:01Z", []),
    ("Observation", "date=2020-03-01", ["o1"]),
    # Periods: contained for eq, overlapping edges for gt/lt
    ("Observation", "date=2019", ["o3"]),
    ("Observation", "date=2019-06", []),  # the year-long period is not within June
    ("Observation", "date=gt2019-06-01", ["o1", "o2", "o3", "o4"]),
    ("Observation", "date=lt2019-06-01", ["o3"]),
    ("Observation", "date=eb2020", ["o3"]),
    ("Observation", "date=sa2021-06-15", ["o4"]),
    ("CarePlan", "date=gt2030", ["cp1"]),  # open-ended period
    ("CarePlan", "date=lt2019", []),
    ("Condition", "onset-date=2015", ["c1"]),
    ("Condition", "onset-date=2015-07", []),
]


@pytest.mark.parametrize(("res_type", "qs", "expected"), CASES)
def test_date_search(find: Any, res_type: str, qs: str, expected: list[str]) -> None:
    assert find(res_type, qs) == expected


@pytest.mark.parametrize("value", ["2020-13-01", "yesterday", "2020-02-30", "ge"])
def test_invalid_date_is_a_400(find: Any, value: str) -> None:
    with pytest.raises(FhirError) as err:
        find("Patient", f"birthdate={value}")
    assert err.value.status == 400


def test_last_updated_prefixes(find: Any) -> None:
    everything = find("Patient", "")
    assert find("Patient", "_lastUpdated=gt2000-01-01") == everything
    assert find("Patient", "_lastUpdated=lt2000-01-01") == []
    assert find("Patient", "_lastUpdated=ge2020-09-13") == everything  # loader clock starts 2020-09-13
    assert find("Patient", "_lastUpdated=le2020-09-12") == []
