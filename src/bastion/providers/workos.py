"""``WorkOS``: sign users in with WorkOS AuthKit, through a WorkOS Connect OAuth application."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

from typing_extensions import Unpack

from bastion.providers._checks import hostname, required, scope_list
from bastion.providers._env import ProviderEnv, Setting, client, register
from bastion.proxy._options import ProxyOptions
from bastion.proxy._proxy import OAuthProxy
from bastion.proxy._upstream import Upstream

__all__ = ["WorkOS"]


@register
class WorkOS(OAuthProxy):
    """Sign users in with WorkOS AuthKit.

    In the WorkOS dashboard, create a Connect application of type OAuth, add
    ``<base_url>/auth/callback`` to its redirect URIs, create a client secret,
    and give the application's client id and secret here with the
    environment's AuthKit domain (``example.authkit.app`` or a custom domain).
    AuthKit's OAuth endpoints are ``https://{domain}/oauth2/authorize``,
    ``/oauth2/token``, ``/oauth2/userinfo`` and ``/oauth2/jwks``; its issuer is
    ``https://{domain}``.

    AuthKit can also be the MCP clients' authorization server itself (it
    supports dynamic client registration): use
    :class:`~bastion.RemoteAuthorization` for that, without the proxy.

    Args:
        domain: The AuthKit domain, without ``https://``.
        client_id: The Connect application's client id (``client_...``).
        client_secret: Its secret; ``None`` for a public application (PKCE only).
        base_url: This server's public URL.
        scopes: Scopes asked of AuthKit (``offline_access`` for a refresh token).
        mcp_scopes: The scopes MCP clients may ask of this server, with descriptions.
        name: The provider's name on the consent page.
        authorize_params: Extra authorization request parameters.
        **options: Everything :class:`~bastion.proxy.OAuthProxy` takes.
    """

    env: ClassVar[ProviderEnv] = ProviderEnv(
        "workos", (Setting("domain", "DOMAIN", required=True), *client(secret_required=False))
    )

    def __init__(
        self,
        *,
        domain: str,
        client_id: str,
        client_secret: str | None = None,
        base_url: str,
        scopes: str | Sequence[str] = ("openid", "profile", "email", "offline_access"),
        mcp_scopes: Mapping[str, str] | Sequence[str] | None = None,
        name: str = "WorkOS",
        authorize_params: Mapping[str, str] | None = None,
        **options: Unpack[ProxyOptions],
    ) -> None:
        base = "https://" + hostname(domain, "domain")
        asked = scope_list(scopes)
        upstream = Upstream(
            name=name,
            authorization_endpoint=f"{base}/oauth2/authorize",
            token_endpoint=f"{base}/oauth2/token",
            client_id=required(client_id, "client_id"),
            client_secret=None if client_secret is None else required(client_secret, "client_secret"),
            scopes=asked,
            identity="id_token" if "openid" in asked else "userinfo",
            issuer=base,
            jwks_uri=f"{base}/oauth2/jwks",
            userinfo_endpoint=f"{base}/oauth2/userinfo",
            pkce=True,
            # AuthKit reads the client's credentials from the body of the token request.
            token_auth="client_secret_post",
            authorize_params=dict(authorize_params or {}),
        )
        super().__init__(upstream, base_url=base_url, scopes=mcp_scopes, **options)
