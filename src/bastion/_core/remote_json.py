"""A JSON document published at a URL, fetched lazily and kept fresh: the one cache behind key sets and metadata.

:class:`RemoteJSON` keeps one document, parsed by a hook into whatever its owner
serves from (a key index, a validated dict). It refetches once the lifetime from
``Cache-Control`` (RFC 9111 section 5.2.2, bounded) ends, or when its owner asks
(an unknown ``kid``); never more often than ``refetch_interval``; one fetch at a
time per event loop, which every concurrent caller waits for and shares (single
flight); and while the URL fails it keeps serving the last good copy, for at most
``stale_if_error`` seconds past its lifetime. Reading a fresh copy is two
attribute loads and no I/O, so owners put it on their hot paths.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from bastion._core import telemetry
from bastion._core.errors import ConfigurationError
from bastion._core.http import DEFAULT_TIMEOUT, MAX_RESPONSE_BYTES, LoopLocks, cache_lifetime, fetch_json, http_client

__all__ = ["Fetch", "RemoteJSON", "http_fetch", "shown_url"]

logger = logging.getLogger("bastion")

T = TypeVar("T")

#: Fetches a URL: its JSON value and its ``Cache-Control`` header (``None`` without one).
#: Any exception is a failed fetch; its message must name no secret.
Fetch = Callable[[str], Awaitable[tuple[Any, str | None]]]
#: Told of a failed fetch: the URL for messages, the reason, whether a last good copy is still served.
FailureHook = Callable[[str, str, bool], None]


def http_fetch(
    *, timeout: float = DEFAULT_TIMEOUT, max_bytes: int = MAX_RESPONSE_BYTES, accept: str = "application/json"
) -> Fetch:
    """A :data:`Fetch` through :func:`~bastion._core.http.fetch_json`: bounded, no redirects, JSON only."""

    async def fetch(url: str) -> tuple[Any, str | None]:
        async with http_client(timeout) as client:
            response, document = await fetch_json(client, "GET", url, max_bytes=max_bytes, headers={"Accept": accept})
        return document, response.headers.get("cache-control")

    return fetch


def shown_url(url: str) -> str:
    """The URL for messages: without credentials, query or fragment, which could hold a secret."""
    scheme, _, rest = url.partition("://")
    host = rest.split("/", 1)[0].rsplit("@", 1)[-1]
    path = rest.partition("/")[2].partition("?")[0].partition("#")[0]
    return f"{scheme}://{host}/{path}"


def _log_failure(shown: str, reason: str, serving: bool) -> None:
    state = "serving the last good copy" if serving else "no good copy yet"
    logger.warning("fetching %s failed: %s; %s", shown, reason, state)


class RemoteJSON(Generic[T]):
    """The document at ``url``, parsed by ``parse``, fetched lazily and kept fresh.

    Args:
        url: Where the document is published.
        parse: Turns the fetched JSON value into what is served; raises (any
            exception, its message the reason) to refuse the document, which is
            then a failed fetch.
        fetch: How to fetch (default: :func:`http_fetch` with ``timeout`` and ``max_bytes``).
        label: What the document is, for the configuration error message and the metrics.
        clock: Seconds since the epoch; injectable for tests.
        min_ttl, max_ttl: Bounds for the lifetime taken from ``Cache-Control``.
        default_ttl: The lifetime when the response sets none.
        refetch_interval: The least time between two fetches, whatever triggers them.
        timeout: Seconds for a whole fetch, parsing excluded; ``None``: the fetch bounds itself.
        max_bytes: The largest document read by the default fetch.
        stale_if_error: Seconds past its lifetime the last good copy is served while
            fetches fail; 0 drops it as soon as a fetch of an expired copy fails.
        on_failure: Told of every failed fetch (default: a warning naming the URL without query).

    Raises:
        ConfigurationError: the numbers are not finite, non-negative and ordered.
    """

    def __init__(
        self,
        url: str,
        *,
        parse: Callable[[Any], T],
        fetch: Fetch | None = None,
        label: str = "document",
        clock: Callable[[], float] = time.time,
        min_ttl: float = 60.0,
        max_ttl: float = 86400.0,
        default_ttl: float = 300.0,
        refetch_interval: float = 30.0,
        timeout: float | None = DEFAULT_TIMEOUT,
        max_bytes: int = MAX_RESPONSE_BYTES,
        stale_if_error: float = math.inf,
        on_failure: FailureHook = _log_failure,
    ) -> None:
        numbers = (min_ttl, max_ttl, default_ttl, refetch_interval, 0.0 if timeout is None else timeout)
        if not all(math.isfinite(n) and n >= 0 for n in numbers) or min_ttl > max_ttl or timeout == 0:
            raise ConfigurationError(
                f"{label} cache lifetimes, interval and timeout must be finite, non-negative, ordered"
            )
        if not (stale_if_error >= 0) or max_bytes <= 0:
            raise ConfigurationError(f"{label} cache stale_if_error must be non-negative, max_bytes positive")
        self.url = url
        self.shown = shown_url(url)
        self.label = label
        self.min_ttl = min_ttl
        self.max_ttl = max_ttl
        self.default_ttl = default_ttl
        self.refetch_interval = refetch_interval
        self.timeout = timeout
        self.stale_if_error = stale_if_error
        #: The parsed last good copy, ``None`` before the first good fetch (or once too stale).
        self.value: T | None = None
        #: When :attr:`value` stops being fresh (seconds since the epoch).
        self.expires = -math.inf
        #: Why the last fetch failed, for error messages.
        self.failure = "not fetched yet"
        self._parse = parse
        self._fetch_document = (
            http_fetch(timeout=timeout or DEFAULT_TIMEOUT, max_bytes=max_bytes) if fetch is None else fetch
        )
        self._on_failure = on_failure
        self._clock = clock
        self._last_attempt = -math.inf
        self._generation = 0
        self._locks = LoopLocks()

    async def get(self) -> T | None:
        """The document: as cached while fresh, refetched when stale, the last good one on failure."""
        if self._clock() >= self.expires:
            await self.refresh()
        return self.value

    async def refresh(self) -> bool:
        """Fetch now, unless a fetch finished while we waited for the lock or within ``refetch_interval``.

        Returns whether a fetch completed since the call began (ours or another caller's):
        callers queue on the lock, and all but the first find the generation moved on
        and share its result (single flight), even when they arrive as it completes.
        """
        generation = self._generation
        async with self._locks.lock():
            if self._generation != generation:
                return True
            if self._clock() < self._last_attempt + self.refetch_interval:
                self._drop_if_too_stale()
                return False
            await self._fetch()
            return True

    async def _fetch(self) -> None:
        observer = telemetry.active
        if observer is None:
            await self._attempt()
        else:
            await observer.fetch(self.label, self.shown, self._attempt)
        self._last_attempt = self._clock()
        self._generation += 1

    async def _attempt(self) -> bool:
        """Fetch and parse once; whether a good copy was had (a failure keeps the last one)."""
        try:
            if self.timeout is None:
                document, cache_control = await self._fetch_document(self.url)
            else:
                async with asyncio.timeout(self.timeout):
                    document, cache_control = await self._fetch_document(self.url)
            value = self._parse(document)
        except Exception as exc:  # any failure keeps the last good copy (availability)
            self.failure = "timed out" if isinstance(exc, TimeoutError) else str(exc) or type(exc).__name__
            self._drop_if_too_stale()
            self._on_failure(self.shown, self.failure, self.value is not None)
            return False
        now = self._clock()
        self.value = value
        self.expires = now + cache_lifetime(
            cache_control, default=self.default_ttl, minimum=self.min_ttl, maximum=self.max_ttl
        )
        return True

    def _drop_if_too_stale(self) -> None:
        if self.value is not None and self._clock() >= self.expires + self.stale_if_error:
            self.value = None
