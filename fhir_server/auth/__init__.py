"""Authentication and authorisation: the SMART authorisation server and the API's token checks.

https://hl7.org/fhir/smart-app-launch/STU2.2/

`install_auth(app, settings)` mounts the authorisation server under /auth, publishes
/fhir/.well-known/smart-configuration, and installs the middleware that gives every /fhir
request its `Caller` (`request.state.caller`). Imports stay lazy here: the Alembic migration
imports `fhir_server.auth.tables` without pulling in the web stack.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fhir_server.auth.caller import Caller
    from fhir_server.auth.scopes import ScopeSet
    from fhir_server.config import Settings

__all__ = ["Caller", "ScopeSet", "caller_of", "install_auth"]

log = logging.getLogger("fhir_server.auth")


def __getattr__(name: str) -> Any:
    if name == "Caller":
        from fhir_server.auth.caller import Caller

        return Caller
    if name == "ScopeSet":
        from fhir_server.auth.scopes import ScopeSet

        return ScopeSet
    raise AttributeError(name)


def caller_of(request: Any) -> Caller:
    """The Caller of a request (set by the middleware); anonymous (no scopes) when none was set."""
    from fhir_server.auth.caller import Caller

    caller = getattr(request.state, "caller", None)
    return caller if isinstance(caller, Caller) else Caller.anonymous()


def install_auth(app: Any, settings: Settings) -> None:
    """Mount /auth, the SMART discovery document and the auth middleware on `app`."""
    from starlette.routing import Route

    from fhir_server.auth.middleware import AuthMiddleware
    from fhir_server.auth.routes import routes
    from fhir_server.auth.service import AuthService
    from fhir_server.auth.well_known import smart_configuration_endpoint

    service = AuthService(settings)
    app.state.auth = service
    # Before the FHIR routes: /fhir/{type}/{id} would otherwise take .well-known/smart-configuration.
    app.router.routes.insert(0, Route("/fhir/.well-known/smart-configuration", smart_configuration_endpoint,
                                      methods=["GET"], name="smart-configuration"))
    for path, endpoint, methods in routes():
        app.router.routes.insert(1, Route("/auth" + path, endpoint, methods=methods, name=f"auth{path}"))
    app.add_middleware(AuthMiddleware, service=service)
    if not service.enabled:
        log.warning("!" * 72)
        log.warning("FHIR_AUTH=off: EVERY request is served WITHOUT authentication or authorisation.")
        log.warning("Use this for local experiments only, never with real patient data.")
        log.warning("!" * 72)
