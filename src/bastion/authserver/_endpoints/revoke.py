"""The revocation endpoint (RFC 7009).

POST, form body, client authentication as at the token endpoint (a public
client names itself with ``client_id``). Revoking a refresh token revokes its
grant, so the whole family and the access tokens of the grant stop working
(RFC 7009 section 2.1); revoking one of our access tokens revokes its grant
too (the token's ``gid`` claim). A token that is unknown, invalid, expired or
another client's is answered 200 all the same (RFC 7009 section 2.2): the
answer never tells whether a token exists. The audit trail does: a revocation is a
``grant.revoked`` event, and another client's token is one with the outcome
``refused``; an unknown token is no event.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from bastion._core.errors import AuthenticationError
from bastion.authserver._client_auth import authenticate_client
from bastion.authserver._errors import NO_STORE, guarded
from bastion.authserver._forms import form_params
from bastion.authserver._grants.refresh_token import RefreshTokens
from bastion.authserver._models import Client

if TYPE_CHECKING:
    from bastion.authserver._server import AuthorizationServer

__all__ = ["revoke_token", "routes"]


#: The reason of a revocation through the endpoint.
REASON = "revocation endpoint"


async def _revoke(server: AuthorizationServer, client: Client, owner: str | None, grant_id: str) -> None:
    if owner == client.client_id:
        await server.revoke_grant(grant_id, reason=REASON)
        return
    await server.audit.emit(
        "grant.revoked", "refused", client_id=client.client_id, grant_id=grant_id, reason="another client's token"
    )


async def _revoke_refresh_token(server: AuthorizationServer, client: Client, token: str) -> bool:
    record = await RefreshTokens(server).lookup(token)
    if record is None:
        return False
    await _revoke(server, client, record["client_id"], record["grant_id"])
    return True


async def _revoke_access_token(server: AuthorizationServer, client: Client, token: str) -> bool:
    if token.count(".") != 2:
        return False
    try:
        access = await server.any_resource_verifier.verify(token)
    except AuthenticationError:
        return False
    claims = access.claims or {}
    grant_id = claims.get("gid")
    if isinstance(grant_id, str):
        await _revoke(server, client, access.client_id, grant_id)
    return True


async def revoke_token(server: AuthorizationServer, client: Client, token: str, hint: str | None) -> None:
    """Revoke ``token`` if it is ``client``'s; the hint only orders the lookups (RFC 7009 section 2.1)."""
    lookups = [_revoke_refresh_token, _revoke_access_token]
    if hint == "access_token":
        lookups.reverse()
    for lookup in lookups:
        if await lookup(server, client, token):
            return


def routes(server: AuthorizationServer) -> list[BaseRoute]:
    """``POST /revoke``."""

    async def revoke(request: Request) -> Response:
        async def handle() -> Response:
            params = await form_params(request)
            client = await authenticate_client(server, request, params)
            await revoke_token(server, client, params.require("token"), params.get("token_type_hint"))
            return Response(status_code=200, headers=NO_STORE)

        return await guarded(handle, server.outages)

    return [Route(server.path("/revoke"), revoke, methods=["POST"])]
