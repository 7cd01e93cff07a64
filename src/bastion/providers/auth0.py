"""``Auth0``: sign users in with an Auth0 tenant."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

from typing_extensions import Unpack

from bastion.providers._checks import hostname, required, scope_list
from bastion.providers._env import ProviderEnv, Setting, client, register
from bastion.proxy._options import ProxyOptions
from bastion.proxy._proxy import OAuthProxy
from bastion.proxy._upstream import Upstream

__all__ = ["Auth0"]


@register
class Auth0(OAuthProxy):
    """Sign users in with Auth0.

    Create a "Regular Web Application" (Applications, Create Application), add
    ``<base_url>/auth/callback`` to its Allowed Callback URLs, keep its Token
    Endpoint Authentication Method at "Post", and give its Domain, Client ID
    and Client Secret here. For a refresh token (and so sessions longer than
    the first access token), keep ``offline_access`` in ``scopes`` and, with
    an ``audience``, allow offline access in that API's settings.

    Args:
        domain: The tenant's domain (``example.us.auth0.com`` or a custom domain), without ``https://``.
        client_id: The application's Client ID.
        client_secret: The application's Client Secret.
        base_url: This server's public URL.
        audience: The identifier of an API of yours registered in Auth0: the
            upstream token (``token.upstream()``) is then a JWT for that API.
            Without it, Auth0 issues a token for its userinfo endpoint only.
        scopes: Scopes asked of Auth0.
        mcp_scopes: The scopes MCP clients may ask of this server, with descriptions.
        name: The provider's name on the consent page.
        authorize_params: Extra authorization request parameters (``connection``, ``organization``...).
        **options: Everything :class:`~bastion.proxy.OAuthProxy` takes.
    """

    env: ClassVar[ProviderEnv] = ProviderEnv(
        "auth0", (Setting("domain", "DOMAIN", required=True), *client(), Setting("audience", "AUDIENCE"))
    )

    def __init__(
        self,
        *,
        domain: str,
        client_id: str,
        client_secret: str,
        base_url: str,
        audience: str | None = None,
        scopes: str | Sequence[str] = ("openid", "email", "profile", "offline_access"),
        mcp_scopes: Mapping[str, str] | Sequence[str] | None = None,
        name: str = "Auth0",
        authorize_params: Mapping[str, str] | None = None,
        **options: Unpack[ProxyOptions],
    ) -> None:
        base = "https://" + hostname(domain, "domain")
        asked = scope_list(scopes)
        params = dict(authorize_params or {})
        if audience is not None:
            params["audience"] = required(audience, "audience")
        upstream = Upstream(
            name=name,
            authorization_endpoint=f"{base}/authorize",
            token_endpoint=f"{base}/oauth/token",
            client_id=required(client_id, "client_id"),
            client_secret=required(client_secret, "client_secret"),
            scopes=asked,
            identity="id_token" if "openid" in asked else "userinfo",
            issuer=f"{base}/",
            jwks_uri=f"{base}/.well-known/jwks.json",
            userinfo_endpoint=f"{base}/userinfo",
            revocation_endpoint=f"{base}/oauth/revoke",
            pkce=True,
            token_auth="client_secret_post",
            authorize_params=params,
        )
        super().__init__(upstream, base_url=base_url, scopes=mcp_scopes, **options)
