"""The one fake clock of the tests: it moves only when a test moves it."""

from __future__ import annotations

import time

__all__ = ["FakeClock"]


class FakeClock:
    """Seconds since the epoch, frozen until moved (``clock.advance(60)`` or ``clock.now += 60``).

    Give it as ``clock=``. It starts at ``now``, or at the real time by default (for tokens
    that are also checked against the real time, such as the SDK client's).
    """

    def __init__(self, now: float | None = None) -> None:
        self.now = time.time() if now is None else now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock forward."""
        self.now += seconds
