"""The ``client_credentials`` grant (RFC 6749 section 4.4; MCP extension ``oauth-client-credentials``).

The client acts on its own behalf: it must be confidential (a secret or
``private_key_jwt``), the token's subject is the client id, and no refresh
token is issued (RFC 6749 section 4.4.3). Each token gets a grant of its own,
living as long as the token, so that ``/revoke`` reaches it like any other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bastion.authserver._errors import UnauthorizedClient
from bastion.authserver._forms import Params
from bastion.authserver._models import Client, TokenSet, User

if TYPE_CHECKING:
    from bastion.authserver._server import AuthorizationServer

__all__ = ["grant_client_credentials"]


async def grant_client_credentials(
    server: AuthorizationServer, client: Client, params: Params, jkt: str | None = None
) -> TokenSet:
    """An access token for the client itself.

    Raises:
        UnauthorizedClient: the client is public.
        InvalidScope: a scope is unknown or beyond the client's registration.
        InvalidTarget: the resource is not served here.
    """
    if client.is_public:
        raise UnauthorizedClient("client_credentials needs an authenticated, confidential client")
    scopes = server.resolve_scopes(params.get("scope"), client)
    audience = server.resolve_resource(params.get("resource"))
    now = server.clock()
    grant_id = await server.new_grant(User(client.client_id), client.client_id, ttl=server.lifetimes.access_token)
    access_token, expires_in = await server.access_tokens.mint(
        client_id=client.client_id,
        subject=client.client_id,
        scopes=scopes,
        resource=audience,
        grant_id=grant_id,
        jkt=jkt,
    )
    return TokenSet(
        access_token,
        expires_in,
        scopes,
        None,
        now,
        subject=client.client_id,
        grant_id=grant_id,
        resource=audience,
        jkt=jkt,
    )
