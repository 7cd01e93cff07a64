"""Listening on a Redis pub/sub channel for :meth:`RedisStore.listen`, through outages.

Redis keeps no messages for a subscriber that is away, so the listener says
``RESUBSCRIBED`` each time Redis confirms its subscription (first, and after every
reconnection): its caller then knows it may have missed some.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from bastion.storage._protocol import RESUBSCRIBED

if TYPE_CHECKING:
    from bastion.storage._redis import RedisStore

__all__ = ["LISTEN_BACKOFF_MAX", "LISTEN_BACKOFF_MIN", "LISTEN_POLL", "subscription"]

logger = logging.getLogger("bastion")

#: Seconds between reconnection attempts of a lost subscription, growing from the first to the second.
LISTEN_BACKOFF_MIN = 0.1
LISTEN_BACKOFF_MAX = 5.0
#: Seconds a subscription waits for a message before looking again (it notices a closed store).
LISTEN_POLL = 1.0


async def subscription(store: RedisStore, name: bytes) -> AsyncIterator[str]:
    """The messages on channel ``name`` until ``store`` closes, and RESUBSCRIBED on each confirmed subscription."""
    backoff = LISTEN_BACKOFF_MIN
    while True:
        client, _ = store._client()
        # Confirmations are read, not ignored: SUBSCRIBE written to a connection Redis has
        # closed (a pooled one, in an outage) is no subscription, and the client's own
        # reconnection subscribes again without telling anyone else.
        pubsub = client.pubsub()
        try:
            await pubsub.subscribe(name)
            while not store._closed:
                message = await pubsub.get_message(timeout=LISTEN_POLL)
                if message is None:
                    continue
                if message.get("type") == "subscribe":
                    backoff = LISTEN_BACKOFF_MIN
                    yield RESUBSCRIBED
                elif message.get("type") == "message":
                    data = message["data"]
                    yield data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)
        except (store._redis.RedisError, OSError) as error:
            logger.warning("lost the Redis subscription to %s (%s); retrying", name.decode(), type(error).__name__)
        finally:
            with contextlib.suppress(Exception):
                # Bounded: on a pool already closed, releasing the connection may never end.
                await asyncio.wait_for(pubsub.aclose(), store._command_timeout)  # type: ignore[no-untyped-call]
        if store._closed:
            return
        await asyncio.sleep(backoff)  # a backoff before reconnecting, not synchronisation
        backoff = min(LISTEN_BACKOFF_MAX, backoff * 2)
