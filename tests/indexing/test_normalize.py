"""Normalisation: string folding, token hashes, date precision ranges."""

from __future__ import annotations

from fhir_server.indexing.normalize import date_range, fold, hash64, token_hashes

US = 1_000_000
DAY = 86_400 * US


def test_fold_lowers_and_removes_accents() -> None:
    assert fold("Élodie  ÇA") == "elodie ca"
    assert fold("Straße") == "strasse"


def test_token_hashes_distinguish_system_forms() -> None:
    full, code = token_hashes("http://loinc.org", "8480-6")
    assert code == hash64("8480-6") and full == hash64("http://loinc.org|8480-6")
    assert token_hashes(None, "x")[0] == hash64("|x") != token_hashes("s", "x")[0]


def test_date_ranges_follow_precision() -> None:
    lo, hi = date_range("2020")  # type: ignore[misc]
    assert hi - lo == 366 * DAY  # a leap year
    lo, hi = date_range("2020-02")  # type: ignore[misc]
    assert hi - lo == 29 * DAY
    lo, hi = date_range("2020-02-03")  # type: ignore[misc]
    assert hi - lo == DAY
    lo, hi = date_range("2020-02-03T10:00")  # type: ignore[misc]
    assert hi - lo == 60 * US
    lo, hi = date_range("2020-02-03T10:00:00.5Z")  # type: ignore[misc]
    assert hi - lo == 100_000


def test_timezones_shift_the_instant() -> None:
    assert date_range("2020-01-01T01:00:00+01:00") == date_range("2020-01-01T00:00:00Z")


def test_invalid_dates_give_none() -> None:
    assert date_range("2020-13") is None
    assert date_range("2020-02-30") is None
    assert date_range("tomorrow") is None
