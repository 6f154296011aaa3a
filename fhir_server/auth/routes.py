"""The endpoints of the authorisation server, mounted under /auth by `install_auth`.

https://hl7.org/fhir/smart-app-launch/STU2.2/app-launch.html

Listed here rather than in `server.py`, so that the modules holding endpoints (server,
authorize, psc_login, well_known) can import `server`'s helpers without an import cycle.
"""

from __future__ import annotations

from typing import Any

from fhir_server.auth import authorize, psc_login
from fhir_server.auth.server import introspect, jwks, launch, revocation, token
from fhir_server.auth.well_known import openid_configuration_endpoint

__all__ = ["routes"]


def routes() -> list[tuple[str, Any, list[str]]]:
    return [
        ("/.well-known/openid-configuration", openid_configuration_endpoint, ["GET"]),
        ("/token", token, ["POST"]),
        ("/introspect", introspect, ["POST"]),
        ("/revoke", revocation, ["POST"]),
        ("/jwks", jwks, ["GET"]),
        ("/launch", launch, ["POST"]),
        ("/authorize", authorize.authorize, ["GET", "POST"]),
        ("/external/login", psc_login.external_login, ["GET"]),
        ("/external/callback", psc_login.external_callback, ["GET"]),
    ]
