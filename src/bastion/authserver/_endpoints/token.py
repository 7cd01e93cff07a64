"""The token endpoint (RFC 6749 section 3.2 and 5, OAuth 2.1 section 3.2).

POST, form body only. The checks, in order: the parameters are well formed,
the grant type is known, the DPoP proof (RFC 9449, when a ``DPoP`` header is sent) is
valid, the client authenticates, the client may use the grant type, a client that
always uses DPoP sent a proof; then the grant's own module decides, and binds the
tokens to the proof's key. The proof is checked before the client authenticates, so
that a nonce challenge does not spend a single-use client assertion. Answers are RFC 6749 section 5.1 and
5.2 JSON bodies with ``Cache-Control: no-store``; a store outage is a 503
``temporarily_unavailable``, never a 500 with details.

Every answer is an audit event: ``token.issued`` with the grant type, or
``token.refused`` with the OAuth error code as its reason (the grant type when it
is one the server knows, the client once it authenticated), after ``dpop.refused``
naming the check when the DPoP proof was refused.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from bastion._core.audit import Outcome
from bastion.authserver._client_auth import authenticate_client
from bastion.authserver._errors import (
    NO_STORE,
    AccessDeniedError,
    InvalidDPoPProofError,
    OAuthError,
    SlowDown,
    UnauthorizedClient,
    UnsupportedGrantType,
    guarded,
)
from bastion.authserver._forms import Params, form_params
from bastion.authserver._grants.authorization_code import grant_authorization_code
from bastion.authserver._grants.client_credentials import grant_client_credentials
from bastion.authserver._grants.jwt_bearer import JWT_BEARER, grant_jwt_bearer
from bastion.authserver._grants.refresh_token import RefreshTokens
from bastion.authserver._models import Client, TokenSet

if TYPE_CHECKING:
    from bastion.authserver._server import AuthorizationServer

__all__ = ["GRANTS", "Attempt", "Grant", "refusal_outcome", "routes", "token_request"]

logger = logging.getLogger("bastion")

#: A grant: ``(server, authenticated client, parameters, DPoP key thumbprint or None) -> tokens``.
Grant = Callable[["AuthorizationServer", Client, Params, "str | None"], Awaitable[TokenSet]]


async def grant_refresh_token(server: AuthorizationServer, client: Client, params: Params, jkt: str | None) -> TokenSet:
    """The ``refresh_token`` grant (RFC 6749 section 6); the rules are in :mod:`._refresh`."""
    token = params.require("refresh_token")
    return await RefreshTokens(server).rotate(token, client, params.get("scope"), params.get("resource"), jkt=jkt)


GRANTS: dict[str, Grant] = {
    "authorization_code": grant_authorization_code,
    "refresh_token": grant_refresh_token,
    "client_credentials": grant_client_credentials,
    JWT_BEARER: grant_jwt_bearer,
}


@dataclass
class Attempt:
    """What a token request is known to be so far, for its audit event."""

    #: The grant type, once it is one the server knows (an unknown one is not repeated).
    grant_type: str | None = None
    #: The client, once it authenticated.
    client_id: str | None = None


async def token_request(server: AuthorizationServer, request: Request, attempt: Attempt | None = None) -> TokenSet:
    """Handle one token request; raises :class:`OAuthError` for every refusal.

    ``attempt`` is filled in as the checks pass.
    """
    attempt = attempt if attempt is not None else Attempt()
    params = await form_params(request)
    grant_type = params.require("grant_type")
    grant = GRANTS.get(grant_type)
    if grant is None or (grant_type == JWT_BEARER and not server.identity_assertion_issuers):
        raise UnsupportedGrantType("the grant type is not supported", detail=f"grant type {grant_type[:80]!r}")
    attempt.grant_type = grant_type
    jkt = await server.dpop_proofs.check(request)
    client = await authenticate_client(server, request, params)
    attempt.client_id = client.client_id
    if grant_type not in client.grant_types:
        raise UnauthorizedClient(f"the client is not registered for the {grant_type} grant")
    server.dpop_proofs.require(client, jkt)
    return await grant(server, client, params, jkt)


def refusal_outcome(error: OAuthError) -> Outcome:
    """An OAuth error's audit outcome: ``error`` on the server's side, ``refused`` by policy, else ``failure``."""
    if error.status >= 500:
        return "error"
    if isinstance(error, (UnauthorizedClient, AccessDeniedError, SlowDown)):
        return "refused"
    return "failure"


def routes(server: AuthorizationServer) -> list[BaseRoute]:
    """``POST /token``."""

    async def token(request: Request) -> Response:
        async def handle() -> Response:
            attempt = Attempt()
            try:
                tokens = await token_request(server, request, attempt)
            except OAuthError as exc:
                if isinstance(exc, InvalidDPoPProofError) and exc.reason is not None:
                    await server.audit.emit("dpop.refused", "failure", client_id=attempt.client_id, reason=exc.reason)
                await server.audit.emit(
                    "token.refused",
                    refusal_outcome(exc),
                    client_id=attempt.client_id,
                    grant_type=attempt.grant_type,
                    reason=exc.error,
                )
                raise
            await server.audit.emit(
                "token.issued",
                "success",
                subject=tokens.subject,
                client_id=attempt.client_id,
                grant_id=tokens.grant_id,
                grant_type=attempt.grant_type,
                scopes=tokens.scopes,
                resource=tokens.resource,
            )
            return JSONResponse(tokens.body(server.clock()), headers=NO_STORE)

        response = await guarded(handle, server.outages)
        # RFC 9449 section 8.2: every answer to a proof carries the nonce the next proof needs.
        for name, value in (await server.dpop_proofs.response_headers(request)).items():
            response.headers.setdefault(name, value)
        return response

    return [Route(server.path("/token"), token, methods=["POST"])]
