"""The one exception type of the server, carrying an OperationOutcome and an HTTP status.

https://hl7.org/fhir/R4/operationoutcome.html

Every failure a client can cause is raised as a `FhirError`; `api.responses` renders it. The
constructors below fix the status and the issue code together, so the same kind of error
always looks the same on the wire (Blaze's `category->status` / `issue-code` tables).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "FhirError",
    "Issue",
    "conflict",
    "forbidden",
    "gone",
    "invalid",
    "not_acceptable",
    "not_found",
    "not_supported",
    "outcome",
    "precondition_failed",
    "processing",
    "too_large",
    "unsupported_media_type",
]

Issue = dict[str, Any]


def issue(
    diagnostics: str,
    code: str = "invalid",
    severity: str = "error",
    expression: str | list[str] | None = None,
) -> Issue:
    item: Issue = {"severity": severity, "code": code, "diagnostics": diagnostics}
    if expression:
        item["expression"] = [expression] if isinstance(expression, str) else list(expression)
    return item


def outcome(issues: list[Issue]) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": issues}


class FhirError(Exception):
    """An error answered to the client as an OperationOutcome with `status`."""

    def __init__(
        self,
        status: int,
        diagnostics: str,
        code: str = "invalid",
        expression: str | list[str] | None = None,
        issues: list[Issue] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(diagnostics)
        self.status = status
        self.issues = issues or [issue(diagnostics, code, "error", expression)]
        self.headers = headers or {}

    @property
    def outcome(self) -> dict[str, Any]:
        return outcome(self.issues)

    def __repr__(self) -> str:
        return f"FhirError({self.status}, {str(self)!r})"


def invalid(msg: str, expression: str | list[str] | None = None, code: str = "invalid") -> FhirError:
    return FhirError(400, msg, code, expression)


def processing(msg: str, expression: str | list[str] | None = None, issues: list[Issue] | None = None) -> FhirError:
    """422: the content is well-formed but breaks a rule (profile, business rule)."""
    return FhirError(422, msg, "processing", expression, issues)


def not_found(msg: str) -> FhirError:
    return FhirError(404, msg, "not-found")


def gone(msg: str, headers: dict[str, str] | None = None) -> FhirError:
    return FhirError(410, msg, "deleted", headers=headers)


def conflict(msg: str) -> FhirError:
    return FhirError(409, msg, "conflict")


def precondition_failed(msg: str) -> FhirError:
    return FhirError(412, msg, "conflict")


def not_supported(msg: str, status: int = 400) -> FhirError:
    return FhirError(status, msg, "not-supported")


def forbidden(msg: str) -> FhirError:
    """403: the caller is known but may not do this (RFC 6750: insufficient_scope)."""
    quoted = msg.replace("\\", "").replace('"', "'")
    challenge = f'Bearer realm="fhir", error="insufficient_scope", error_description="{quoted}"'
    return FhirError(403, msg, "forbidden", headers={"WWW-Authenticate": challenge})


def not_acceptable(msg: str) -> FhirError:
    return FhirError(406, msg, "not-supported")


def unsupported_media_type(msg: str) -> FhirError:
    return FhirError(415, msg, "not-supported")


def too_large(msg: str) -> FhirError:
    return FhirError(413, msg, "too-costly")
