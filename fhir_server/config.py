"""Server settings, read once from the environment (prefix `FHIR_`).

Nothing else in the package reads `os.environ`: everything it needs is a field here, so the
README's configuration table and this class are the same list.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings", "get_settings"]


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
        pattern="^(warning|error)$",
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

    def required_profile_map(self) -> dict[str, list[str]]:
        """`required_profiles` as {type: [profile urls]}."""
        out: dict[str, list[str]] = {}
        for item in self.required_profiles.split(","):
            type_, sep, url = item.strip().partition("=")
            if sep and type_.strip() and url.strip():
                out.setdefault(type_.strip(), []).append(url.strip())
        return out


def get_settings() -> Settings:
    return Settings()
