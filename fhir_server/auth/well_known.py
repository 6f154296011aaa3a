"""SMART discovery: /fhir/.well-known/smart-configuration and the CapabilityStatement's security.

https://hl7.org/fhir/smart-app-launch/STU2.2/conformance.html

Both list only what works: the grants, client authentication methods and capabilities the
server implements; `scopes_supported` gives the forms a client may ask for.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from fhir_server.auth.clientauth import ASSERTION_ALGS

__all__ = [
    "capability_security",
    "openid_configuration",
    "openid_configuration_endpoint",
    "smart_configuration",
    "smart_configuration_endpoint",
]

CAPABILITIES = [
    "launch-ehr",
    "launch-standalone",
    "client-public",
    "client-confidential-symmetric",
    "client-confidential-asymmetric",
    "context-banner",
    "context-ehr-patient",
    "context-standalone-patient",
    "sso-openid-connect",
    "permission-offline",
    "permission-online",
    "permission-patient",
    "permission-user",
    "permission-v1",
    "permission-v2",
    "authorize-post",
]
SCOPES = [
    "openid", "fhirUser", "launch", "launch/patient", "offline_access", "online_access",
    "patient/*.cruds", "user/*.cruds", "system/*.cruds", "patient/*.read", "user/*.read", "system/*.read",
]


def smart_configuration(issuer: str) -> dict[str, Any]:
    return {
        "issuer": issuer,
        "jwks_uri": f"{issuer}/jwks",
        "authorization_endpoint": f"{issuer}/authorize",
        "token_endpoint": f"{issuer}/token",
        "introspection_endpoint": f"{issuer}/introspect",
        "revocation_endpoint": f"{issuer}/revoke",
        "grant_types_supported": ["authorization_code", "client_credentials", "refresh_token"],
        "response_types_supported": ["code"],
        "token_endpoint_auth_methods_supported": [
            "private_key_jwt", "client_secret_basic", "client_secret_post", "none",
        ],
        "token_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGS),
        "id_token_signing_alg_values_supported": ["RS256"],
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": SCOPES,
        "capabilities": CAPABILITIES,
    }


def capability_security(issuer: str, cors: bool) -> dict[str, Any]:
    """CapabilityStatement.rest.security: the SMART `oauth-uris` extension, service SMART-on-FHIR."""
    return {
        "cors": cors,
        "service": [{
            "coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                "code": "SMART-on-FHIR",
            }],
            "text": "OAuth2 using SMART-on-FHIR profile (see http://docs.smarthealthit.org)",
        }],
        "extension": [{
            "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
            "extension": [
                {"url": "token", "valueUri": f"{issuer}/token"},
                {"url": "authorize", "valueUri": f"{issuer}/authorize"},
                {"url": "introspect", "valueUri": f"{issuer}/introspect"},
                {"url": "revoke", "valueUri": f"{issuer}/revoke"},
            ],
        }],
        "description": "Bearer tokens from this server's SMART authorisation server (Backend Services, "
        "App Launch v2) or the configured external OpenID provider.",
    }


def openid_configuration(issuer: str) -> dict[str, Any]:
    """OpenID Provider metadata for our id_tokens (SMART `sso-openid-connect`)."""
    return {
        "issuer": issuer,
        "jwks_uri": f"{issuer}/jwks",
        "authorization_endpoint": f"{issuer}/authorize",
        "token_endpoint": f"{issuer}/token",
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": ["openid", "fhirUser"],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "nonce", "fhirUser"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["private_key_jwt", "client_secret_basic", "client_secret_post",
                                                  "none"],
    }


async def openid_configuration_endpoint(request: Request) -> Response:
    service = request.app.state.auth
    base = service.fhir_base(str(request.base_url))
    return JSONResponse(openid_configuration(service.issuer(base)), headers={"Cache-Control": "public, max-age=3600"})


async def smart_configuration_endpoint(request: Request) -> Response:
    service = request.app.state.auth
    base = service.fhir_base(str(request.base_url))
    return JSONResponse(smart_configuration(service.issuer(base)),
                        headers={"Cache-Control": "public, max-age=3600"})
