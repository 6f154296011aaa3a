"""The OAuth 2 / SMART authorisation server endpoints, mounted under /auth.

https://hl7.org/fhir/smart-app-launch/STU2.2/app-launch.html and
https://hl7.org/fhir/smart-app-launch/STU2.2/backend-services.html

token (client_credentials, authorization_code + PKCE S256, refresh_token with rotation),
introspect (RFC 7662), revoke (RFC 7009), jwks, launch (an EHR registers a launch context).
The authorize page is in `authorize.py`. Errors here are OAuth JSON errors (RFC 6749 §5.2),
which is what OAuth clients parse; the FHIR API's own failures are OperationOutcomes.
"""

from __future__ import annotations

import hmac
from typing import Any
from urllib.parse import parse_qsl

from authlib.oauth2.rfc7636 import create_s256_code_challenge
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from fhir_server.auth.clientauth import ClientAuthError, authenticate_client
from fhir_server.auth.errors import AuthFailure
from fhir_server.auth.grants import (
    CodeGrant,
    RefreshGrant,
    consume_code,
    consume_refresh,
    create_launch,
    new_refresh,
    refresh_family,
    revoke,
    revoke_family,
)
from fhir_server.auth.scopes import ScopeError, ScopeSet, parse_scopes
from fhir_server.auth.service import AuthService
from fhir_server.auth.store import ClientRecord
from fhir_server.storage import Storage

__all__ = ["OAuthError", "form_of", "service_of", "urls"]

_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_VERIFIER_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


class OAuthError(Exception):
    def __init__(self, error: str, description: str, status: int = 400, basic: bool = False) -> None:
        super().__init__(description)
        self.error, self.description, self.status, self.basic = error, description, status, basic

    def response(self) -> Response:
        headers = dict(_NO_STORE)
        if self.status == 401:
            headers["WWW-Authenticate"] = 'Basic realm="fhir"' if self.basic else 'Bearer realm="fhir"'
        return JSONResponse({"error": self.error, "error_description": self.description}, self.status, headers)


def service_of(request: Request) -> AuthService:
    service: AuthService = request.app.state.auth
    return service


def store_of(request: Request) -> Storage:
    store: Storage = request.app.state.storage
    return store


def urls(request: Request) -> tuple[str, str]:
    """(FHIR base URL, issuer URL) for this request."""
    service = service_of(request)
    base = service.fhir_base(str(request.base_url))
    return base, service.issuer(base)


async def form_of(request: Request) -> dict[str, str]:
    """An application/x-www-form-urlencoded body; a repeated parameter is refused (RFC 6749 §3.1)."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        raise OAuthError("invalid_request", "send the parameters as application/x-www-form-urlencoded")
    limit = service_of(request).settings.max_auth_body_bytes
    body = b""
    async for chunk in request.stream():  # chunked bodies have no Content-Length for the middleware to check
        body += chunk
        if len(body) > limit:
            raise OAuthError("invalid_request", f"the body exceeds {limit} bytes", 413)
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise OAuthError("invalid_request", "the body is not UTF-8") from None
    form: dict[str, str] = {}
    for key, value in pairs:
        if key in form:
            raise OAuthError("invalid_request", f"parameter {key} is repeated")
        form[key] = value
    return form


async def _client(request: Request, form: dict[str, str]) -> ClientRecord:
    _, issuer = urls(request)
    try:
        return await authenticate_client(store_of(request), form, request.headers.get("authorization"),
                                         issuer + "/token")
    except ClientAuthError as exc:
        raise OAuthError("invalid_client", str(exc), 401, exc.basic) from None


def _requested(client: ClientRecord, text: str | None, default: ScopeSet | None = None) -> ScopeSet:
    if not text:
        if default is not None:
            return default
        raise OAuthError("invalid_scope", "scope is required")
    try:
        requested = parse_scopes(text)
    except ScopeError as exc:
        raise OAuthError("invalid_scope", str(exc)) from None
    excess = client.scopes.excess(requested)
    if excess:
        raise OAuthError("invalid_scope", "not allowed for this client: " + " ".join(excess))
    return requested


# -- token -----------------------------------------------------------------------------------
async def token(request: Request) -> Response:
    try:
        form = await form_of(request)
        client = await _client(request, form)
        grant = form.get("grant_type")
        service = service_of(request)
        await service.ensure_keys(store_of(request))
        if grant == "client_credentials":
            body = await _client_credentials(request, client, form)
        elif grant == "authorization_code":
            body = await _authorization_code(request, client, form)
        elif grant == "refresh_token":
            body = await _refresh_token(request, client, form)
        else:
            raise OAuthError("unsupported_grant_type", f"grant_type {grant!r} is not supported")
    except OAuthError as exc:
        return exc.response()
    return JSONResponse(body, 200, _NO_STORE)


async def _client_credentials(request: Request, client: ClientRecord, form: dict[str, str]) -> dict[str, Any]:
    if client.auth_method == "none":
        raise OAuthError("unauthorized_client", "a public client cannot use client_credentials")
    scopes = _requested(client, form.get("scope"))
    if any(s.context != "system" for s in scopes.resources):
        raise OAuthError("invalid_scope", "client_credentials grants system/ scopes only")
    base, _ = urls(request)
    kind = "admin" if client.is_admin else "system"
    access, claims = service_of(request).access_token(
        base, client_id=client.client_id, subject=client.client_id, kind=kind, scopes=scopes,
        fhir_user=client.fhir_user, organization=client.organization,
    )
    return {"access_token": access, "token_type": "Bearer", "expires_in": claims["exp"] - claims["iat"],
            "scope": claims["scope"]}


def _pkce_ok(verifier: str | None, challenge: str) -> bool:
    if not verifier or not 43 <= len(verifier) <= 128 or not set(verifier) <= _VERIFIER_CHARS:
        return False
    return hmac.compare_digest(create_s256_code_challenge(verifier), challenge)


async def _authorization_code(request: Request, client: ClientRecord, form: dict[str, str]) -> dict[str, Any]:
    code = form.get("code")
    if not code:
        raise OAuthError("invalid_request", "code is required")
    service = service_of(request)
    lifetime = service.settings.refresh_token_lifetime_seconds
    found = await store_of(request).write(lambda tx: consume_code(tx.conn, code, lifetime))
    if isinstance(found, str):
        if "revoked" in found:
            await service.refresh_revocations(store_of(request), force=True)
        raise OAuthError("invalid_grant", found)
    if found.client_id != client.client_id:
        raise OAuthError("invalid_grant", "the code was issued to another client")
    if form.get("redirect_uri") != found.redirect_uri:
        raise OAuthError("invalid_grant", "redirect_uri differs from the authorization request")
    if not _pkce_ok(form.get("code_verifier"), found.code_challenge):
        raise OAuthError("invalid_grant", "code_verifier does not match the code_challenge (PKCE S256)")
    return await _user_tokens(request, client, found, parse_scopes(found.scope))


async def _user_tokens(request: Request, client: ClientRecord, grant: CodeGrant | RefreshGrant,
                       scopes: ScopeSet, nonce: str | None = None) -> dict[str, Any]:
    base, _ = urls(request)
    service = service_of(request)
    kind = "patient" if (grant.fhir_user or "").startswith("Patient/") else "user"
    access, claims = service.access_token(
        base, client_id=client.client_id, subject=grant.subject, kind=kind, scopes=scopes,
        fhir_user=grant.fhir_user, patient=grant.patient, organization=client.organization, family=grant.family,
    )
    body: dict[str, Any] = {"access_token": access, "token_type": "Bearer",
                            "expires_in": claims["exp"] - claims["iat"], "scope": claims["scope"]}
    if grant.patient:
        body["patient"] = grant.patient
        body["need_patient_banner"] = True
    if scopes.has("openid") and scopes.has("fhirUser"):
        body["id_token"] = service.id_token(base, client_id=client.client_id, subject=grant.subject,
                                            fhir_user=grant.fhir_user,
                                            nonce=grant.nonce if isinstance(grant, CodeGrant) else None)
    if scopes.has("offline_access") or scopes.has("online_access"):
        lifetime = service.settings.refresh_token_lifetime_seconds
        next_grant = RefreshGrant(grant.family, client.client_id, grant.subject, grant.fhir_user, grant.patient,
                                  str(scopes))
        body["refresh_token"] = await store_of(request).write(lambda tx: new_refresh(tx.conn, next_grant, lifetime))
    return body


async def _refresh_token(request: Request, client: ClientRecord, form: dict[str, str]) -> dict[str, Any]:
    token = form.get("refresh_token")
    if not token:
        raise OAuthError("invalid_request", "refresh_token is required")
    service = service_of(request)
    lifetime = service.settings.refresh_token_lifetime_seconds
    found = await store_of(request).write(lambda tx: consume_refresh(tx.conn, token, client.client_id, lifetime))
    if isinstance(found, str):
        if "revoked" in found:
            await service.refresh_revocations(store_of(request), force=True)
        raise OAuthError("invalid_grant", found)
    granted = parse_scopes(found.scope)
    scopes = granted
    if form.get("scope"):
        try:
            scopes = parse_scopes(form["scope"])
        except ScopeError as exc:
            raise OAuthError("invalid_scope", str(exc)) from None
        if not granted.covers(scopes):
            raise OAuthError("invalid_scope", "a refresh may only narrow the granted scopes")
    excess = client.scopes.excess(scopes)  # the client's registration may have shrunk since
    if excess:
        raise OAuthError("invalid_scope", "no longer allowed for this client: " + " ".join(excess))
    return await _user_tokens(request, client, found, scopes)


# -- introspection and revocation ------------------------------------------------------------
async def introspect(request: Request) -> Response:
    try:
        form = await form_of(request)
        await _client(request, form)
    except OAuthError as exc:
        return exc.response()
    token_text = form.get("token", "")
    base, _ = urls(request)
    service = service_of(request)
    try:
        caller = await service.authenticate(token_text, store_of(request), base)
    except AuthFailure:
        return JSONResponse({"active": False}, 200, _NO_STORE)
    from fhir_server.auth.jose import decode_unverified

    _, claims, _, _ = decode_unverified(token_text)
    body: dict[str, Any] = {"active": True, "token_type": "Bearer", "scope": str(caller.scopes),
                            "client_id": caller.client_id, "sub": caller.subject}
    for name in ("exp", "iat", "iss", "aud", "jti"):
        if name in claims:
            body[name] = claims[name]
    if caller.fhir_user:
        body["fhirUser"] = caller.fhir_user
    if caller.patient:
        body["patient"] = caller.patient
    return JSONResponse(body, 200, _NO_STORE)


async def revocation(request: Request) -> Response:
    try:
        form = await form_of(request)
        client = await _client(request, form)
    except OAuthError as exc:
        return exc.response()
    token_text = form.get("token", "")
    store = store_of(request)
    service = service_of(request)
    lifetime = service.settings.refresh_token_lifetime_seconds
    family = await store.run_read(lambda conn: refresh_family(conn, token_text))
    if family is not None:
        if family[1] == client.client_id:
            await store.write(lambda tx: revoke_family(tx.conn, family[0], lifetime))
            service.revoked_locally("family", family[0])
        return Response(status_code=200, headers=_NO_STORE)
    base, _ = urls(request)
    try:
        caller = await service.authenticate(token_text, store, base)
    except AuthFailure:
        return Response(status_code=200, headers=_NO_STORE)  # RFC 7009: unknown tokens are fine
    if caller.client_id == client.client_id and caller.token_id:
        from fhir_server.auth.jose import decode_unverified

        exp = int(decode_unverified(token_text)[1]["exp"])
        await store.write(lambda tx: revoke(tx.conn, "jti", caller.token_id, exp + 60))
        service.revoked_locally("jti", caller.token_id)
    return Response(status_code=200, headers=_NO_STORE)


async def jwks(request: Request) -> Response:
    service = service_of(request)
    await service.ensure_keys(store_of(request))
    return JSONResponse(service.keys.jwks(), headers={"Cache-Control": "public, max-age=300"})


async def launch(request: Request) -> Response:
    """An EHR (admin or system client) registers a launch context: {"patient": id} -> {"launch": id}."""
    base, _ = urls(request)
    service = service_of(request)
    header = request.headers.get("authorization", "")
    if not header.lower().startswith("bearer "):
        return OAuthError("invalid_token", "a bearer token of an EHR (system) client is required", 401).response()
    try:
        caller = await service.authenticate(header[7:].strip(), store_of(request), base)
    except AuthFailure as exc:
        return OAuthError("invalid_token", str(exc), exc.status).response()
    if caller.kind not in ("admin", "system"):
        return OAuthError("insufficient_scope", "only an EHR's system client may create launch contexts",
                          403).response()
    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("patient"), str):
        return OAuthError("invalid_request", 'send {"patient": "<Patient id>"}').response()
    patient, encounter = body["patient"], body.get("encounter")
    if await store_of(request).read("Patient", patient) is None:
        return OAuthError("invalid_request", f"Patient/{patient} does not exist").response()
    launch_id = await store_of(request).write(
        lambda tx: create_launch(tx.conn, patient, encounter if isinstance(encounter, str) else None,
                                 caller.client_id)
    )
    return JSONResponse({"launch": launch_id}, 201, _NO_STORE)
