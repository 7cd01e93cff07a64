"""``OAuthProxy``: bastion's authorization server whose sign-in happens at an upstream identity provider.

Most providers let no MCP client register itself and issue tokens meant for
themselves. The proxy bridges them: MCP clients register with it (CIMD, DCR or
pre-registered) and go through PKCE with it; it uses its one registration at
the provider and one callback URL; it issues its own audience-bound tokens and
never hands out or accepts the provider's. The provider's tokens are kept
sealed in the store (AES-GCM, see ``TokenVault``), refreshed when a tool asks
for them, and revoked at the provider when the grant is revoked.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import Sequence
from typing import Any

from bastion._errors import UpstreamUnavailable
from bastion._tokens import AccessToken
from bastion.authserver._errors import InvalidGrant
from bastion.authserver._models import User
from bastion.authserver._server import GRANT_NAMESPACE, AuthorizationServer
from bastion.authserver._vault import TokenVault
from bastion.proxy._login import UpstreamLogin, proxy_user
from bastion.proxy._upstream import Upstream, UpstreamClient, UpstreamError, UpstreamTokens

__all__ = ["UPSTREAM_NAMESPACE", "OAuthProxy", "UpstreamUnavailable"]

logger = logging.getLogger("bastion")

UPSTREAM_NAMESPACE = "upstream"
#: A tool asking for the provider's token gets one valid for at least this long.
MIN_VALIDITY = 60.0


class OAuthProxy(AuthorizationServer):
    """An authorization server that signs users in at ``upstream``.

    Args:
        upstream: The identity provider.
        base_url: The server's public URL; the issuer, and the base of the callback URL.
        callback_path: Where the provider sends the browser back (register
            ``<base_url><callback_path>`` at the provider). Default ``/auth/callback``.
        encryption_keys: Keys sealing the provider's tokens at rest (base64url,
            32 bytes; the first seals, all open). Default: a key generated once
            and kept in the store.
        **options: Everything :class:`~bastion.AuthorizationServer` takes
            (``store``, ``scopes``, ``clients``, token lifetimes...), except
            ``users`` and ``login``.
    """

    def __init__(
        self,
        upstream: Upstream,
        *,
        base_url: str,
        callback_path: str = "/auth/callback",
        encryption_keys: str | Sequence[str] | None = None,
        **options: Any,
    ) -> None:
        if "users" in options or "login" in options:
            raise TypeError("an OAuthProxy signs users in at its upstream provider: no users= or login=")
        self.upstream = upstream
        self.upstream_client = UpstreamClient(upstream, clock=options.get("clock") or _now)
        super().__init__(base_url, login=UpstreamLogin(self), **options)
        self.callback_path = self.path(callback_path)
        self.callback_url = self.url(callback_path)
        self.vault = TokenVault(self.store, keys=encryption_keys, clock=self.clock)
        self._refreshing: dict[str, asyncio.Future[UpstreamTokens]] = {}

    # -- signing in ------------------------------------------------------------------------------

    async def sign_in(self, code: str, code_verifier: str | None, state: dict[str, Any]) -> User:
        """Redeem the provider's code, read the user, keep the provider's tokens sealed."""
        client = self.upstream_client
        tokens = await client.exchange_code(code, self.callback_url, code_verifier)
        identity = await client.identity(tokens, state.get("nonce") if self.upstream.identity == "id_token" else None)
        ref = secrets.token_urlsafe(24)
        await self._save_upstream(ref, tokens)
        return proxy_user(identity.subject, identity.name, identity.email, dict(identity.claims), ref)

    def _upstream_ttl(self, tokens: UpstreamTokens) -> float:
        if tokens.refresh_token is not None or tokens.expires_at is None:
            return self.refresh_token_ttl
        return max(1.0, tokens.expires_at - self.clock())

    async def _save_upstream(self, ref: str, tokens: UpstreamTokens) -> None:
        sealed = await self.vault.seal_json(tokens.to_dict(), context=_context(ref))
        await self.store.put(UPSTREAM_NAMESPACE, ref, sealed, self._upstream_ttl(tokens))

    async def _load_upstream(self, ref: str) -> UpstreamTokens | None:
        raw = await self.store.get(UPSTREAM_NAMESPACE, ref)
        if raw is None:
            return None
        return UpstreamTokens.from_dict(await self.vault.open_json(raw, context=_context(ref)))

    # -- the provider's token for tools --------------------------------------------------------------

    async def upstream_token(self, access: AccessToken) -> str:
        """The provider's access token for the user of ``access``, valid for at least a minute.

        Raises:
            UpstreamUnavailable: the provider's session is gone (expired without a
                refresh token, refresh refused, grant revoked).
        """
        ref = access.claim("uref")
        if not isinstance(ref, str):
            raise UpstreamUnavailable("this token carries no upstream sign-in")
        tokens = await self._load_upstream(ref)
        if tokens is None:
            raise UpstreamUnavailable("the upstream sign-in is gone")
        if tokens.fresh_for(MIN_VALIDITY, self.clock()):
            return tokens.access_token
        if tokens.refresh_token is None:
            raise UpstreamUnavailable("the upstream token expired and cannot be refreshed")
        pending = self._refreshing.get(ref)
        if pending is None:
            # One refresh per sign-in at a time in this process: the provider may rotate refresh tokens.
            pending = asyncio.ensure_future(self._refresh_upstream(ref, tokens))
            self._refreshing[ref] = pending
            pending.add_done_callback(lambda _: self._refreshing.pop(ref, None))
        try:
            return (await asyncio.shield(pending)).access_token
        except UpstreamError as exc:
            raise UpstreamUnavailable(f"the upstream refresh failed: {exc}") from None

    async def _refresh_upstream(self, ref: str, tokens: UpstreamTokens) -> UpstreamTokens:
        fresh = await self.upstream_client.refresh(tokens)
        await self._save_upstream(ref, fresh)
        return fresh

    # -- the proxy's own grants follow the upstream session ------------------------------------------

    async def check_grant(self, user: User) -> None:
        """Refuse a refresh when the upstream session behind it is gone."""
        ref = user.claims.get("uref")
        if not isinstance(ref, str):
            return
        tokens = await self._load_upstream(ref)
        if tokens is None or (tokens.refresh_token is None and not tokens.fresh_for(0, self.clock())):
            raise InvalidGrant(f"the sign-in at {self.upstream.name} has ended; sign in again")

    async def revoke_grant(self, grant_id: str) -> None:
        """Revoke the grant, and the provider's tokens behind it."""
        raw = await self.store.get(GRANT_NAMESPACE, grant_id)
        await super().revoke_grant(grant_id)
        ref = json.loads(raw).get("uref") if raw is not None else None
        if not isinstance(ref, str):
            return
        tokens = await self._load_upstream(ref)
        await self.store.delete(UPSTREAM_NAMESPACE, ref)
        if tokens is not None:
            await self.upstream_client.revoke(tokens)

    async def aclose(self) -> None:
        """Release the upstream client's resources."""
        await self.upstream_client.aclose()


def _context(ref: str) -> bytes:
    return b"upstream:" + ref.encode()


def _now() -> float:
    import time

    return time.time()
