"""``GrantStore``: the grants (one user's approval for one client) in the store.

A grant's id is carried by its refresh tokens and access tokens, so revoking the
grant (on code replay, refresh token reuse, or withdrawn consent) reaches them
all: its refresh token family is deleted and a revoked marker outlives every
access token issued under it. Beside each grant the store keeps a note of which
clients a user has grants with, for the consents page.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from bastion._core.ids import new_identifier
from bastion.authserver._models import User
from bastion.authserver._settings import TokenLifetimes
from bastion.storage import Store

__all__ = [
    "GRANT_NAMESPACE",
    "REFRESH_NAMESPACE",
    "REVOKED_NAMESPACE",
    "USER_CLIENT_NAMESPACE",
    "GrantStore",
    "grant_index",
]

GRANT_NAMESPACE = "grant"
REVOKED_NAMESPACE = "revoked-grant"
#: The refresh tokens, each indexed by its grant id (the family a revocation deletes).
REFRESH_NAMESPACE = "refresh"
#: Which clients a user has grants with (secondary key: the subject), for the consents page.
USER_CLIENT_NAMESPACE = "user-client"


def grant_index(subject: str, client_id: str) -> str:
    """The secondary key of the grants one user gave one client."""
    return f"{subject}\x00{client_id}"


class GrantStore:
    """The grants of one authorization server, durable on ``store``.

    Args:
        store: Where the grants live.
        lifetimes: A grant lives as long as a refresh token; a revoked marker as long
            as a refresh token and an access token together.
        clock: Seconds since the epoch.
    """

    def __init__(self, store: Store, lifetimes: TokenLifetimes, clock: Callable[[], float]) -> None:
        self.store = store
        self.lifetimes = lifetimes
        self._clock = clock

    @property
    def _slack(self) -> float:
        """How long a grant's record may go without being extended: 1 % of a refresh token's life.

        A record lives this much longer than a refresh token, so it outlives every refresh
        token of its family while a rotation rewrites it at most once per this interval
        instead of at every refresh.
        """
        return self.lifetimes.refresh_token / 100

    async def new(self, user: User, client_id: str, *, ttl: float | None = None) -> str:
        """Record a new grant of ``user`` to ``client_id`` and return its id."""
        grant_id = new_identifier(16)
        ttl = self.lifetimes.refresh_token + self._slack if ttl is None else ttl
        now = int(self._clock())
        fields: dict[str, object] = {"subject": user.subject, "client_id": client_id, "created": now, "extended": now}
        if isinstance(user.claims.get("uref"), str):
            fields["uref"] = user.claims["uref"]  # the proxy's sealed upstream tokens behind this grant
        record = json.dumps(fields)
        await self.store.put(
            GRANT_NAMESPACE, grant_id, record.encode(), ttl, index=grant_index(user.subject, client_id)
        )
        if user.subject != client_id:  # not a client acting for itself (client_credentials)
            await self._note_user_client(user.subject, client_id, ttl)
        return grant_id

    async def get(self, grant_id: str) -> dict[str, Any] | None:
        """The grant's record (``subject``, ``client_id``, ``created``, the proxy's ``uref``), if it lives."""
        raw = await self.store.get(GRANT_NAMESPACE, grant_id)
        return None if raw is None else dict(json.loads(raw))

    async def extend(self, grant_id: str) -> None:
        """Keep a grant's record as long as its refresh tokens live (called on each rotation).

        The record is rewritten at most once per 1 % of a refresh token's life.
        """
        raw = await self.store.get(GRANT_NAMESPACE, grant_id)
        if raw is None:
            return
        record = json.loads(raw)
        now = self._clock()
        if now - float(record.get("extended", 0.0)) < self._slack:
            return  # it still outlives the refresh token just issued
        record["extended"] = int(now)
        ttl = self.lifetimes.refresh_token + self._slack
        await self.store.put(
            GRANT_NAMESPACE,
            grant_id,
            json.dumps(record).encode(),
            ttl,
            index=grant_index(record["subject"], record["client_id"]),
        )
        if record["subject"] != record["client_id"]:
            await self._note_user_client(record["subject"], record["client_id"], ttl)

    async def revoke(self, grant_id: str) -> dict[str, Any] | None:
        """Mark the grant revoked, and delete it and its refresh token family; its record, if it lived."""
        marker_ttl = self.lifetimes.refresh_token + self.lifetimes.access_token
        await self.store.put(REVOKED_NAMESPACE, grant_id, b"1", marker_ttl)
        await self.store.delete_index(REFRESH_NAMESPACE, grant_id)
        raw = await self.store.take(GRANT_NAMESPACE, grant_id)
        return None if raw is None else dict(json.loads(raw))

    async def is_revoked(self, grant_id: str) -> bool:
        """Whether the grant was revoked."""
        return await self.store.get(REVOKED_NAMESPACE, grant_id) is not None

    async def by_user(self, subject: str) -> list[tuple[str, int]]:
        """The clients ``subject`` has live grants with, and since when, sorted."""
        found: list[tuple[str, int]] = []
        for _, raw in await self.store.scan(USER_CLIENT_NAMESPACE, subject):
            record = json.loads(raw)
            if await self.by_client(subject, record["client_id"]):
                found.append((record["client_id"], int(record["since"])))
        return sorted(found)

    async def by_client(self, subject: str, client_id: str) -> list[str]:
        """The ids of the live grants ``subject`` gave ``client_id``."""
        return [grant_id for grant_id, _ in await self.store.scan(GRANT_NAMESPACE, grant_index(subject, client_id))]

    async def records(
        self, subject: str | None = None, client_id: str | None = None
    ) -> list[tuple[str, dict[str, Any]]]:
        """The live grants (id and record), of ``subject`` and/or ``client_id`` when given, oldest first.

        With both, one index lookup; otherwise every grant is read (:meth:`Store.iterate`): for
        administration, not for requests.
        """
        if subject is not None and client_id is not None:
            found = await self.store.scan(GRANT_NAMESPACE, grant_index(subject, client_id))
        else:
            found = [item async for item in self.store.iterate(GRANT_NAMESPACE)]
        records: list[tuple[str, dict[str, Any]]] = []
        for grant_id, raw in found:
            record = dict(json.loads(raw))
            if subject is not None and record.get("subject") != subject:
                continue
            if client_id is not None and record.get("client_id") != client_id:
                continue
            records.append((grant_id, record))
        return sorted(records, key=lambda item: (int(item[1].get("created", 0)), item[0]))

    async def refresh_records(self, grant_id: str) -> list[dict[str, Any]]:
        """The live refresh token records of the grant's family (scopes, resources, state; hashes only)."""
        return [dict(json.loads(raw)) for _, raw in await self.store.scan(REFRESH_NAMESPACE, grant_id)]

    async def forget_user_client(self, subject: str, client_id: str) -> None:
        """Drop the note that ``subject`` has grants with ``client_id`` (after they were revoked)."""
        await self.store.delete(USER_CLIENT_NAMESPACE, grant_index(subject, client_id))

    async def _note_user_client(self, subject: str, client_id: str, ttl: float) -> None:
        key = grant_index(subject, client_id)
        previous = await self.store.get(USER_CLIENT_NAMESPACE, key)
        since = json.loads(previous)["since"] if previous is not None else int(self._clock())
        record = json.dumps({"client_id": client_id, "since": since}).encode()
        await self.store.put(USER_CLIENT_NAMESPACE, key, record, ttl, index=subject)
