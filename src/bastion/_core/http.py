"""Outbound HTTP for verifiers: one client factory, timeouts, size limits, JSON only."""

from __future__ import annotations

import asyncio
import json
import re
import weakref
from typing import Any

import httpx2

from bastion._core.errors import BastionError

__all__ = [
    "DEFAULT_TIMEOUT",
    "MAX_RESPONSE_BYTES",
    "FetchError",
    "LoopLocks",
    "cache_lifetime",
    "fetch_json",
    "http_client",
]

#: Seconds for connecting, reading, writing and waiting for a pooled connection.
DEFAULT_TIMEOUT = 5.0
#: The largest JSON document read from an upstream (a key set, an introspection answer).
MAX_RESPONSE_BYTES = 512 * 1024


class FetchError(BastionError):
    """An upstream answered badly, slowly, or not at all. The message names no secret.

    ``status`` is the HTTP status of a non-2xx answer, ``None`` for any other failure;
    ``transient`` tells a server that is down or overloaded (no answer, a 5xx, 429)
    from one that answered and refused.
    """

    description = "an upstream server could not be used"

    def __init__(self, message: str, *, status: int | None = None, transient: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.transient = transient


def http_client(timeout: float = DEFAULT_TIMEOUT) -> httpx2.AsyncClient:
    """A client with bounded timeouts that never follows redirects."""
    return httpx2.AsyncClient(timeout=httpx2.Timeout(timeout), follow_redirects=False)


async def fetch_json(
    client: httpx2.AsyncClient,
    method: str,
    url: str,
    *,
    max_bytes: int = MAX_RESPONSE_BYTES,
    **kwargs: Any,
) -> tuple[httpx2.Response, Any]:
    """Send one request and parse its JSON answer, reading at most ``max_bytes``.

    Raises:
        FetchError: on a network error or timeout, a non-2xx status, an oversized
            body, or a body that is not JSON.
    """
    try:
        async with client.stream(method, url, **kwargs) as response:
            if not 200 <= response.status_code < 300:
                status = response.status_code
                raise FetchError(
                    f"{method} {_safe(url)} answered HTTP {status}",
                    status=status,
                    transient=status >= 500 or status == 429,
                )
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > max_bytes:
                    raise FetchError(f"{method} {_safe(url)} answered more than {max_bytes} bytes")
                chunks.append(chunk)
    except httpx2.HTTPError as exc:
        raise FetchError(f"{method} {_safe(url)} failed: {exc.__class__.__name__}", transient=True) from None
    try:
        return response, json.loads(b"".join(chunks))
    except (ValueError, RecursionError):
        raise FetchError(f"{method} {_safe(url)} answered something that is not JSON") from None


def _safe(url: str) -> str:
    """The URL without query or credentials, for messages."""
    return httpx2.URL(url).copy_with(query=None, userinfo=b"").__str__()


_MAX_AGE = re.compile(r"(?:^|[,\s])max-age\s*=\s*\"?(\d+)\"?", re.IGNORECASE)
_NO_CACHE = re.compile(r"(?:^|[,\s])no-(?:cache|store)(?:$|[,\s=])", re.IGNORECASE)


def cache_lifetime(cache_control: str | None, *, default: float, minimum: float, maximum: float) -> float:
    """Seconds to keep a fetched document, from its ``Cache-Control`` (RFC 9111 section 5.2.2), bounded.

    ``no-cache``/``no-store``: the minimum; ``max-age``: its value; otherwise the default.
    """
    if cache_control is None:
        ttl = default
    elif _NO_CACHE.search(cache_control):
        ttl = minimum
    elif match := _MAX_AGE.search(cache_control):
        ttl = float(match.group(1)[:12])
    else:
        ttl = default
    return min(max(ttl, minimum), maximum)


class LoopLocks:
    """One ``asyncio.Lock`` per event loop, for objects shared process-wide (an asyncio lock is not)."""

    def __init__(self) -> None:
        self._locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = weakref.WeakKeyDictionary()

    def lock(self) -> asyncio.Lock:
        """The lock of the running event loop."""
        loop = asyncio.get_running_loop()
        lock = self._locks.get(loop)
        if lock is None:
            lock = self._locks[loop] = asyncio.Lock()
        return lock
