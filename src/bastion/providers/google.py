"""``Google``: sign users in with a Google account (OpenID Connect, static endpoints)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

from typing_extensions import Unpack

from bastion._core.errors import ConfigurationError
from bastion.providers._env import ProviderEnv, Setting, client, register
from bastion.proxy._options import ProxyOptions
from bastion.proxy._proxy import OAuthProxy
from bastion.proxy._upstream import Upstream

__all__ = ["GOOGLE_ISSUER", "Google"]

GOOGLE_ISSUER = "https://accounts.google.com"
#: Google signs some id_tokens with its issuer without the scheme.
GOOGLE_ISSUER_BARE = "accounts.google.com"
GOOGLE_AUTHORIZE = "https://accounts.google.com/o/oauth2/v2/auth"
GOOGLE_TOKEN = "https://oauth2.googleapis.com/token"
GOOGLE_USERINFO = "https://openidconnect.googleapis.com/v1/userinfo"
GOOGLE_JWKS = "https://www.googleapis.com/oauth2/v3/certs"
GOOGLE_REVOKE = "https://oauth2.googleapis.com/revoke"


@register
class Google(OAuthProxy):
    """Sign users in with Google.

    Create an OAuth client ID of type "Web application" in the Google Cloud
    console, with the authorized redirect URI ``<base_url>/auth/callback``. The
    user's identity comes from the verified id_token; the Google access token
    (refreshed with the refresh token Google gives with ``access_type=offline``)
    is kept sealed by the proxy, for tools: ``await get_access_token().upstream()``.

    Args:
        client_id: The OAuth client's ID.
        client_secret: The OAuth client's secret.
        base_url: This server's public URL.
        scopes: Google scopes asked of the user; ``openid`` is required (the
            identity is read from the id_token).
        mcp_scopes: The scopes MCP clients may ask of this server, with descriptions.
        hosted_domain: A Google Workspace domain: only its accounts may sign in
            (the id_token's ``hd`` claim is checked; the ``hd`` parameter alone is
            only a hint to Google's account chooser).
        **options: Everything :class:`~bastion.proxy.OAuthProxy` takes.

    Raises:
        ConfigurationError: ``openid`` is not among ``scopes``.
    """

    env: ClassVar[ProviderEnv] = ProviderEnv("google", (*client(), Setting("hosted_domain", "HOSTED_DOMAIN")))

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        base_url: str,
        scopes: Sequence[str] = ("openid", "email", "profile"),
        mcp_scopes: Mapping[str, str] | Sequence[str] | None = None,
        hosted_domain: str | None = None,
        **options: Unpack[ProxyOptions],
    ) -> None:
        super().__init__(
            google_upstream(
                client_id=client_id, client_secret=client_secret, scopes=scopes, hosted_domain=hosted_domain
            ),
            base_url=base_url,
            scopes=mcp_scopes,
            **options,
        )


def google_upstream(
    *,
    client_id: str,
    client_secret: str,
    scopes: Sequence[str] = ("openid", "email", "profile"),
    hosted_domain: str | None = None,
) -> Upstream:
    """The :class:`Upstream` describing Google for ``client_id``."""
    if "openid" not in scopes:
        raise ConfigurationError("Google needs the openid scope: the user is read from the id_token")
    params = {"access_type": "offline", "prompt": "consent"}
    if hosted_domain:
        params["hd"] = hosted_domain
    return Upstream(
        name="Google",
        authorization_endpoint=GOOGLE_AUTHORIZE,
        token_endpoint=GOOGLE_TOKEN,
        client_id=client_id,
        client_secret=client_secret,
        scopes=tuple(scopes),
        identity="id_token",
        issuer=GOOGLE_ISSUER,
        extra_issuers=(GOOGLE_ISSUER_BARE,),
        jwks_uri=GOOGLE_JWKS,
        userinfo_endpoint=GOOGLE_USERINFO,
        revocation_endpoint=GOOGLE_REVOKE,
        pkce=True,
        token_auth="client_secret_post",
        authorize_params=params,
        required_claims={"hd": hosted_domain} if hosted_domain else {},
    )
