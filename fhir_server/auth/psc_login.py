"""Log in with Pro Santé Connect on the authorize page (OpenID Connect relying party).

https://openid.net/specs/openid-connect-core-1_0.html#CodeFlowAuth

The design notes' "pattern A": the professional authenticates at PSC, our server maps the
idNatPs of PSC's id_token to a Practitioner, then shows the usual consent page and issues its
own SMART tokens. The authorize request travels through PSC inside `state`, a JWT signed with
our key (so any node can check it); a cookie holding the nonce binds the callback to the
browser that started the login (no login CSRF). After the callback the consent form carries a
short-lived login ticket (our JWT, bound to the client and to its PKCE challenge) in place of a
password.
"""

from __future__ import annotations

import html
import secrets
import time
from typing import Any
from urllib.parse import urlencode

import httpx
import orjson
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from fhir_server.auth.external import idnatps_of
from fhir_server.auth.jose import JoseError
from fhir_server.auth.server import OAuthError, service_of, store_of, urls
from fhir_server.auth.service import AuthService
from fhir_server.auth.tickets import TICKET_TYP, bind_request, check_ticket

__all__ = ["check_ticket", "external_callback", "external_login"]

_COOKIE = "fhir_psc_login"
_STATE_TYP = "psc-state"
_LIFETIME = 600


def _page(text: str, status: int) -> Response:
    from fhir_server.auth.authorize import _PAGE_HEADERS

    return HTMLResponse(f"<p>{html.escape(text)}</p>", status, headers=_PAGE_HEADERS)


async def external_login(request: Request) -> Response:
    """Validate the authorize request, then send the browser to PSC with it in `state`."""
    from fhir_server.auth.authorize import _PARAMS, _PageError, _redirect, _validate, external_login_enabled

    if not external_login_enabled(request):
        return _page("Pro Santé Connect login is not configured on this server.", 404)
    params = {k: v for k, v in request.query_params.items() if k in _PARAMS}
    try:
        await _validate(request, params)
    except _PageError as exc:
        return _page(str(exc), 400)
    except OAuthError as exc:
        return _redirect(params, error=exc.error, error_description=exc.description)
    service = service_of(request)
    await service.ensure_keys(store_of(request))
    _, issuer = urls(request)
    nonce = secrets.token_urlsafe(24)
    now = int(time.time())
    state = service.keys.sign({"iss": issuer, "aud": f"{issuer}/external/callback", "iat": now,
                               "exp": now + _LIFETIME, "params": params, "nonce": nonce}, typ=_STATE_TYP)
    s = service.settings
    query = {"response_type": "code", "client_id": s.external_client_id, "redirect_uri": f"{issuer}/external/callback",
             "scope": s.external_login_scope, "state": state, "nonce": nonce, "acr_values": "eidas1"}
    sep = "&" if "?" in s.external_authorize_url else "?"
    response = RedirectResponse(s.external_authorize_url + sep + urlencode(query), 302,
                                headers={"Cache-Control": "no-store"})
    response.set_cookie(_COOKIE, nonce, max_age=_LIFETIME, path="/auth/external", httponly=True, samesite="lax",
                        secure=request.url.scheme == "https")
    return response


async def external_callback(request: Request) -> Response:
    """PSC sends the browser back: check state and nonce, redeem the code, map the professional."""
    from fhir_server.auth.authorize import _page as consent_page
    from fhir_server.auth.authorize import _PageError, _redirect, _validate

    service = service_of(request)
    _, issuer = urls(request)
    state = service.verify_own(request.query_params.get("state", ""), _STATE_TYP, f"{issuer}/external/callback")
    if state is None or not isinstance(state.get("params"), dict):
        return _page("This login link is invalid or expired: start again from the application.", 400)
    cookie = request.cookies.get(_COOKIE, "")
    if not cookie or not secrets.compare_digest(cookie, str(state.get("nonce"))):
        return _page("This login was not started in this browser.", 400)
    params: dict[str, str] = {k: str(v) for k, v in state["params"].items()}
    try:
        req = await _validate(request, params)
    except _PageError as exc:
        return _page(str(exc), 400)
    except OAuthError as exc:
        return _redirect(params, error=exc.error, error_description=exc.description)
    if "error" in request.query_params or "code" not in request.query_params:
        return _redirect(params, error="access_denied", error_description="Pro Santé Connect login failed")
    try:
        claims = await _redeem(service, request.query_params["code"], f"{issuer}/external/callback")
    except (JoseError, httpx.HTTPError, ValueError) as exc:
        return _page(f"Pro Santé Connect login failed: {exc}", 401)
    if claims.get("nonce") != state.get("nonce"):
        return _page("Pro Santé Connect login failed: nonce mismatch.", 401)
    idnatps = idnatps_of(claims)
    practitioner = await service.practitioner(store_of(request), idnatps) if idnatps else None
    if practitioner is None:
        return _page(f"No Practitioner of this server has the idNatPs {idnatps}.", 403)
    now = int(time.time())
    ticket = service.keys.sign({"iss": issuer, "aud": req.client.client_id, "sub": str(claims.get("sub", idnatps)),
                                "fhirUser": practitioner, "iat": now, "exp": now + _LIFETIME,
                                "req": bind_request(params["code_challenge"])}, typ=TICKET_TYP)
    response = consent_page(req, ticket=ticket, who=practitioner, action="../authorize")
    response.delete_cookie(_COOKIE, path="/auth/external")
    return response


async def _redeem(service: AuthService, code: str, redirect_uri: str) -> dict[str, Any]:
    """Exchange the code at PSC's token endpoint and return the verified id_token's claims."""
    s = service.settings
    async with httpx.AsyncClient(timeout=10.0, follow_redirects=False) as client:
        r = await client.post(s.external_token_url, data={
            "grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
        }, auth=(s.external_client_id, s.external_client_secret))
    if r.status_code != 200:
        raise ValueError(f"token endpoint answered {r.status_code}")
    body = orjson.loads(r.content)
    id_token = body.get("id_token") if isinstance(body, dict) else None
    if not isinstance(id_token, str):
        raise ValueError("no id_token")
    assert service.external is not None
    return await service.external.verify(id_token, audience=s.external_client_id)
