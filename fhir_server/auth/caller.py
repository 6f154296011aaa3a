"""Who is calling: the identity and scopes every interaction receives.

https://hl7.org/fhir/smart-app-launch/STU2.2/scopes-and-launch-context.html

The auth middleware puts one `Caller` in `scope["state"]["caller"]`, so a route reads
`request.state.caller`. With `FHIR_AUTH=off` it is `Caller.unrestricted()`.
"""

from __future__ import annotations

from dataclasses import dataclass

from fhir_server.auth.scopes import ScopeSet

__all__ = ["Caller"]


@dataclass(frozen=True)
class Caller:
    kind: str  # "system" | "user" | "patient" | "admin" | "anonymous-off" (auth off) | "anonymous" (public)
    client_id: str
    subject: str
    fhir_user: str | None  # "Practitioner/123", "PractitionerRole/..", "Patient/abc", "RelatedPerson/.."
    patient: str | None  # launch/patient context id
    organization: str | None  # "Organization/x" the client acts for
    scopes: ScopeSet
    token_id: str
    break_glass: str | None = None

    @classmethod
    def unrestricted(cls) -> Caller:
        """The caller of every request when auth is off (local experiments only)."""
        return _UNRESTRICTED

    @classmethod
    def anonymous(cls) -> Caller:
        """The caller of the public endpoints (metadata, smart-configuration) without a token."""
        return _ANONYMOUS

    @property
    def is_unrestricted(self) -> bool:
        return self.kind in ("anonymous-off", "admin")


_ANONYMOUS = Caller("anonymous", "", "", None, None, None, ScopeSet(), "")
_UNRESTRICTED = Caller("anonymous-off", "", "", None, None, None, ScopeSet.all(), "")
