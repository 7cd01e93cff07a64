"""``Okta``: sign users in with an Okta organization, through one of its authorization servers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

from typing_extensions import Unpack

from bastion.providers._checks import hostname, identifier, required, scope_list
from bastion.providers._env import ProviderEnv, Setting, client, register
from bastion.proxy._options import ProxyOptions
from bastion.proxy._proxy import OAuthProxy
from bastion.proxy._upstream import Upstream

__all__ = ["Okta"]


@register
class Okta(OAuthProxy):
    """Sign users in with Okta.

    Create an app integration (Applications, Create App Integration, "OIDC -
    OpenID Connect", "Web Application") with the sign-in redirect URI
    ``<base_url>/auth/callback`` and the Refresh Token grant type, keep its
    client authentication at "Client secret" (sent as HTTP Basic), assign the
    users or groups allowed in, and give its Client ID and secret here.

    Args:
        domain: The organization's domain (``example.okta.com`` or a custom domain), without ``https://``.
        client_id: The app integration's client ID.
        client_secret: The app integration's client secret.
        base_url: This server's public URL.
        authorization_server: The custom authorization server's id (``default``
            for the one every organization has). ``None`` uses the org
            authorization server (``https://{domain}/oauth2/v1/...``), whose
            access tokens are only for Okta's own APIs.
        scopes: Scopes asked of Okta (``offline_access`` for a refresh token).
        mcp_scopes: The scopes MCP clients may ask of this server, with descriptions.
        name: The provider's name on the consent page.
        authorize_params: Extra authorization request parameters (``idp``, ``prompt``...).
        **options: Everything :class:`~bastion.proxy.OAuthProxy` takes.
    """

    env: ClassVar[ProviderEnv] = ProviderEnv(
        "okta",
        (
            Setting("domain", "DOMAIN", required=True),
            *client(),
            Setting("authorization_server", "AUTHORIZATION_SERVER"),
        ),
    )

    def __init__(
        self,
        *,
        domain: str,
        client_id: str,
        client_secret: str,
        base_url: str,
        authorization_server: str | None = "default",
        scopes: str | Sequence[str] = ("openid", "email", "profile", "offline_access"),
        mcp_scopes: Mapping[str, str] | Sequence[str] | None = None,
        name: str = "Okta",
        authorize_params: Mapping[str, str] | None = None,
        **options: Unpack[ProxyOptions],
    ) -> None:
        origin = "https://" + hostname(domain, "domain")
        if authorization_server is None:
            issuer, base = origin, f"{origin}/oauth2/v1"
        else:
            issuer = f"{origin}/oauth2/{identifier(authorization_server, 'authorization_server')}"
            base = f"{issuer}/v1"
        asked = scope_list(scopes)
        upstream = Upstream(
            name=name,
            authorization_endpoint=f"{base}/authorize",
            token_endpoint=f"{base}/token",
            client_id=required(client_id, "client_id"),
            client_secret=required(client_secret, "client_secret"),
            scopes=asked,
            identity="id_token" if "openid" in asked else "userinfo",
            issuer=issuer,
            jwks_uri=f"{base}/keys",
            userinfo_endpoint=f"{base}/userinfo",
            revocation_endpoint=f"{base}/revoke",
            pkce=True,
            token_auth="client_secret_basic",
            authorize_params=dict(authorize_params or {}),
        )
        super().__init__(upstream, base_url=base_url, scopes=mcp_scopes, **options)
