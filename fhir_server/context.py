"""What an interaction knows about the request it serves, without seeing HTTP."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fhir_server.config import Settings

__all__ = ["RequestContext"]

Validator = Callable[[dict[str, Any]], list[dict[str, Any]]]


def _no_profiles(_resource: dict[str, Any]) -> list[dict[str, Any]]:
    return []


def _nothing(_stored: Any) -> None:
    return None


@dataclass(frozen=True)
class RequestContext:
    settings: Settings
    base_url: str  # absolute, without a trailing slash, e.g. http://localhost:8080/fhir
    request_id: str = ""
    # Profile validation run on every write after the structural check (issue list, empty = valid).
    validate_profiles: Validator = field(default=_no_profiles)
    # Called with each StoredResource once its write has committed (e.g. to register a new profile).
    after_write: Callable[[Any], None] = field(default=_nothing)
