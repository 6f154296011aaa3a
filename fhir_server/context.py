"""What an interaction knows about the request it serves, without seeing HTTP.

The caller (`agent`), what SMART scopes let them do (`permits`) and what they may read
(`access`, compiled into every read path's SQL) travel here from the auth layer to every
interaction and, through `Storage.write(fn, ctx)`, into the write transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fhir_server.config import Settings
from fhir_server.errors import forbidden
from fhir_server.search.access import EVERYTHING, Access

__all__ = ["ANONYMOUS", "Agent", "EVERYTHING", "Access", "RequestContext"]

Validator = Callable[[dict[str, Any]], list[dict[str, Any]]]


def _no_profiles(_resource: dict[str, Any]) -> list[dict[str, Any]]:
    return []


def _permit_all(_type: str, _letter: str) -> bool:
    return True


@dataclass(frozen=True, slots=True)
class Agent:
    """Who is calling, as AuditEvent and Provenance name them."""

    kind: str = "anonymous"  # "system" | "user" | "patient" | "admin" | "anonymous" (auth off)
    client_id: str = ""
    user: str = ""  # the token's subject
    fhir_user: str | None = None  # "Practitioner/123", "Patient/abc", ...
    organization: str | None = None  # "Organization/x" the client acts for
    break_glass: str | None = None  # the reason given for an emergency access
    address: str = ""  # the client's network address


ANONYMOUS = Agent()


@dataclass(frozen=True)
class RequestContext:
    settings: Settings
    base_url: str  # absolute, without a trailing slash, e.g. http://localhost:8080/fhir
    access: Access  # what the caller may read: every read path applies it (no default)
    request_id: str = ""
    agent: Agent = ANONYMOUS
    # SMART scopes: may the caller do `letter` (c, r, u, d, s) on resources of `type`?
    permits: Callable[[str, str], bool] = field(default=_permit_all)
    # Profile validation run on every write after the structural check (issue list, empty = valid).
    validate_profiles: Validator = field(default=_no_profiles)
    # Warnings met while serving the request (e.g. a meta.profile the server does not know): the
    # write is accepted and the warnings go back to the client (OperationOutcome or Warning header).
    warnings: list[dict[str, Any]] = field(default_factory=list)

    def require(self, type_: str, letter: str) -> None:
        """403 unless the caller's scopes allow `letter` on `type_`."""
        if not self.permits(type_, letter):
            what = {"c": "create", "r": "read", "u": "update", "d": "delete", "s": "search"}.get(letter, letter)
            raise forbidden(f"The access token's scopes do not allow {what} on {type_}")
