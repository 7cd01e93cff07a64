"""``Cognito``: sign users in with an Amazon Cognito user pool (its managed login, the hosted UI)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import ClassVar

from typing_extensions import Unpack

from bastion._core.errors import ConfigurationError
from bastion.providers._checks import hostname, required, scope_list
from bastion.providers._env import ProviderEnv, Setting, client, register
from bastion.proxy._options import ProxyOptions
from bastion.proxy._proxy import OAuthProxy
from bastion.proxy._upstream import Upstream

__all__ = ["Cognito"]

_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d{1,2}")
_POOL = re.compile(r"[a-z]{2}(-[a-z]+)+-\d{1,2}_[0-9A-Za-z]{1,55}")


@register
class Cognito(OAuthProxy):
    """Sign users in with Amazon Cognito.

    In the user pool, give the pool a domain (a Cognito prefix domain such as
    ``example.auth.us-east-1.amazoncognito.com`` or a custom one), create an
    app client of type "Traditional web application" (it has a client
    secret), add ``<base_url>/auth/callback`` to its allowed callback URLs,
    allow the authorization code grant and the OpenID scopes below, and give
    its client id and secret here. Turn on token revocation for the app client
    so a revoked grant ends the Cognito session too.

    Cognito always issues a refresh token with the authorization code grant
    (there is no ``offline_access`` scope). The user's groups
    (``cognito:groups``) become the user's roles.

    Args:
        domain: The user pool's domain, without ``https://``.
        region: The AWS region of the pool (``us-east-1``).
        user_pool_id: The pool's id (``us-east-1_AbCdEf123``).
        client_id: The app client's ID.
        client_secret: The app client's secret.
        base_url: This server's public URL.
        scopes: Scopes asked of Cognito.
        mcp_scopes: The scopes MCP clients may ask of this server, with descriptions.
        name: The provider's name on the consent page.
        authorize_params: Extra authorization request parameters (``identity_provider``...).
        **options: Everything :class:`~bastion.proxy.OAuthProxy` takes.
    """

    env: ClassVar[ProviderEnv] = ProviderEnv(
        "cognito",
        (
            Setting("domain", "DOMAIN", required=True),
            Setting("region", "REGION", required=True),
            Setting("user_pool_id", "USER_POOL_ID", required=True),
            *client(),
        ),
    )

    def __init__(
        self,
        *,
        domain: str,
        region: str,
        user_pool_id: str,
        client_id: str,
        client_secret: str,
        base_url: str,
        scopes: str | Sequence[str] = ("openid", "email", "profile"),
        mcp_scopes: Mapping[str, str] | Sequence[str] | None = None,
        name: str = "Amazon Cognito",
        authorize_params: Mapping[str, str] | None = None,
        **options: Unpack[ProxyOptions],
    ) -> None:
        base = "https://" + hostname(domain, "domain")
        if not _REGION.fullmatch(required(region, "region")):
            raise ConfigurationError(f"region {region!r:.60} is not an AWS region such as us-east-1")
        if not _POOL.fullmatch(required(user_pool_id, "user_pool_id")) or not user_pool_id.startswith(region + "_"):
            raise ConfigurationError(f"user_pool_id must look like {region}_AbCdEf123 (the pool's id in {region})")
        issuer = f"https://cognito-idp.{region}.amazonaws.com/{user_pool_id}"
        asked = scope_list(scopes)
        upstream = Upstream(
            name=name,
            authorization_endpoint=f"{base}/oauth2/authorize",
            token_endpoint=f"{base}/oauth2/token",
            client_id=required(client_id, "client_id"),
            client_secret=required(client_secret, "client_secret"),
            scopes=asked,
            identity="id_token" if "openid" in asked else "userinfo",
            issuer=issuer,
            jwks_uri=f"{issuer}/.well-known/jwks.json",
            userinfo_endpoint=f"{base}/oauth2/userInfo",
            revocation_endpoint=f"{base}/oauth2/revoke",
            pkce=True,
            token_auth="client_secret_basic",
            authorize_params=dict(authorize_params or {}),
            roles_claim="cognito:groups",
        )
        super().__init__(upstream, base_url=base_url, scopes=mcp_scopes, **options)
