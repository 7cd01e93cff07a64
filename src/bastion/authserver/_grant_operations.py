"""The grant operations of :class:`~bastion.authserver.AuthorizationServer`: revoke, record, consent.

A grant is one user's approval for one client; its refresh tokens and access tokens
carry its id, so revoking it (a code replay, a refresh token reuse, a withdrawn
consent, an administrator) reaches them all, in this process at once and in the
others through the store (``RevocationFeed``). Each revocation is an audit event.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, cast

from bastion.authserver._browser import consent as consent_step
from bastion.authserver._browser.consent import RememberedConsent
from bastion.authserver._codes import CodeGrant
from bastion.authserver._models import User

if TYPE_CHECKING:
    from bastion._core.audit import Audit
    from bastion.authserver._access import AuthServerVerifier
    from bastion.authserver._grant_records import GrantStore
    from bastion.authserver._revocations import RevocationFeed
    from bastion.authserver._server import AuthorizationServer

__all__ = ["GrantOperations"]


class GrantOperations:
    """What :class:`~bastion.authserver.AuthorizationServer` does with grants (a base class of it)."""

    grants: GrantStore
    revocations: RevocationFeed
    _verifiers: weakref.WeakSet[AuthServerVerifier]

    if TYPE_CHECKING:

        @property
        def audit(self) -> Audit: ...

    def _server(self) -> AuthorizationServer:
        return cast("AuthorizationServer", self)

    async def revoke_grant(self, grant_id: str, *, reason: str = "revoked") -> None:
        """Revoke a grant: its refresh tokens go, and its access tokens are refused from now on.

        ``reason``, a short fixed phrase, is the audit event's (``grant.revoked``).
        """
        record = await self.grants.revoke(grant_id)
        self.on_revocation()
        await self.revocations.announce(grant_id)
        subject = record.get("subject") if record is not None else None
        client_id = record.get("client_id") if record is not None else None
        await self.audit.emit(
            "grant.revoked", "success", subject=subject, client_id=client_id, grant_id=grant_id, reason=reason
        )

    async def _code_replayed(self, grant: CodeGrant) -> None:
        """A used authorization code was presented again: an attack or a bug; its grant goes (RFC 6749 4.1.2)."""
        await self.audit.emit(
            "code.replayed",
            "refused",
            subject=grant.user.subject,
            client_id=grant.client_id,
            grant_id=grant.grant_id,
            reason="a used code was presented again",
        )
        await self.revoke_grant(grant.grant_id, reason="authorization code replay")

    async def is_revoked(self, grant_id: str) -> bool:
        """Whether the grant was revoked."""
        return await self.grants.is_revoked(grant_id)

    def on_revocation(self) -> None:
        """Forget verified tokens in this process, so a revoked one is refused at once.

        Other replicas do the same when the revocation reaches them (``RevocationFeed``).
        """
        for verifier in list(getattr(self, "_verifiers", ())):
            verifier.cache.clear()

    async def new_grant(self, user: User, client_id: str, *, ttl: float | None = None) -> str:
        """Record a new grant (one user's approval for one client) and return its id.

        Refresh tokens and access tokens carry the grant id, so revoking the grant
        (on code replay, refresh token reuse, or withdrawn consent) reaches them all.
        """
        return await self.grants.new(user, client_id, ttl=ttl)

    async def withdraw_consent(self, subject: str, client_id: str) -> bool:
        """Forget the consent ``subject`` gave ``client_id`` and revoke its grants.

        The next authorization of that client asks the user again. ``True`` when
        there was a consent or a grant to withdraw.
        """
        return await consent_step.withdraw_consent(self._server(), subject, client_id)

    async def consents(self, subject: str) -> list[RememberedConsent]:
        """The consents ``subject`` has given and not withdrawn (client, scopes, resources, when)."""
        return await consent_step.consents(self._server(), subject)

    async def check_grant(self, user: User) -> None:
        """Called before a refresh is granted; a proxy refuses when the upstream session is gone."""

    async def extend_grant(self, grant_id: str) -> None:
        """Keep a grant's record as long as its refresh tokens live (called on each rotation)."""
        await self.grants.extend(grant_id)

    async def signed_in_clients(self, subject: str) -> list[tuple[str, int]]:
        """The clients ``subject`` has live grants with (remembered consent or not), and since when."""
        return await self.grants.by_user(subject)

    async def revoke_user_client(self, subject: str, client_id: str) -> int:
        """Revoke every grant ``subject`` gave ``client_id``; how many there were."""
        grant_ids = await self.grants.by_client(subject, client_id)
        for grant_id in grant_ids:
            await self.revoke_grant(grant_id, reason="access withdrawn")
        await self.grants.forget_user_client(subject, client_id)
        return len(grant_ids)
