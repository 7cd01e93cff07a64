"""``Keycloak``: sign users in with a Keycloak realm."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

from typing_extensions import Unpack

from bastion.providers._checks import identifier, required, scope_list
from bastion.providers._checks import server_url as checked_url
from bastion.providers._env import ProviderEnv, Setting, client, register
from bastion.proxy._options import ProxyOptions
from bastion.proxy._proxy import OAuthProxy
from bastion.proxy._upstream import Upstream

__all__ = ["Keycloak"]


@register
class Keycloak(OAuthProxy):
    """Sign users in with Keycloak.

    In the realm, create an OpenID Connect client with "Client authentication"
    on and the "Standard flow", add ``<base_url>/auth/callback`` to its Valid
    redirect URIs, and give its Client ID and its secret (Credentials tab) here.

    The user's realm roles (``realm_access.roles``) become the user's roles.
    Keycloak puts them in the access token only by default: turn on "Add to ID
    token" in the realm's Client scopes, ``roles``, Mappers, ``realm roles``.

    Args:
        server_url: Keycloak's URL (``https://sso.example.com``, with ``/auth``
            for versions before 17).
        realm: The realm's name.
        client_id: The Keycloak client's ID.
        client_secret: The Keycloak client's secret.
        base_url: This server's public URL.
        scopes: Scopes asked of Keycloak.
        mcp_scopes: The scopes MCP clients may ask of this server, with descriptions.
        name: The provider's name on the consent page.
        authorize_params: Extra authorization request parameters (``kc_idp_hint``...).
        **options: Everything :class:`~bastion.proxy.OAuthProxy` takes.
    """

    env: ClassVar[ProviderEnv] = ProviderEnv(
        "keycloak",
        (
            Setting("server_url", "SERVER_URL", "url", required=True),
            Setting("realm", "REALM", required=True),
            *client(),
        ),
    )

    def __init__(
        self,
        *,
        server_url: str,
        realm: str,
        client_id: str,
        client_secret: str,
        base_url: str,
        scopes: str | Sequence[str] = ("openid", "email", "profile"),
        mcp_scopes: Mapping[str, str] | Sequence[str] | None = None,
        name: str = "Keycloak",
        authorize_params: Mapping[str, str] | None = None,
        **options: Unpack[ProxyOptions],
    ) -> None:
        issuer = f"{checked_url(server_url, 'server_url')}/realms/{identifier(realm, 'realm')}"
        base = f"{issuer}/protocol/openid-connect"
        asked = scope_list(scopes)
        upstream = Upstream(
            name=name,
            authorization_endpoint=f"{base}/auth",
            token_endpoint=f"{base}/token",
            client_id=required(client_id, "client_id"),
            client_secret=required(client_secret, "client_secret"),
            scopes=asked,
            identity="id_token" if "openid" in asked else "userinfo",
            issuer=issuer,
            jwks_uri=f"{base}/certs",
            userinfo_endpoint=f"{base}/userinfo",
            revocation_endpoint=f"{base}/revoke",
            pkce=True,
            token_auth="client_secret_basic",
            authorize_params=dict(authorize_params or {}),
            roles_claim="realm_access.roles",
        )
        super().__init__(upstream, base_url=base_url, scopes=mcp_scopes, **options)
