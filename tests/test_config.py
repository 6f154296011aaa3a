"""Settings: every FHIR_* variable checked at start, one line naming it and what it accepts."""

from __future__ import annotations

from pathlib import Path

import pytest

from fhir_server.config import SettingsError, get_settings, mask_url


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("FHIR_LOG_LEVEL", "verbose", "FHIR_LOG_LEVEL='verbose' is not one of debug, info, warning, error"),
        ("FHIR_UNKNOWN_PROFILE", "ignore", "FHIR_UNKNOWN_PROFILE='ignore' is not one of warning, error"),
        ("FHIR_DATABASE_URL", "mysql://u@h/db", "FHIR_DATABASE_URL='mysql://u@h/db' has an unsupported scheme"),
        ("FHIR_DATABASE_URL", "data/fhir.db", "FHIR_DATABASE_URL='data/fhir.db' is not a database URL"),
        ("FHIR_MAX_PAGE_SIZE", "0", "FHIR_MAX_PAGE_SIZE='0' must be >= 1"),
        ("FHIR_MAX_PAGE_SIZE", "lots", "FHIR_MAX_PAGE_SIZE='lots' is not an integer"),
        ("FHIR_ALLOW_MULTIPLE_DELETE", "maybe", "FHIR_ALLOW_MULTIPLE_DELETE='maybe' is not one of true, false"),
        ("FHIR_BASE_URL", "fhir.example.org", "FHIR_BASE_URL='fhir.example.org' is not an http:// or https:// URL"),
        ("FHIR_PROFILES_DIR", "/nonexistent/profiles", "FHIR_PROFILES_DIR='/nonexistent/profiles' is not a folder"),
        ("FHIR_REQUIRED_PROFILES", "Patient", "FHIR_REQUIRED_PROFILES='Patient' has 'Patient': each item must be"),
        ("FHIR_AUTH", "maybe", "FHIR_AUTH='maybe' is not one of on, off"),
        ("FHIR_EXTERNAL_JWKS_URL", "jwks.json", "FHIR_EXTERNAL_JWKS_URL='jwks.json' is not an http:// or https://"),
    ],
)
def test_a_wrong_setting_is_one_line_naming_it(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        get_settings()
    assert len(caught.value.lines) == 1
    assert caught.value.lines[0].startswith(message), caught.value.lines[0]
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("typed", "used"),
    [
        ("postgres://u:pw@db/fhir", "postgresql+psycopg://u:pw@db/fhir"),
        ("postgresql://u:pw@db/fhir", "postgresql+psycopg://u:pw@db/fhir"),
        ("postgresql+psycopg://u:pw@db/fhir", "postgresql+psycopg://u:pw@db/fhir"),
        (" sqlite:///data/x.db ", "sqlite:///data/x.db"),
    ],
)
def test_database_urls_are_accepted_as_users_type_them(monkeypatch: pytest.MonkeyPatch, typed: str, used: str) -> None:
    monkeypatch.setenv("FHIR_DATABASE_URL", typed)
    assert get_settings().database_url == used


def test_log_level_is_case_insensitive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FHIR_LOG_LEVEL", "WARNING")
    assert get_settings().log_level == "warning"


def test_an_existing_profiles_folder_is_accepted(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FHIR_PROFILES_DIR", str(tmp_path))
    assert get_settings().profiles_dir == str(tmp_path)


def test_mask_url_hides_the_password_only() -> None:
    assert mask_url("postgresql+psycopg://fhir:s3cret@db:5432/fhir") == "postgresql+psycopg://fhir:***@db:5432/fhir"
    assert mask_url("sqlite:///data/fhir.db") == "sqlite:///data/fhir.db"
    assert mask_url("not a url") == "<unparseable URL>"
