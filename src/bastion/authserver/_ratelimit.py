"""A fixed-window rate limiter kept in the store, so that it holds across worker processes.

Each ``(name, key, window)`` has a counter record; the first hit of a window
creates it with :meth:`Store.add`, later hits raise it with :meth:`Store.swap`
(compare-and-set), so concurrent hits from several processes are all counted.
The records expire by themselves a window after theirs ends.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from bastion._core.errors import ConfigurationError
from bastion.storage import Store

__all__ = ["RATE_NAMESPACE", "RateLimiter"]

RATE_NAMESPACE = "rate"

#: How many times a hit retries a lost compare-and-set before counting itself refused.
MAX_ATTEMPTS = 32


class RateLimiter:
    """At most ``limit`` hits per ``key`` in each window of ``window`` seconds.

    Args:
        store: Where the counters live.
        name: What is limited (``"register"``); keeps limiters apart in one store.
        limit: Hits allowed per key and window; ``0`` refuses every hit.
        window: The window's length in seconds.
        clock: Seconds since the epoch; injectable for tests.
    """

    def __init__(
        self, store: Store, name: str, limit: int, window: float = 60.0, clock: Callable[[], float] = time.time
    ) -> None:
        if limit < 0 or not window > 0:
            raise ConfigurationError("a rate limit needs a non-negative limit and a positive window")
        self.store = store
        self.name = name
        self.limit = limit
        self.window = float(window)
        self.clock = clock

    def _record_key(self, key: str) -> str:
        return f"{self.name}\x00{key}\x00{math.floor(self.clock() / self.window)}"

    async def hit(self, key: str) -> bool:
        """Count one hit for ``key``; ``True`` when it is within the limit."""
        if self.limit == 0:
            return False
        record = self._record_key(key)
        ttl = 2 * self.window
        for _ in range(MAX_ATTEMPTS):
            if await self.store.add(RATE_NAMESPACE, record, b"1", ttl):
                return True
            current = await self.store.get(RATE_NAMESPACE, record)
            if current is None:
                continue  # expired in between: start the count again
            count = int(current)
            if count >= self.limit:
                return False
            if await self.store.swap(RATE_NAMESPACE, record, current, str(count + 1).encode(), ttl):
                return True
        return False

    def retry_after(self) -> int:
        """Whole seconds until the current window ends (at least 1), for ``Retry-After``."""
        return max(1, math.ceil(self.window - self.clock() % self.window))
