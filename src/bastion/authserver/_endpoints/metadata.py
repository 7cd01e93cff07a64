"""Discovery: RFC 8414 metadata and OpenID discovery at every location clients try, and the JWKS.

For an issuer with a path (``https://a.example/t1``) a 2026-07-28 client tries
``/.well-known/oauth-authorization-server/t1``, then
``/.well-known/openid-configuration/t1``, then ``/t1/.well-known/openid-configuration``;
a root issuer is found at ``/.well-known/oauth-authorization-server`` and
``/.well-known/openid-configuration``, which 2025-03-26 clients also read from the
MCP server's origin. The document's ``issuer`` is the issuer exactly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from bastion.authserver._errors import guarded

if TYPE_CHECKING:
    from bastion.authserver._server import AuthorizationServer

__all__ = ["JWT_BEARER", "metadata_document", "metadata_paths", "routes"]

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"]
ASSERTION_ALGORITHMS = ["ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "EdDSA"]

#: Browsers cache the documents a little; key rotation is announced well before use.
_PUBLIC_CACHE = {"Cache-Control": "public, max-age=300", "Access-Control-Allow-Origin": "*"}


def metadata_document(server: AuthorizationServer) -> dict[str, Any]:
    """The authorization server metadata (RFC 8414 section 2)."""
    grants = ["authorization_code", "refresh_token", "client_credentials"]
    if server.identity_assertion_issuers:
        grants.append(JWT_BEARER)
    doc: dict[str, Any] = {
        "issuer": server.require_issuer(),
        "authorization_endpoint": server.url("/authorize"),
        "token_endpoint": server.url("/token"),
        "jwks_uri": server.url("/jwks"),
    }
    if server.registration.dynamic:
        doc["registration_endpoint"] = server.url("/register")
    doc.update(
        {
            "scopes_supported": [*server.scopes, "offline_access"],
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": grants,
            "token_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
            "token_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGORITHMS,
            "revocation_endpoint": server.url("/revoke"),
            "revocation_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
            "introspection_endpoint": server.url("/introspect"),
            "introspection_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS[:3],
            "code_challenge_methods_supported": ["S256"],
            "authorization_response_iss_parameter_supported": True,
            "client_id_metadata_document_supported": server.registration.metadata_documents,
            # RFC 9449 section 5.1: the token endpoint takes DPoP proofs signed with these.
            "dpop_signing_alg_values_supported": list(server.dpop.algorithms),
        }
    )
    if server.identity_assertion_issuers:
        # MCP enterprise-managed authorization: ID-JAG assertions are redeemed at the token endpoint.
        doc["authorization_grant_profiles_supported"] = ["urn:ietf:params:oauth:grant-profile:id-jag"]
    return doc


def metadata_paths(server: AuthorizationServer) -> list[str]:
    """Every path the metadata is served at, for the issuer's path."""
    suffix = server.path("")
    paths = [
        f"/.well-known/oauth-authorization-server{suffix}",
        f"/.well-known/openid-configuration{suffix}",
    ]
    if suffix:
        paths.append(f"{suffix}/.well-known/openid-configuration")
        # 2025-03-26 clients look at the origin's root, whatever the issuer's path.
        paths.append("/.well-known/oauth-authorization-server")
    return paths


def routes(server: AuthorizationServer) -> list[BaseRoute]:
    """The metadata routes and the JWKS route."""

    async def metadata(request: Request) -> Response:
        if request.method == "OPTIONS":
            return _preflight()
        return JSONResponse(metadata_document(server), headers=_PUBLIC_CACHE)

    async def jwks(request: Request) -> Response:
        if request.method == "OPTIONS":
            return _preflight()

        async def keys() -> Response:
            return JSONResponse(await server.keys.public_jwks(), headers=_PUBLIC_CACHE)

        return await guarded(keys, server.outages)  # the key ring lives in the store

    found: list[BaseRoute] = [
        Route(path, metadata, methods=["GET", "OPTIONS"], include_in_schema=False) for path in metadata_paths(server)
    ]
    found.append(Route(server.path("/jwks"), jwks, methods=["GET", "OPTIONS"], include_in_schema=False))
    return found


def _preflight() -> Response:
    return Response(
        status_code=204,
        headers={
            "Access-Control-Allow-Origin": "*",
            "Access-Control-Allow-Methods": "GET, OPTIONS",
            "Access-Control-Allow-Headers": "MCP-Protocol-Version, Content-Type",
            "Access-Control-Max-Age": "86400",
        },
    )
