"""Tokens for another API, obtained from the upstream provider with the user's own token.

Two ways, depending on the provider (``Upstream.token_exchange``):

- ``rfc8693``: RFC 8693 token exchange: the user's upstream access token is the
  ``subject_token``; ``audience`` and ``scope`` name what the new token is for.
- ``entra_obo``: Microsoft Entra ID's on-behalf-of flow (a ``jwt-bearer`` grant
  with ``requested_token_use=on_behalf_of``); Entra names the API by its scopes
  (``api://<app-id>/.default``), so ``audience`` becomes a ``.default`` scope
  when no scopes are given.

Exchanged tokens are not cached: a tool that needs one often should keep it for
its lifetime itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from bastion._core.errors import UpstreamUnavailable
from bastion._resource.tokens import AccessToken
from bastion.proxy._upstream import UpstreamError

if TYPE_CHECKING:
    from bastion.proxy._proxy import OAuthProxy

__all__ = ["TOKEN_EXCHANGE", "exchange_token"]

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"


async def exchange_token(proxy: OAuthProxy, access: AccessToken, audience: str | None, scopes: Sequence[str]) -> str:
    """An upstream access token for ``audience``/``scopes``, acting for the user of ``access``.

    Raises:
        UpstreamUnavailable: the provider does not exchange tokens, the upstream
            sign-in is gone, or the provider refused the exchange.
    """
    style = proxy.upstream.token_exchange
    if style is None:
        raise UpstreamUnavailable(f"{proxy.upstream.name} does not exchange tokens for other audiences")
    if audience is None and not scopes:
        raise UpstreamUnavailable("a token exchange needs an audience or scopes")
    subject_token = await proxy.upstream_token(access)
    if style == "rfc8693":
        data = {
            "grant_type": TOKEN_EXCHANGE,
            "subject_token": subject_token,
            "subject_token_type": ACCESS_TOKEN_TYPE,
            "requested_token_type": ACCESS_TOKEN_TYPE,
        }
        if audience is not None:
            data["audience"] = audience
    else:
        requested = list(scopes) or [f"{audience.rstrip('/')}/.default"] if audience is not None else list(scopes)
        data = {
            "grant_type": JWT_BEARER,
            "assertion": subject_token,
            "requested_token_use": "on_behalf_of",
            "scope": " ".join(requested),
        }
        scopes = ()
    if scopes:
        data["scope"] = " ".join(scopes)
    try:
        tokens = await proxy.upstream_client.token_request(data)
    except UpstreamError as exc:
        raise UpstreamUnavailable(f"the token exchange failed: {exc}") from None
    return tokens.access_token
