"""Login tickets: what the external (Pro Santé Connect) login hands back to the authorize page.

https://hl7.org/fhir/smart-app-launch/STU2.2/app-launch.html#step-2-launch-app-standalone-launch

A ticket is a short-lived JWT signed with the server's own key, bound to the client and to the
authorize request's PKCE challenge, so it cannot be replayed for another app or request.
"""

from __future__ import annotations

import hashlib

from fhir_server.auth.service import AuthService

__all__ = ["TICKET_TYP", "bind_request", "check_ticket"]

TICKET_TYP = "login-ticket"


def bind_request(code_challenge: str) -> str:
    return hashlib.sha256(code_challenge.encode()).hexdigest()[:32]


def check_ticket(service: AuthService, ticket: str, client_id: str, code_challenge: str) -> tuple[str, str] | None:
    """(subject, fhirUser) of a login ticket issued for this client and this authorize request."""
    claims = service.verify_own(ticket, TICKET_TYP, client_id)
    if claims is None or claims.get("req") != bind_request(code_challenge):
        return None
    subject, fhir_user = claims.get("sub"), claims.get("fhirUser")
    if not isinstance(subject, str) or not isinstance(fhir_user, str):
        return None
    return subject, fhir_user
