"""Authentication failures: 401/403 OperationOutcomes with a `WWW-Authenticate` header.

https://www.rfc-editor.org/rfc/rfc6750#section-3
"""

from __future__ import annotations

from fhir_server.errors import FhirError

__all__ = ["AuthFailure", "forbidden_token", "invalid_token", "missing_token", "throttled"]

REALM = "fhir"


class AuthFailure(FhirError):
    """A FhirError whose headers carry the RFC 6750 challenge."""


def _challenge(error: str | None, description: str, scope: str | None = None) -> str:
    parts = [f'Bearer realm="{REALM}"']
    if error:
        safe = description.replace('"', "'").replace("\\", "/")[:200]
        parts.append(f'error="{error}", error_description="{safe}"')
    if scope:
        parts.append(f'scope="{scope}"')
    return ", ".join(parts)


def missing_token() -> AuthFailure:
    return AuthFailure(
        401, "This server requires a bearer token (Authorization: Bearer ...)", "login",
        headers={"WWW-Authenticate": _challenge(None, "")},
    )


def invalid_token(description: str) -> AuthFailure:
    return AuthFailure(
        401, f"Invalid access token: {description}", "login",
        headers={"WWW-Authenticate": _challenge("invalid_token", description)},
    )


def forbidden_token(description: str, scope: str | None = None) -> AuthFailure:
    return AuthFailure(
        403, description, "forbidden",
        headers={"WWW-Authenticate": _challenge("insufficient_scope", description, scope)},
    )


def throttled(retry_after: int) -> FhirError:
    return FhirError(
        429, f"Too many requests: retry in {retry_after} s", "throttled",
        headers={"Retry-After": str(retry_after)},
    )
