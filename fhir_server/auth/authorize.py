"""The authorize endpoint of SMART App Launch: login, consent page, authorization code.

https://hl7.org/fhir/smart-app-launch/STU2.2/app-launch.html#obtain-authorization-code

GET validates the request and shows one page: the application's name, every scope it asks
for in words, and the local login (a user created by `fhir-server users add`, password
checked against its scrypt hash). POST re-validates everything, checks the password and the
decision, and redirects back with a one-use code bound to the PKCE S256 challenge. `plain`
PKCE, a missing challenge, an unregistered redirect_uri or an `aud` other than this FHIR
server are refused. `launch` (EHR launch) gives the patient context an EHR registered at
/auth/launch; a standalone `launch/patient` takes it from a Patient user, or asks for it.
"""

from __future__ import annotations

import asyncio
import functools
import html
import secrets
from dataclasses import dataclass
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from fhir_server.auth.grants import CodeGrant, get_launch, new_code
from fhir_server.auth.scopes import ScopeError, ScopeSet, parse_scopes
from fhir_server.auth.server import OAuthError, form_of, service_of, store_of, urls
from fhir_server.auth.store import ClientRecord, check_secret, get_client, get_user, hash_secret

__all__ = ["authorize"]

_PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
}
_PARAMS = ("response_type", "client_id", "redirect_uri", "scope", "state", "aud", "code_challenge",
           "code_challenge_method", "launch", "nonce")
_LETTERS = {"c": "create", "r": "read", "u": "update", "d": "delete", "s": "search"}
_FLAGS = {
    "openid": "confirm your identity to the application",
    "fhirUser": "tell the application which user you are",
    "launch": "receive the context the EHR launched it in",
    "launch/patient": "work on one patient chosen at launch",
    "offline_access": "keep access after you log out (refresh token)",
    "online_access": "keep access while you are logged in (refresh token)",
    "btg": "use break-the-glass emergency access",
    "profile": "read your profile",
}


@functools.cache
def _dummy_hash() -> str:
    return hash_secret(secrets.token_urlsafe(16))


class _PageError(Exception):
    """A request that cannot be redirected back (unknown client or redirect_uri)."""


@dataclass(frozen=True)
class _Request:
    client: ClientRecord
    params: dict[str, str]
    scopes: ScopeSet
    launch_patient: str | None


def _describe(scopes: ScopeSet) -> list[str]:
    lines = []
    for s in scopes.resources:
        what = "all resource types" if s.res_type == "*" else s.res_type
        verbs = ", ".join(_LETTERS[c] for c in s.letters)
        whose = {"patient": "of the patient in context", "user": "you can access", "system": "of the server"}
        extra = f" (only where {', '.join(f'{k}={v}' for k, v in s.constraints)})" if s.constraints else ""
        lines.append(f"{verbs}: {what} {whose[s.context]}{extra} — <code>{html.escape(str(s))}</code>")
    lines += [f"{_FLAGS.get(f, f)} — <code>{html.escape(f)}</code>" for f in sorted(scopes.flags)]
    return lines


async def _validate(request: Request, params: dict[str, str]) -> _Request:
    client_id = params.get("client_id", "")
    client = await store_of(request).run_read(lambda conn: get_client(conn, client_id))
    if client is None or client.revoked:
        raise _PageError("Unknown or revoked client.")
    if not params.get("redirect_uri") or params["redirect_uri"] not in client.redirect_uris:
        raise _PageError("The redirect_uri is not one this client registered.")
    if params.get("response_type") != "code":
        raise OAuthError("unsupported_response_type", "response_type must be code")
    if params.get("code_challenge_method") != "S256":
        raise OAuthError("invalid_request", "PKCE is required with code_challenge_method=S256 (plain is refused)")
    challenge = params.get("code_challenge", "")
    if len(challenge) != 43:
        raise OAuthError("invalid_request", "code_challenge must be the base64url SHA-256 of the verifier")
    base, _ = urls(request)
    if params.get("aud", "").rstrip("/") != base:
        raise OAuthError("invalid_request", f"aud must be this FHIR server: {base}")
    try:
        scopes = parse_scopes(params.get("scope"))
    except ScopeError as exc:
        raise OAuthError("invalid_scope", str(exc)) from None
    if not scopes.resources and not scopes.flags:
        raise OAuthError("invalid_scope", "scope is required")
    excess = client.scopes.excess(scopes)
    if excess:
        raise OAuthError("invalid_scope", "not allowed for this client: " + " ".join(excess))
    if any(s.context == "system" for s in scopes.resources):
        raise OAuthError("invalid_scope", "system/ scopes are for client_credentials, not user launch")
    launch_patient = None
    if params.get("launch"):
        launch_id = params["launch"]
        found = await store_of(request).run_read(lambda conn: get_launch(conn, launch_id))
        if found is None:
            raise OAuthError("invalid_request", "unknown or expired launch")
        launch_patient = found[0]
    elif scopes.has("launch"):
        raise OAuthError("invalid_request", "scope launch needs the launch parameter the EHR gave")
    return _Request(client, params, scopes, launch_patient)


def _redirect(params: dict[str, str], **values: str) -> Response:
    query = {k: v for k, v in values.items() if v}
    if params.get("state"):
        query["state"] = params["state"]
    sep = "&" if "?" in params["redirect_uri"] else "?"
    return RedirectResponse(params["redirect_uri"] + sep + urlencode(query), status_code=302,
                            headers={"Cache-Control": "no-store"})


def _page(req: _Request, error: str = "", status: int = 200, ticket: str = "", who: str = "",
          external_login: bool = False, action: str = "authorize") -> Response:
    hidden = "".join(
        f'<input type="hidden" name="{k}" value="{html.escape(req.params[k])}">' for k in _PARAMS if k in req.params
    )
    items = "".join(f"<li>{line}</li>" for line in _describe(req.scopes))
    patient = ""
    if req.scopes.has("launch/patient") and not req.launch_patient:
        patient = ('<p><label>Patient id (for a practitioner; a patient gets their own) '
                   '<input name="patient" autocomplete="off"></label></p>')
    err = f'<p style="color:#a00">{html.escape(error)}</p>' if error else ""
    if ticket:
        login = (f'<p>Logged in as <b>{html.escape(who)}</b> (Pro Santé Connect).</p>'
                 f'<input type="hidden" name="login_ticket" value="{html.escape(ticket)}">')
    else:
        login = ('<p><label>User name <input name="username" autocomplete="username" required></label></p>\n'
                 '<p><label>Password <input name="password" type="password" autocomplete="current-password" '
                 'required></label></p>')
    psc = ""
    if external_login and not ticket:
        psc = (f'<form method="get" action="external/login">{hidden}'
               '<p><button>Log in with Pro Santé Connect</button></p></form>')
    body = f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Authorize</title></head>
<body style="font-family:sans-serif;max-width:40em;margin:2em auto">
<h1>{html.escape(req.client.name)} asks for access</h1>
<p>Application <code>{html.escape(req.client.client_id)}</code> wants to:</p><ul>{items}</ul>{err}
<form method="post" action="{action}">{hidden}
{login}
{patient}
<p><button name="decision" value="allow">Allow</button> <button name="decision" value="deny">Deny</button></p>
</form>{psc}</body></html>"""
    return HTMLResponse(body, status, headers=_PAGE_HEADERS)


async def authorize(request: Request) -> Response:
    try:
        if request.method == "GET":
            params = {k: v for k, v in request.query_params.items() if k in _PARAMS}
        else:
            form = await form_of(request)
            params = {k: v for k, v in form.items() if k in _PARAMS}
    except OAuthError as exc:
        return HTMLResponse(html.escape(exc.description), 400, headers=_PAGE_HEADERS)
    try:
        req = await _validate(request, params)
    except _PageError as exc:
        return HTMLResponse(f"<p>{html.escape(str(exc))}</p>", 400, headers=_PAGE_HEADERS)
    except OAuthError as exc:
        return _redirect(params, error=exc.error, error_description=exc.description)
    if request.method == "GET" or "decision" not in form:  # authorize-post: the app POSTs the request
        return _page(req, external_login=external_login_enabled(request))
    return await _decide(request, req, form)


def external_login_enabled(request: Request) -> bool:
    s = service_of(request).settings
    return bool(s.external_client_id and s.external_authorize_url and s.external_token_url
                and service_of(request).external is not None)


async def _identify(request: Request, req: _Request, form: dict[str, str]) -> tuple[str, str] | Response:
    """(subject, fhirUser) of the person deciding: a Pro Santé Connect login ticket, or the local login."""
    if form.get("login_ticket"):
        from fhir_server.auth.tickets import check_ticket

        found = check_ticket(service_of(request), form["login_ticket"], req.client.client_id,
                             req.params["code_challenge"])
        if found is None:
            return _page(req, "The Pro Santé Connect login expired: log in again.", 401,
                         external_login=external_login_enabled(request))
        return found
    if not service_of(request).settings.login_users:
        return _page(req, "Local login is disabled on this server.", 403)
    username = form.get("username", "")
    user = await store_of(request).run_read(lambda conn: get_user(conn, username))
    # An unknown user costs the same scrypt as a known one: the timing does not tell which names exist.
    ok = await asyncio.to_thread(check_secret, form.get("password", ""), user.password_hash if user else _dummy_hash())
    if user is None or user.disabled or not ok:
        return _page(req, "Wrong user name or password.", 401, external_login=external_login_enabled(request))
    return user.username, user.fhir_user


async def _decide(request: Request, req: _Request, form: dict[str, str]) -> Response:
    if form.get("decision") != "allow":
        return _redirect(req.params, error="access_denied", error_description="the user declined")
    who = await _identify(request, req, form)
    if isinstance(who, Response):
        return who
    subject, fhir_user = who
    ticket, shown = form.get("login_ticket", ""), f"{fhir_user}"

    def page(error: str, status: int) -> Response:
        return _page(req, error, status, ticket=ticket, who=shown)

    patient = req.launch_patient
    own = fhir_user.split("/", 1)[1] if fhir_user.startswith("Patient/") else None
    if own is not None:
        if patient is not None and patient != own:
            return page("This launch is about another patient.", 403)
        patient = own if req.scopes.has("launch/patient") or any(
            s.context == "patient" for s in req.scopes.resources) else patient
    elif req.scopes.has("launch/patient") and patient is None:
        patient = form.get("patient", "").strip() or None
        if patient is None:
            return page("Choose the patient to work on.", 400)
        if await store_of(request).read("Patient", patient) is None:
            return page(f"Patient/{patient} does not exist.", 400)
    if any(s.context == "patient" for s in req.scopes.resources) and patient is None:
        return page("patient/ scopes need a patient context (launch or launch/patient).", 400)
    grant = CodeGrant(
        client_id=req.client.client_id, redirect_uri=req.params["redirect_uri"], scope=str(req.scopes),
        code_challenge=req.params["code_challenge"], subject=subject, fhir_user=fhir_user,
        patient=patient, nonce=req.params.get("nonce"), family=secrets.token_hex(16),
    )
    code = await store_of(request).write(lambda tx: new_code(tx.conn, grant))
    return _redirect(req.params, code=code)
