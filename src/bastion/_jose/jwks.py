"""A cache of a remote JWK Set (RFC 7517 section 5): the keys published at one ``jwks_uri``.

:class:`JWKSCache` keeps the keys of one ``jwks_uri``. It refetches when the
``Cache-Control`` lifetime ends, on an unknown ``kid`` (at most once per
``refetch_interval``), coalesces concurrent misses into one request, and keeps
serving the last good set while the endpoint fails. :func:`shared_cache` hands
out one cache per URI and settings, so verifiers in a process share it.
Importing and checking the keys themselves is :mod:`bastion._jose.keys`' job.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import weakref
from collections.abc import Callable, Iterable
from typing import Any

from joserfc.jwa import JWSAlgModel
from joserfc.jwk import Key

from bastion._core.errors import ConfigurationError, KeysUnavailable
from bastion._core.http import DEFAULT_TIMEOUT, MAX_RESPONSE_BYTES, LoopLocks, cache_lifetime, fetch_json, http_client
from bastion._core.net import is_loopback_url
from bastion._jose.keys import fits, parse_key_set

__all__ = ["JWKSCache", "shared_cache"]

logger = logging.getLogger("bastion")


Clock = Callable[[], float]


class JWKSCache:
    """The signing keys published at one ``jwks_uri``, fetched lazily and kept fresh.

    Args:
        uri: The JWK Set URL (``https``; plain ``http`` is accepted with a warning
            unless the host is a loopback address).
        clock: Seconds since the epoch; injectable for tests.
        min_ttl, max_ttl: Bounds for the lifetime taken from ``Cache-Control: max-age``.
        default_ttl: The lifetime when the response sets none.
        refetch_interval: The least time between two fetches, whatever triggers
            them (an unknown ``kid``, an expired or failing set).
        timeout: Seconds for a whole fetch.
        max_bytes: The largest key set document read.
    """

    def __init__(
        self,
        uri: str,
        *,
        clock: Clock = time.time,
        min_ttl: float = 60.0,
        max_ttl: float = 86400.0,
        default_ttl: float = 300.0,
        refetch_interval: float = 30.0,
        timeout: float = DEFAULT_TIMEOUT,
        max_bytes: int = MAX_RESPONSE_BYTES,
    ) -> None:
        scheme, _, rest = uri.partition("://")
        host = rest.split("/", 1)[0].rsplit("@", 1)[-1]
        if scheme not in ("https", "http") or not host:
            raise ConfigurationError(f"jwks_uri must be an https URL, not {uri!r}")
        # For messages: without credentials or query, which could hold a secret.
        self._shown = f"{scheme}://{host}/{rest.partition('/')[2].partition('?')[0].partition('#')[0]}"
        if scheme == "http" and not is_loopback_url(uri):
            logger.warning("jwks_uri %s is plain http: anyone on the path can substitute keys", self._shown)
        numbers = (min_ttl, max_ttl, default_ttl, refetch_interval, timeout)
        if not all(math.isfinite(n) and n >= 0 for n in numbers) or min_ttl > max_ttl or timeout == 0:
            raise ConfigurationError("JWKS cache lifetimes, interval and timeout must be finite, non-negative, ordered")
        self.uri = uri
        self.min_ttl = min_ttl
        self.max_ttl = max_ttl
        self.default_ttl = default_ttl
        self.refetch_interval = refetch_interval
        self.timeout = timeout
        self.max_bytes = max_bytes
        self._clock = clock
        self._keys: list[Key] = []
        self._by_kid: dict[str, list[Key]] = {}
        self._selection: dict[tuple[str | None, str], list[Key]] = {}
        self._expires = -math.inf
        self._last_attempt = -math.inf
        self._failure = "not fetched yet"
        self._generation = 0
        self._loop_locks = LoopLocks()

    @property
    def keys(self) -> list[Key]:
        """The keys of the last good key set (empty before the first successful fetch)."""
        return list(self._keys)

    async def keys_for(self, kid: str | None, alg: JWSAlgModel) -> list[Key]:
        """The keys that may have signed a token with this ``kid`` and ``alg``; possibly none.

        A token without ``kid`` gets every key that fits ``alg``.

        Raises:
            KeysUnavailable: no key set could be had at all.
        """
        if self._clock() >= self._expires:
            await self._refresh()
        selected = self._selection.get((kid, alg.name))
        if selected is None:
            selected = self._select(kid, alg)
            if not selected and await self._refresh():
                # A kid we have not seen may be a key published since our last fetch (key rotation).
                selected = self._select(kid, alg)
        if not self._keys:
            raise KeysUnavailable(f"no key set could be fetched from {self._shown}: {self._failure}")
        return selected

    async def refresh(self) -> None:
        """Fetch the key set now, unless a fetch happened within ``refetch_interval``."""
        await self._refresh()

    def _select(self, kid: str | None, alg: JWSAlgModel) -> list[Key]:
        candidates = self._keys if kid is None else self._by_kid.get(kid, ())
        selected = [key for key in candidates if fits(key, alg)]
        if selected:
            self._selection[(kid, alg.name)] = selected
        return selected

    def _lock(self) -> asyncio.Lock:
        return self._loop_locks.lock()

    async def _refresh(self) -> bool:
        """Fetch unless a fetch finished while we waited or within the interval.

        Returns whether a fetch completed since the call began (ours or another caller's):
        concurrent callers queue on the lock, and all but the first find the
        generation moved on and reuse its result (single flight).
        """
        generation = self._generation
        async with self._lock():
            if self._generation != generation:
                return True
            if self._clock() < self._last_attempt + self.refetch_interval:
                return False
            await self._fetch()
            return True

    async def _fetch(self) -> None:
        try:
            async with asyncio.timeout(self.timeout), http_client(self.timeout) as client:
                response, document = await fetch_json(
                    client,
                    "GET",
                    self.uri,
                    max_bytes=self.max_bytes,
                    headers={"Accept": "application/jwk-set+json, application/json"},
                )
            keys = parse_key_set(document)
        except Exception as exc:  # any failure keeps the last good set (RFC 7517 gives no guidance; availability)
            reason = "timed out" if isinstance(exc, TimeoutError) else str(exc) or type(exc).__name__
            state = "serving the last good key set" if self._keys else "no key set yet"
            self._failure = reason
            logger.warning("fetching JWKS %s failed: %s; %s", self._shown, reason, state)
        else:
            now = self._clock()
            self._install(keys)
            self._expires = now + self._ttl(response.headers.get("cache-control"))
        self._last_attempt = self._clock()
        self._generation += 1

    def _install(self, keys: Iterable[Key]) -> None:
        self._keys = list(keys)
        by_kid: dict[str, list[Key]] = {}
        for key in self._keys:
            if key.kid is not None:
                by_kid.setdefault(key.kid, []).append(key)
        self._by_kid = by_kid
        self._selection = {}

    def _ttl(self, cache_control: str | None) -> float:
        return cache_lifetime(cache_control, default=self.default_ttl, minimum=self.min_ttl, maximum=self.max_ttl)


_shared: weakref.WeakValueDictionary[tuple[Any, ...], JWKSCache] = weakref.WeakValueDictionary()


def shared_cache(uri: str, **options: Any) -> JWKSCache:
    """The process-wide cache for ``uri`` with these settings, created on first use.

    Verifiers of one issuer share one cache and so one fetch. Different settings
    (another clock, other lifetimes) get a cache of their own.
    """
    key = (uri, *sorted(options.items()))
    cache = _shared.get(key)
    if cache is None:
        cache = JWKSCache(uri, **options)
        _shared[key] = cache
    return cache
