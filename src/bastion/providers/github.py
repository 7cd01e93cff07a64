"""``GitHub``: sign users in with GitHub (OAuth Apps, and GitHub Apps' user tokens).

GitHub is not an OpenID provider: the user is read from the REST API
(``/user``, and ``/user/emails`` when the email is private), the subject is the
account's numeric ``id`` (a login can be renamed, the id cannot). OAuth App
tokens never expire and come without refresh tokens; GitHub App user tokens
last eight hours and come with a refresh token, which the proxy uses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar
from urllib.parse import quote

from typing_extensions import Unpack

from bastion.providers._env import ProviderEnv, Setting, client, register
from bastion.proxy._options import ProxyOptions
from bastion.proxy._proxy import OAuthProxy
from bastion.proxy._upstream import Upstream

__all__ = ["GITHUB_CLAIMS", "GitHub"]

#: The fields of GitHub's ``/user`` kept as claims of the proxy's tokens.
GITHUB_CLAIMS = ("id", "login", "name", "email", "avatar_url", "html_url")


@register
class GitHub(OAuthProxy):
    """Sign users in with GitHub.

    Register an OAuth App or a GitHub App at GitHub with the callback URL
    ``<base_url>/auth/callback``. The user's GitHub token is kept sealed by the
    proxy; a tool reads it with ``await get_access_token().upstream()``.

    Args:
        client_id: The app's client ID at GitHub.
        client_secret: The app's client secret at GitHub.
        base_url: This server's public URL.
        scopes: GitHub scopes asked of the user (OAuth Apps; a GitHub App's
            permissions are set at GitHub instead). ``user:email`` lets the proxy
            read a private email address.
        mcp_scopes: The scopes MCP clients may ask of this server, with descriptions.
        github_url: GitHub's web address (GitHub Enterprise Server: your host).
        api_url: GitHub's REST API (GitHub Enterprise Server: ``https://HOST/api/v3``).
        **options: Everything :class:`~bastion.proxy.OAuthProxy` takes.
    """

    env: ClassVar[ProviderEnv] = ProviderEnv(
        "github", (*client(), Setting("github_url", "URL", "url"), Setting("api_url", "API_URL", "url"))
    )

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        base_url: str,
        scopes: Sequence[str] = ("read:user", "user:email"),
        mcp_scopes: Mapping[str, str] | Sequence[str] | None = None,
        github_url: str = "https://github.com",
        api_url: str = "https://api.github.com",
        **options: Unpack[ProxyOptions],
    ) -> None:
        super().__init__(
            github_upstream(
                client_id=client_id,
                client_secret=client_secret,
                scopes=scopes,
                github_url=github_url,
                api_url=api_url,
            ),
            base_url=base_url,
            scopes=mcp_scopes,
            **options,
        )


def github_upstream(
    *,
    client_id: str,
    client_secret: str,
    scopes: Sequence[str] = ("read:user", "user:email"),
    github_url: str = "https://github.com",
    api_url: str = "https://api.github.com",
) -> Upstream:
    """The :class:`Upstream` describing GitHub (or a GitHub Enterprise Server) for ``client_id``."""
    web = github_url.rstrip("/")
    api = api_url.rstrip("/")
    return Upstream(
        name="GitHub",
        authorization_endpoint=f"{web}/login/oauth/authorize",
        token_endpoint=f"{web}/login/oauth/access_token",
        client_id=client_id,
        client_secret=client_secret,
        scopes=tuple(scopes),
        identity="github",
        user_endpoint=f"{api}/user",
        revocation_endpoint=f"{api}/applications/{quote(client_id, safe='')}/token",
        revocation="github",
        pkce=True,
        token_auth="client_secret_post",
        subject_claim="id",
        identity_claims=GITHUB_CLAIMS,
    )
