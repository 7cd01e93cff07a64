"""Logging a condition that recurs on every request (an outage) once per interval, with a count.

When the store or an authorization server's keys cannot be reached, every request
meets the same failure; one line per request buries the log (and fills a disk).
:class:`ThrottledLog` logs the first occurrence of a message at once, counts the
repeats, and logs the message again once the interval has passed, saying how many
occurrences it stood for.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

__all__ = ["ThrottledLog"]

#: The most messages whose repeats are counted at once; beyond, the oldest is forgotten.
MAX_MESSAGES = 256


class ThrottledLog:
    """At most one line per message and ``interval``, carrying the count of the repeats.

    ::

        outages = ThrottledLog(logging.getLogger("bastion"))
        outages.warning(f"the store failed: {exc}")   # logged
        outages.warning(f"the store failed: {exc}")   # counted
        # ... after the interval:
        outages.warning(f"the store failed: {exc}")   # "the store failed: ... (1 more in the last 60 s)"

    Args:
        logger: Where the lines go.
        interval: The least seconds between two lines of the same message.
        clock: Seconds (any origin); injectable for tests.
    """

    def __init__(
        self, logger: logging.Logger, interval: float = 60.0, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.logger = logger
        self.interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        # message -> (when it was last logged, repeats since)
        self._seen: dict[str, tuple[float, int]] = {}

    def warning(self, message: str) -> bool:
        """Log ``message`` as a warning unless it was logged within the interval; whether it was.

        ``message`` is logged as is (no ``%`` formatting) and is the key its repeats are counted under.
        """
        now = self._clock()
        with self._lock:
            seen = self._seen.get(message)
            if seen is not None and now < seen[0] + self.interval:
                self._seen[message] = (seen[0], seen[1] + 1)
                return False
            self._seen.pop(message, None)
            if len(self._seen) >= MAX_MESSAGES:
                self._seen.pop(next(iter(self._seen)))
            self._seen[message] = (now, 0)
        # stacklevel: the record names the caller, not this module.
        if seen is not None and seen[1]:
            elapsed = round(now - seen[0])
            self.logger.warning("%s (%d more in the last %d s)", message, seen[1], elapsed, stacklevel=2)
        else:
            self.logger.warning("%s", message, stacklevel=2)
        return True
