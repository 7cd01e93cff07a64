"""``StoreLease``: a lock with an expiry in the store, held by one process at a time of all that share it.

Several replicas of a server (or worker processes on one SQLite file) share one
store, and some work must not run twice at once among them: the proxy's refresh
of a provider's tokens, for one, which a provider that rotates refresh tokens
takes for theft when it sees the same refresh token twice (RFC 9700 section
4.14.2) and answers by revoking the user's session.

The lease uses the :class:`~bastion.storage.Store` contract and nothing else, so it
holds on every backend (memory, SQLite, Redis):

- Acquiring is :meth:`~bastion.storage.Store.add` with a ttl: of concurrent callers
  in any number of processes, one inserts the record. The ttl, on the store's
  clock, ends the lease of a holder that crashed or hangs.
- The record's value is a random token of that one acquisition. Releasing is
  ``swap(token, b"", ttl=0)``: one compare-and-set that leaves the record expired
  at once, and only while it still holds this token. A holder that outlived its
  lease, which another process then took, cannot end the other's: no
  read-then-delete race, and no delete at all. The token tells holders apart and
  grants nothing else, so the store's plain comparison is fine (it is no secret
  worth a constant-time compare).

:meth:`StoreLease.run` is the whole protocol: hold the lease and work, or wait for
the holder's result (read back from the store by the caller's ``finished``),
polling with a growing backoff; when a lease ends without a result (its holder
failed or crashed), one waiter takes it and does the work itself. Past the
deadline, :class:`LeaseTimeout`.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import TypeVar

from bastion._core.errors import BastionError, ConfigurationError
from bastion.storage import Store, StoreError

__all__ = ["LEASE_NAMESPACE", "LeaseTimeout", "StoreLease"]

logger = logging.getLogger("bastion")

LEASE_NAMESPACE = "lease"

#: Seconds between a waiter's reads: the first, and the most the backoff grows to.
FIRST_DELAY = 0.05
MAX_DELAY = 0.5

_T = TypeVar("_T")


class LeaseTimeout(BastionError):
    """Another process held the lease past the deadline and left no result."""

    description = "the work is in progress elsewhere and did not finish in time"


class StoreLease:
    """A lease named ``key`` in ``store``, lasting at most ``ttl`` seconds once acquired.

    One object is one caller's handle: it remembers the token of its own
    acquisition, so use it from one task at a time.
    """

    def __init__(self, store: Store, key: str, *, ttl: float, namespace: str = LEASE_NAMESPACE) -> None:
        if not ttl > 0:
            raise ConfigurationError("a lease needs a positive ttl")
        self.store = store
        self.key = key
        self.ttl = float(ttl)
        self.namespace = namespace
        self._token: bytes | None = None

    async def acquire(self) -> bool:
        """Take the lease if nobody holds it; ``True`` when taken."""
        token = secrets.token_bytes(16)
        if not await self.store.add(self.namespace, self.key, token, self.ttl):
            return False
        self._token = token
        return True

    async def release(self) -> bool:
        """End the lease if this handle still holds it; ``True`` when it did.

        A lease past its ttl may be someone else's by now: it is left alone.
        """
        token, self._token = self._token, None
        if token is None:
            return False
        # ttl 0: the record expires at once, as if deleted, and only if it still holds our token.
        return await self.store.swap(self.namespace, self.key, token, b"", ttl=0)

    async def run(
        self,
        work: Callable[[], Awaitable[_T]],
        finished: Callable[[], Awaitable[_T | None]],
        *,
        wait: float | None = None,
    ) -> _T:
        """``work()`` under the lease, or the result of the process that holds it.

        Args:
            work: Done while holding the lease; it leaves its result where ``finished`` reads it.
            finished: Reads another holder's result (``None``: none yet). Asked after each
                wait, and once more right after acquiring, since a holder may have finished
                between the caller's own reading and its acquiring.
            wait: Seconds to wait for another holder (default: ``ttl`` and one more read,
                as long as a lease lasts).

        Raises:
            LeaseTimeout: the lease stayed taken until the deadline and no result came.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self.ttl + MAX_DELAY if wait is None else wait)
        delay = FIRST_DELAY
        while True:
            if await self.acquire():
                try:
                    found = await finished()
                    return found if found is not None else await work()
                finally:
                    await self._release_quietly()
            left = deadline - loop.time()
            if left <= 0:
                raise LeaseTimeout("another process held the lease past the deadline")
            await asyncio.sleep(min(delay, left))
            delay = min(delay * 2, MAX_DELAY)
            found = await finished()
            if found is not None:
                return found

    async def _release_quietly(self) -> None:
        """Release; a store that fails now only lets the lease run out its ttl."""
        try:
            await self.release()
        except StoreError as exc:
            logger.warning("a lease could not be released and ends with its ttl: %s", exc)
