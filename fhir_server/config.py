"""Server settings, read once from the environment (prefix `FHIR_`), each one checked at start.

Nothing else in the package reads `os.environ`: everything it needs is a field here, so the
README's configuration table and this class are the same list. A wrong value is refused when the
settings are read, with one line naming the variable and what it accepts (`SettingsError`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

__all__ = ["LOG_LEVELS", "Settings", "SettingsError", "StartupError", "get_settings", "mask_url"]

LOG_LEVELS = ("debug", "info", "warning", "error")
_UNKNOWN_PROFILE = ("warning", "error")
# What people type for PostgreSQL, and the driver this server ships (psycopg 3).
_PG_SCHEMES = {"postgres": "postgresql+psycopg", "postgresql": "postgresql+psycopg",
               "postgresql+psycopg": "postgresql+psycopg"}
_DB_FORMS = "sqlite:///path/to/file.db, postgresql://user:pw@host/db (also postgres://, postgresql+psycopg://)"


class SettingsError(ValueError):
    """Configuration refused: one line per wrong variable, each naming it and what it accepts."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("; ".join(lines))
        self.lines = lines


class StartupError(RuntimeError):
    """The server refuses to start (e.g. a shipped SearchParameter it cannot register): says what to fix."""


def mask_url(url: str) -> str:
    """The database URL fit for a log: the password replaced by ***."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable URL>"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FHIR_", frozen=True, extra="ignore")

    database_url: str = Field(
        default=f"sqlite:///{Path('data') / 'fhir.db'}",
        description="SQLAlchemy URL: sqlite:///path/to/file.db or postgresql+psycopg://user:pw@host/db",
    )
    base_url: str = Field(
        default="",
        description="Public base URL of the FHIR endpoint (e.g. https://fhir.example.org/fhir); "
        "empty = derived from each request",
    )
    default_page_size: int = Field(default=20, ge=1, description="Page size when _count is absent")
    max_page_size: int = Field(default=1000, ge=1, description="Largest _count honoured")
    max_bundle_entries: int = Field(default=1000, ge=1, description="Most entries in a batch/transaction")
    max_body_bytes: int = Field(default=16 * 1024 * 1024, ge=1024, description="Largest request body")
    allow_multiple_delete: bool = Field(
        default=False, description="Allow conditional delete to remove several resources"
    )
    max_multiple_delete: int = Field(default=100, ge=1, description="Most resources one conditional delete removes")
    log_level: str = Field(default="info", description="debug, info, warning or error")
    access_log: bool = Field(default=True, description="One log line per request (method, path, status, duration)")
    pg_pool_size: int = Field(default=10, ge=1, description="PostgreSQL connection pool size")
    sqlite_readers: int = Field(default=4, ge=1, description="SQLite concurrent reader threads")
    sqlite_mmap_bytes: int = Field(
        default=1 << 30, ge=0, description="SQLite memory-mapped read window per connection (0: off)"
    )
    group_commit_max: int = Field(default=256, ge=1, description="Most writes one SQLite commit groups")
    profiles_dir: str = Field(
        default="",
        description="Folder of conformance resources (StructureDefinition, ValueSet, ...) loaded at start; "
        "empty = the profiles/ folder shipped beside the package",
    )
    load_profiles: bool = Field(
        default=True, description="Store the profiles folder's resources at start, so the API serves them"
    )
    required_profiles: str = Field(
        default="",
        description="Profiles every resource of a type must meet, e.g. "
        "'Patient=https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-patient' (comma-separated)",
    )
    unknown_profile: str = Field(
        default="warning",
        description="What a meta.profile the server does not know gives: warning (accepted) or error (422)",
    )

    # -- authentication and authorisation (fhir_server/auth/) ------------------------------------
    auth: str = Field(
        default="on", pattern="^(on|off)$",
        description="on: every /fhir request needs a bearer token; off: no checks (local experiments only)",
    )
    auth_issuer: str = Field(
        default="",
        description="Issuer URL of the authorisation server (its endpoints live under it); "
        "empty = the base URL with /fhir replaced by /auth",
    )
    token_lifetime_seconds: int = Field(default=300, ge=30, le=86400, description="Access token lifetime")
    refresh_token_lifetime_seconds: int = Field(
        default=30 * 86400, ge=60, description="Refresh token lifetime (offline_access); each use rotates it"
    )
    key_rotation_days: int = Field(
        default=30, ge=1, description="Age at which the token signing key is replaced (the old one keeps verifying)"
    )
    external_issuer: str = Field(
        default="", description="Issuer (iss) of an external OpenID provider whose tokens are accepted "
        "(e.g. Pro Santé Connect); empty = none"
    )
    external_jwks_url: str = Field(default="", description="JWKS URL of the external issuer")
    external_audience: str = Field(
        default="", description="The aud (or azp) the external issuer's tokens must carry for this server"
    )
    external_scopes: str = Field(
        default="user/*.rs openid fhirUser",
        description="SMART scopes given to a professional authenticated by the external issuer",
    )
    external_algorithms: str = Field(
        default="RS256,ES256,PS256", description="Signature algorithms accepted from the external issuer"
    )
    external_client_id: str = Field(
        default="", description="Our client id at the external provider, to offer 'Log in with Pro Santé Connect' "
        "on the authorize page (with the three settings below); empty = no such button"
    )
    external_client_secret: str = Field(default="", description="Our client secret at the external provider")
    external_authorize_url: str = Field(default="", description="The external provider's authorization endpoint")
    external_token_url: str = Field(default="", description="The external provider's token endpoint")
    external_login_scope: str = Field(default="openid scope_all", description="Scopes asked of the external provider")
    cors_origins: str = Field(
        default="", description="Origins allowed by CORS (comma-separated; '*' = any; empty = no CORS headers)"
    )
    rate_limit_per_minute: int = Field(
        default=1200, ge=0,
        description="Requests per minute per client (token) or per address (auth endpoints); 0 = off",
    )
    max_auth_body_bytes: int = Field(default=64 * 1024, ge=1024, description="Largest body of an /auth request")
    login_users: bool = Field(
        default=True, description="Offer the local user login (users created by `fhir-server users add`) "
        "on the authorize page"
    )

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        value = value.strip()
        scheme, sep, rest = value.partition("://")
        if not sep:
            raise ValueError(f"is not a database URL: use {_DB_FORMS}")
        if scheme in _PG_SCHEMES:
            value = f"{_PG_SCHEMES[scheme]}://{rest}"
        elif scheme != "sqlite":
            raise ValueError(f"has an unsupported scheme '{scheme}': use {_DB_FORMS}")
        try:
            make_url(value)
        except ArgumentError as exc:
            raise ValueError(f"is not a valid URL ({exc}): use {_DB_FORMS}") from None
        return value

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        return _one_of(value, LOG_LEVELS)

    @field_validator("unknown_profile")
    @classmethod
    def _unknown_profile(cls, value: str) -> str:
        return _one_of(value, _UNKNOWN_PROFILE)

    @field_validator("base_url", "auth_issuer", "external_issuer", "external_jwks_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        value = value.strip()
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("is not an http:// or https:// URL (or empty)")
        return value

    @field_validator("profiles_dir")
    @classmethod
    def _profiles_dir(cls, value: str) -> str:
        if value and not Path(value).is_dir():
            raise ValueError("is not a folder (empty = the profiles shipped with the server)")
        return value

    @field_validator("required_profiles")
    @classmethod
    def _required_profiles(cls, value: str) -> str:
        for item in filter(None, (i.strip() for i in value.split(","))):
            type_, sep, url = item.partition("=")
            if not (sep and type_.strip().isidentifier() and url.strip()):
                raise ValueError(f"has '{item}': each item must be Type=profile-url, comma-separated")
        return value

    @property
    def database_url_masked(self) -> str:
        return mask_url(self.database_url)

    def required_profile_map(self) -> dict[str, list[str]]:
        """`required_profiles` as {type: [profile urls]}."""
        out: dict[str, list[str]] = {}
        for item in self.required_profiles.split(","):
            type_, sep, url = item.strip().partition("=")
            if sep and type_.strip() and url.strip():
                out.setdefault(type_.strip(), []).append(url.strip())
        return out


def _one_of(value: str, allowed: tuple[str, ...]) -> str:
    if value.strip().lower() not in allowed:
        raise ValueError("is not one of " + ", ".join(allowed))
    return value.strip().lower()


_MESSAGES = {
    "int_parsing": "is not an integer",
    "int_from_float": "is not an integer",
    "bool_parsing": "is not one of true, false (or 1, 0, yes, no, on, off)",
    "greater_than_equal": "must be >= {ge}",
    "string_type": "is not a string",
    "less_than_equal": "must be <= {le}",
}


def _describe(exc: ValidationError) -> list[str]:
    """One line per wrong setting: `FHIR_LOG_LEVEL='verbose' is not one of debug, info, ...`."""
    lines = []
    for error in exc.errors():
        name = "FHIR_" + "_".join(str(p) for p in error["loc"]).upper()
        template = _MESSAGES.get(error["type"])
        pattern = str(error.get("ctx", {}).get("pattern", ""))
        if error["type"] == "string_pattern_mismatch" and pattern.startswith("^(") and pattern.endswith(")$"):
            message = "is not one of " + ", ".join(pattern[2:-2].split("|"))
        elif template is not None:
            message = template.format(**error.get("ctx", {}))
        else:
            message = str(error["msg"]).removeprefix("Value error, ")
        lines.append(f"{name}={error.get('input')!r} {message}")
    return lines


def get_settings(**overrides: Any) -> Settings:
    """The settings from the environment; `SettingsError` (one line per wrong variable) if refused."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise SettingsError(_describe(exc)) from None
