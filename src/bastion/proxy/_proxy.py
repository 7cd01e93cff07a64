"""``OAuthProxy``: bastion's authorization server whose sign-in happens at an upstream identity provider.

Most providers let no MCP client register itself and issue tokens meant for
themselves. The proxy bridges them: MCP clients register with it (CIMD, DCR or
pre-registered) and go through PKCE with it; it uses its one registration at
the provider and one callback URL; it issues its own audience-bound tokens and
never hands out or accepts the provider's. The provider's tokens are kept
sealed in the store (AES-GCM, see ``TokenVault``), refreshed when a tool asks
for them, and revoked at the provider when the grant is revoked.

Faults: every call to the provider has a deadline (``upstream_timeout``). A
sign-in is kept only when it is complete: tokens whose identity cannot be
verified (bad signature, wrong nonce, no subject) are revoked at the provider
and never stored. A refresh of the proxy's own tokens asks whether the
provider's session still stands: gone, expired without a refresh token, or
expired and not renewable at the provider (its refresh token refused or
revoked, or the provider failing) answers ``invalid_grant``, while a provider
that cannot be reached answers ``temporarily_unavailable`` (503) and signs
nobody out. A tool asking for the provider's token when it cannot be had gets
:class:`~bastion.UpstreamUnavailable`, which reaches the client as the tool's
error.

One refresh per sign-in at a time, across every replica and worker process
that shares the store: a provider that rotates refresh tokens takes a second
use of one for theft and revokes the session (RFC 9700 section 4.14.2).
Callers in one process share one refresh; across processes, the refresher
holds a lease in the store (``authserver/_lease.py``), and the others read
the sealed tokens again, with a short backoff, until they change. A holder
that fails or crashes leaves the tokens as they were; its lease runs out
(after twice ``upstream_timeout`` and a second, while a refresh takes at most
``upstream_timeout`` as a whole) and a waiter refreshes instead. A lease still
held when the wait ends counts as a provider that cannot be reached: 503, or
the tool's error.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Mapping, Sequence
from typing import Any

from typing_extensions import Unpack

from bastion._core.errors import BastionError, UpstreamUnavailable
from bastion._core.http import DEFAULT_TIMEOUT, FetchError
from bastion._resource.tokens import AccessToken
from bastion.authserver._errors import InvalidGrant, TemporarilyUnavailable
from bastion.authserver._lease import LeaseTimeout, StoreLease
from bastion.authserver._models import User
from bastion.authserver._server import AuthorizationServer
from bastion.authserver._vault import TokenVault
from bastion.proxy._exchange import exchange_token
from bastion.proxy._login import UpstreamLogin, proxy_user
from bastion.proxy._options import ServerOptions
from bastion.proxy._upstream import Identity, Upstream, UpstreamError, UpstreamTokens
from bastion.proxy._upstream_client import UpstreamClient

__all__ = ["UPSTREAM_NAMESPACE", "OAuthProxy", "UpstreamUnavailable"]

logger = logging.getLogger("bastion")

UPSTREAM_NAMESPACE = "upstream"
#: A tool asking for the provider's token gets one valid for at least this long.
MIN_VALIDITY = 60.0
#: Seconds the refresh lock outlives its two parts (the provider's answer and the save, each
#: given ``upstream_timeout``), so that it ends after its holder, not before.
REFRESH_LOCK_SLACK = 1.0
#: The refresh lease of sign-in ``ref`` is ``REFRESH_LEASE_PREFIX + ref`` (in ``LEASE_NAMESPACE``).
REFRESH_LEASE_PREFIX = "upstream-refresh:"


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
        upstream_timeout: Seconds each request to the provider may take.
        scopes: The scopes MCP clients may ask for (``AuthorizationServer``'s ``scopes``).
        **options: Everything else :class:`~bastion.AuthorizationServer` takes
            (``store``, ``clients``, token lifetimes...; see ``ServerOptions``),
            except ``users`` and ``login``.
    """

    def __init__(
        self,
        upstream: Upstream,
        *,
        base_url: str,
        callback_path: str = "/auth/callback",
        encryption_keys: str | Sequence[str] | None = None,
        upstream_timeout: float = DEFAULT_TIMEOUT,
        scopes: Mapping[str, str] | Sequence[str] | None = None,
        **options: Unpack[ServerOptions],
    ) -> None:
        if "users" in options or "login" in options:
            raise TypeError("an OAuthProxy signs users in at its upstream provider: no users= or login=")
        self.upstream = upstream
        self.upstream_client = UpstreamClient(upstream, timeout=upstream_timeout, clock=options.get("clock") or _now)
        super().__init__(base_url, login=UpstreamLogin(self), scopes=scopes, **options)
        self.callback_path = self.path(callback_path)
        self.callback_url = self.url(callback_path)
        self.vault = TokenVault(self.store, keys=encryption_keys, clock=self.clock)
        self._refreshing: dict[str, asyncio.Future[UpstreamTokens]] = {}

    # -- signing in ------------------------------------------------------------------------------

    async def authenticate(
        self, code: str, code_verifier: str | None, nonce: str | None
    ) -> tuple[Identity, UpstreamTokens]:
        """Redeem the provider's code and read the user; nothing is stored yet.

        Tokens whose identity cannot be read or verified are revoked at the provider.

        Raises:
            UpstreamError: the provider failed, refused, or answered something unusable.
        """
        client = self.upstream_client
        tokens = await client.exchange_code(code, self.callback_url, code_verifier)
        try:
            identity = await client.identity(tokens, nonce if self.upstream.identity == "id_token" else None)
        except (UpstreamError, FetchError, BastionError) as exc:
            await client.revoke(tokens)
            if isinstance(exc, UpstreamError):
                raise
            raise UpstreamError(f"{self.upstream.name}'s identity could not be read") from None
        return identity, tokens

    async def keep(self, identity: Identity, tokens: UpstreamTokens) -> User:
        """Seal the provider's tokens in the store; the :class:`User` that refers to them."""
        ref = secrets.token_urlsafe(24)
        await self._save_upstream(ref, tokens)
        return proxy_user(identity.subject, identity.name, identity.email, dict(identity.claims), ref, identity.roles)

    async def sign_in(self, code: str, code_verifier: str | None, state: dict[str, Any]) -> User:
        """Redeem the provider's code, read the user, keep the provider's tokens sealed."""
        identity, tokens = await self.authenticate(code, code_verifier, state.get("nonce"))
        return await self.keep(identity, tokens)

    async def discard(self, user: User) -> None:
        """Forget (and revoke at the provider) the tokens of a sign-in that is not used after all."""
        ref = user.claims.get("uref")
        if not isinstance(ref, str):
            return
        tokens = await self._load_upstream(ref)
        await self.store.delete(UPSTREAM_NAMESPACE, ref)
        if tokens is not None:
            await self.upstream_client.revoke(tokens)

    def _upstream_ttl(self, tokens: UpstreamTokens) -> float:
        if tokens.refresh_token is not None or tokens.expires_at is None:
            return self.lifetimes.refresh_token
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
        try:
            return (await self._renewed(ref, tokens)).access_token
        except UpstreamError as exc:
            grant_id = access.claim("gid")
            await self._refresh_failed(
                exc,
                access.subject,
                client_id=access.client_id,
                grant_id=grant_id if isinstance(grant_id, str) else None,
            )
            raise UpstreamUnavailable(f"the upstream refresh failed: {exc}") from None

    async def _renewed(self, ref: str, tokens: UpstreamTokens) -> UpstreamTokens:
        """The provider's tokens refreshed; one refresh per sign-in at a time, in every process.

        The provider may rotate refresh tokens and take a second use of one for theft,
        so concurrent callers share one refresh: in this process one future, across the
        processes sharing the store a lease (``_refresh_once``).
        """
        pending = self._refreshing.get(ref)
        if pending is None:
            pending = asyncio.ensure_future(self._refresh_once(ref, tokens))
            self._refreshing[ref] = pending
            pending.add_done_callback(lambda _: self._refreshing.pop(ref, None))
        return await asyncio.shield(pending)

    def _refresh_lease(self, ref: str) -> StoreLease:
        """The lease that one process at a time holds to refresh the tokens of sign-in ``ref``."""
        ttl = 2 * self.upstream_client.timeout + REFRESH_LOCK_SLACK
        return StoreLease(self.store, REFRESH_LEASE_PREFIX + ref, ttl=ttl)

    async def _refresh_once(self, ref: str, tokens: UpstreamTokens) -> UpstreamTokens:
        """Refresh under the sign-in's lease, or take the tokens another process's refresh saved.

        The tokens in the store changed: someone refreshed them. They did not and the
        lease is free: its holder failed or crashed, and this process refreshes.
        """

        async def refreshed_elsewhere() -> UpstreamTokens | None:
            current = await self._load_upstream(ref)
            if current is None:
                raise UpstreamError(f"the sign-in at {self.upstream.name} is gone")
            return None if current == tokens else current

        try:
            return await self._refresh_lease(ref).run(lambda: self._refresh_upstream(ref, tokens), refreshed_elsewhere)
        except LeaseTimeout:
            message = f"{self.upstream.name}'s tokens are being refreshed elsewhere and were not ready in time"
            raise UpstreamError(message, transient=True) from None

    async def _refresh_failed(
        self, exc: UpstreamError, subject: str | None, *, client_id: str | None = None, grant_id: str | None = None
    ) -> None:
        """Report a refresh the provider did not complete: down (``error``) or refusing (``failure``)."""
        await self.audit.emit(
            "upstream.refresh_failed",
            "error" if exc.transient else "failure",
            subject=subject,
            client_id=client_id,
            grant_id=grant_id,
            provider=self.upstream.name,
            reason="the provider could not be reached" if exc.transient else "the provider refused the refresh",
        )

    async def _refresh_upstream(self, ref: str, tokens: UpstreamTokens) -> UpstreamTokens:
        # The provider's deadline bounds the whole refresh, not each of its reads, so the lease outlives it.
        try:
            async with asyncio.timeout(self.upstream_client.timeout):
                fresh = await self.upstream_client.refresh(tokens)
        except TimeoutError:
            message = f"{self.upstream.name}'s token endpoint did not answer in time"
            raise UpstreamError(message, transient=True) from None
        await self._save_upstream(ref, fresh)
        return fresh

    # -- the proxy's own grants follow the upstream session ------------------------------------------

    async def exchange_token(self, access: AccessToken, audience: str | None, scopes: Sequence[str]) -> str:
        """An upstream token for another API (RFC 8693 or Entra's on-behalf-of); see ``token.exchange()``."""
        return await exchange_token(self, access, audience, scopes)

    async def refresh_upstream(self) -> None:
        """Bring the provider's description up to date before a sign-in; a provider read from
        a discovery document (``OIDC``) re-reads it when its cache lifetime is over."""

    def replace_upstream(self, upstream: Upstream) -> None:
        """Use a new description of the provider from now on (its endpoints or keys moved)."""
        if upstream != self.upstream:
            self.upstream = upstream
            self.upstream_client = UpstreamClient(upstream, clock=self.clock, timeout=self.upstream_client.timeout)

    async def check_grant(self, user: User) -> None:
        """Refuse a refresh when the upstream session behind it is gone.

        Gone: no tokens kept (revoked, expired), an expired token without a
        refresh token, or an expired token the provider does not renew (its
        refresh token revoked, the provider failing: the client signs in again).
        """
        ref = user.claims.get("uref")
        if not isinstance(ref, str):
            return
        ended = InvalidGrant(f"the sign-in at {self.upstream.name} has ended; sign in again")
        tokens = await self._load_upstream(ref)
        if tokens is None:
            raise ended
        if tokens.fresh_for(0, self.clock()):
            return
        if tokens.refresh_token is None:
            raise ended
        try:
            await self._renewed(ref, tokens)
        except UpstreamError as exc:
            logger.warning("the upstream session could not be renewed: %s", exc)
            await self._refresh_failed(exc, user.subject)
            if exc.transient:
                # The provider is down, not refusing: the client may retry; the user stays signed in.
                raise TemporarilyUnavailable(f"{self.upstream.name} cannot be reached; try again later") from None
            raise ended from None

    async def revoke_grant(self, grant_id: str, *, reason: str = "revoked") -> None:
        """Revoke the grant, and the provider's tokens behind it."""
        record = await self.grants.get(grant_id)
        await super().revoke_grant(grant_id, reason=reason)
        ref = record.get("uref") if record is not None else None
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
