"""``OIDC``: any OpenID provider, configured from its discovery document."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import httpx2
from typing_extensions import Unpack

from bastion._core.errors import BastionError, ConfigurationError
from bastion._core.http import DEFAULT_TIMEOUT
from bastion._resource.discovery import shared_discovery
from bastion.providers._env import ProviderEnv, Setting, client, register
from bastion.proxy._options import ProxyOptions
from bastion.proxy._proxy import OAuthProxy
from bastion.proxy._upstream import Upstream

__all__ = ["OIDC", "discover"]

logger = logging.getLogger("bastion")


def discover(config_url: str, *, timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
    """The provider's discovery document, fetched once at start-up.

    Raises:
        ConfigurationError: it cannot be fetched, or it is not a usable document
            for the issuer the URL names.
    """
    suffix = "/.well-known/openid-configuration"
    if not config_url.endswith(suffix):
        raise ConfigurationError(f"config_url must end with {suffix}")
    try:
        response = httpx2.get(config_url, timeout=timeout, follow_redirects=False)
        document = response.json() if response.status_code == 200 else None
    except (httpx2.HTTPError, ValueError):
        document = None
    if not isinstance(document, dict):
        raise ConfigurationError(f"the discovery document at {config_url.split('?')[0]} could not be read")
    issuer = config_url[: -len(suffix)]
    if document.get("issuer") not in (issuer, issuer + "/"):
        raise ConfigurationError("the discovery document names another issuer than its URL")
    for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
        if not isinstance(document.get(name), str):
            raise ConfigurationError(f"the discovery document has no {name}")
    return document


@register
class OIDC(OAuthProxy):
    """Sign users in at any OpenID provider, found through its discovery document.

    Args:
        config_url: The provider's discovery document, ``<issuer>/.well-known/openid-configuration``.
        client_id: The proxy's client ID at the provider.
        client_secret: The proxy's client secret at the provider.
        base_url: This server's public URL (register ``<base_url>/auth/callback`` at the provider).
        scopes: Scopes asked of the provider (default ``openid email profile``).
        mcp_scopes: The scopes MCP clients may ask of this server, with descriptions.
        name: The provider's name on the consent page.
        authorize_params: Extra parameters for the provider's authorization request.
        **options: Everything :class:`~bastion.proxy.OAuthProxy` takes.
    """

    env: ClassVar[ProviderEnv] = ProviderEnv(
        "oidc",
        (
            Setting("config_url", "CONFIG_URL", "url", required=True),
            *client(secret_required=False),
            Setting("name", "NAME"),
        ),
    )

    def __init__(
        self,
        *,
        config_url: str,
        client_id: str,
        client_secret: str | None = None,
        base_url: str,
        scopes: Sequence[str] = ("openid", "email", "profile"),
        mcp_scopes: Mapping[str, str] | Sequence[str] | None = None,
        name: str = "your identity provider",
        authorize_params: Mapping[str, str] | None = None,
        **options: Unpack[ProxyOptions],
    ) -> None:
        self.config_url = config_url
        upstream = _upstream(
            discover(config_url), name, client_id, client_secret, tuple(scopes), dict(authorize_params or {})
        )
        super().__init__(upstream, base_url=base_url, scopes=mcp_scopes, **options)
        self._discovery = shared_discovery(config_url, issuer=upstream.issuer, clock=self.clock)

    async def refresh_upstream(self) -> None:
        """Re-read the discovery document when its cache lifetime is over (coalesced, stale kept on failure)."""
        try:
            doc = await self._discovery.document()
        except BastionError as exc:
            logger.warning("the discovery document could not be refreshed; keeping the last one: %s", exc)
            return
        up = self.upstream
        self.replace_upstream(
            _upstream(doc, up.name, up.client_id, up.client_secret, up.scopes, dict(up.authorize_params))
        )


def _upstream(
    doc: Mapping[str, Any],
    name: str,
    client_id: str,
    client_secret: str | None,
    scopes: tuple[str, ...],
    authorize_params: dict[str, str],
) -> Upstream:
    """The provider as its discovery document describes it."""
    methods = doc.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
    return Upstream(
        name=name,
        authorization_endpoint=doc["authorization_endpoint"],
        token_endpoint=doc["token_endpoint"],
        client_id=client_id,
        client_secret=client_secret,
        scopes=scopes,
        identity="id_token" if "openid" in scopes else "userinfo",
        issuer=doc["issuer"],
        jwks_uri=doc["jwks_uri"],
        userinfo_endpoint=doc.get("userinfo_endpoint"),
        revocation_endpoint=doc.get("revocation_endpoint"),
        pkce="S256" in (doc.get("code_challenge_methods_supported") or []),
        token_auth="client_secret_basic" if "client_secret_basic" in methods else "client_secret_post",
        authorize_params=authorize_params,
    )
