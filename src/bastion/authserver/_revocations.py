"""Revocations told to every replica at once, so none keeps accepting a revoked grant's tokens.

Each process caches the access tokens it verified (the hot path does no I/O), and
the grant is checked when a token is first seen. A grant revoked on one replica
is refused there at once (its caches are cleared), but the others would accept
the cached tokens until their cache entries end. So the revoking replica also
publishes the grant id through the store (:meth:`Store.publish`: Redis pub/sub, or
a table of the SQLite file that its other workers read four times a second), and
every process listening clears its caches when the message arrives. When the
subscription was lost and comes back, messages may have been missed, so the caches
are cleared then too.

A store that carries no messages (``Store.listen`` gives ``None``) leaves the bound
on the cache's lifetime (``CACHE_SECONDS``) as the guarantee.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import AsyncIterator, Callable

from bastion.storage import Store, StoreError
from bastion.storage._protocol import RESUBSCRIBED

__all__ = ["CHANNEL", "RevocationFeed"]

logger = logging.getLogger("bastion")

#: The store channel revocations are published on.
CHANNEL = "revocations"

#: Seconds the first check waits for the subscription before going ahead without it.
SUBSCRIBE_WAIT = 2.0


class RevocationFeed:
    """Publishes this process's revocations and applies every process's.

    Args:
        store: The shared store.
        forget: Clears this process's verified-token caches; called for each revocation
            and whenever messages may have been missed.
    """

    def __init__(self, store: Store, forget: Callable[[], None]) -> None:
        self.store = store
        self.forget = forget
        self._listening: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Listening]
        self._listening = weakref.WeakKeyDictionary()

    async def announce(self, grant_id: str) -> None:
        """Tell the other replicas ``grant_id`` was revoked; an outage is logged, not raised.

        The revocation itself is in the store already: a replica that misses the message
        still refuses the grant's tokens once its cache entries end.
        """
        try:
            await self.store.publish(CHANNEL, grant_id)
        except StoreError as exc:
            logger.warning("could not tell the other replicas of a revocation: %s", exc)

    async def watch(self) -> None:
        """Listen on the running event loop, unless already listening there (cheap to call often).

        The first call waits (at most ``SUBSCRIBE_WAIT`` seconds) until the subscription is
        confirmed, so that no token is cached before a revocation could be heard. A token
        cached without it (the store down) makes the confirmation, when it comes, clear the
        caches; so does every later one, after a reconnection.
        """
        loop = asyncio.get_running_loop()
        listening = self._listening.get(loop)
        if listening is None or listening.task.done():
            messages = self.store.listen(CHANNEL)
            if messages is None:
                return
            listening = _Listening()
            listening.task = loop.create_task(self._apply(messages, listening), name="bastion revocations")
            self._listening[loop] = listening
        if not listening.subscribed.is_set() and not listening.unheard:
            try:
                await asyncio.wait_for(listening.subscribed.wait(), SUBSCRIBE_WAIT)
            except TimeoutError:
                listening.unheard = True

    async def _apply(self, messages: AsyncIterator[str], listening: _Listening) -> None:
        try:
            async for message in messages:
                if message == RESUBSCRIBED and not listening.subscribed.is_set():
                    listening.subscribed.set()
                    if not listening.unheard:
                        continue  # nothing was cached before this first subscription
                self.forget()
        except StoreError:
            return  # the store was closed

    async def aclose(self) -> None:
        """Stop listening on the running event loop."""
        listening = self._listening.pop(asyncio.get_running_loop(), None)
        if listening is not None:
            listening.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listening.task


class _Listening:
    """The subscription of one event loop."""

    task: asyncio.Task[None]

    def __init__(self) -> None:
        self.subscribed = asyncio.Event()
        #: A check went ahead before the subscription was confirmed.
        self.unheard = False
