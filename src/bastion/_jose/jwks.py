"""A cache of a remote JWK Set (RFC 7517 section 5): the keys published at one ``jwks_uri``.

:class:`JWKSCache` keeps the keys of one ``jwks_uri``. It is a
:class:`~bastion._core.remote_json.RemoteJSON` of the key set: refetched when the
``Cache-Control`` lifetime ends and on an unknown ``kid`` (at most once per
``refetch_interval``), concurrent misses coalesced into one request, the last
good set served while the endpoint fails. :func:`shared_cache` hands
out one cache per URI and settings, so verifiers in a process share it.
Importing and checking the keys themselves is :mod:`bastion._jose.keys`' job.
"""

from __future__ import annotations

import logging
import math
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from joserfc.jwa import JWSAlgModel
from joserfc.jwk import Key

from bastion._core.errors import ConfigurationError, KeysUnavailable
from bastion._core.http import DEFAULT_TIMEOUT, MAX_RESPONSE_BYTES
from bastion._core.net import is_loopback_url
from bastion._core.remote_json import RemoteJSON, http_fetch, shown_url
from bastion._jose.keys import fits, parse_key_set

__all__ = ["JWKSCache", "JWKSOptions", "shared_cache"]

logger = logging.getLogger("bastion")


Clock = Callable[[], float]


class _KeyIndex:
    """One parsed key set: its keys, by ``kid``, and the keys chosen per ``(kid, alg)`` so far."""

    __slots__ = ("by_kid", "keys", "selection")

    def __init__(self, keys: Iterable[Key]) -> None:
        self.keys = list(keys)
        self.by_kid: dict[str, list[Key]] = {}
        for key in self.keys:
            if key.kid is not None:
                self.by_kid.setdefault(key.kid, []).append(key)
        self.selection: dict[tuple[str | None, str], list[Key]] = {}

    def select(self, kid: str | None, alg: JWSAlgModel) -> list[Key]:
        candidates = self.keys if kid is None else self.by_kid.get(kid, ())
        selected = [key for key in candidates if fits(key, alg)]
        if selected:
            self.selection[(kid, alg.name)] = selected
        return selected


_NO_KEYS = _KeyIndex(())


def _log_failure(shown: str, reason: str, serving: bool) -> None:
    state = "serving the last good key set" if serving else "no key set yet"
    logger.warning("fetching JWKS %s failed: %s; %s", shown, reason, state)


@dataclass(frozen=True)
class JWKSOptions:
    """How a :class:`~bastion.JWTVerifier` fetches and keeps its ``jwks_uri`` key set.

    Attributes:
        refetch_interval: The least seconds between two fetches, whatever triggers
            them (an unknown ``kid``, an expired or failing set).
        min_ttl: The least lifetime taken from ``Cache-Control: max-age``.
        max_ttl: The longest lifetime taken from ``Cache-Control: max-age``.
        default_ttl: The lifetime when the response sets none.
        timeout: Seconds for one fetch.

    Raises:
        ConfigurationError: a number is not finite and non-negative, the bounds are
            not ordered, or the timeout is zero.
    """

    refetch_interval: float = 30.0
    min_ttl: float = 60.0
    max_ttl: float = 86400.0
    default_ttl: float = 300.0
    timeout: float = DEFAULT_TIMEOUT

    def __post_init__(self) -> None:
        _check_numbers(self.min_ttl, self.max_ttl, self.default_ttl, self.refetch_interval, self.timeout)


def _check_numbers(min_ttl: float, max_ttl: float, default_ttl: float, refetch_interval: float, timeout: float) -> None:
    numbers = (min_ttl, max_ttl, default_ttl, refetch_interval, timeout)
    if not all(math.isfinite(n) and n >= 0 for n in numbers) or min_ttl > max_ttl or timeout == 0:
        raise ConfigurationError("JWKS cache lifetimes, interval and timeout must be finite, non-negative, ordered")


class JWKSCache:
    """The signing keys published at one ``jwks_uri``, fetched lazily and kept fresh.

    A :class:`~bastion._core.remote_json.RemoteJSON` of the key set, indexed by ``kid``.

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
        self._shown = shown_url(uri)
        if scheme == "http" and not is_loopback_url(uri):
            logger.warning("jwks_uri %s is plain http: anyone on the path can substitute keys", self._shown)
        self._remote = RemoteJSON(
            uri,
            parse=lambda document: _KeyIndex(parse_key_set(document)),
            fetch=http_fetch(timeout=timeout, max_bytes=max_bytes, accept="application/jwk-set+json, application/json"),
            label="JWKS",
            clock=clock,
            min_ttl=min_ttl,
            max_ttl=max_ttl,
            default_ttl=default_ttl,
            refetch_interval=refetch_interval,
            timeout=timeout,
            max_bytes=max_bytes,
            on_failure=_log_failure,
        )
        self.uri = uri
        self._clock = clock

    @property
    def keys(self) -> list[Key]:
        """The keys of the last good key set (empty before the first successful fetch)."""
        index = self._remote.value
        return [] if index is None else list(index.keys)

    async def keys_for(self, kid: str | None, alg: JWSAlgModel) -> list[Key]:
        """The keys that may have signed a token with this ``kid`` and ``alg``; possibly none.

        A token without ``kid`` gets every key that fits ``alg``.

        Raises:
            KeysUnavailable: no key set could be had at all.
        """
        remote = self._remote
        if self._clock() >= remote.expires:
            await remote.refresh()
        index = remote.value or _NO_KEYS
        selected = index.selection.get((kid, alg.name))
        if selected is None:
            selected = index.select(kid, alg)
            if not selected and await remote.refresh():
                # A kid we have not seen may be a key published since our last fetch (key rotation).
                index = remote.value or _NO_KEYS
                selected = index.select(kid, alg)
        if not index.keys:
            raise KeysUnavailable(f"no key set could be fetched from {self._shown}: {remote.failure}")
        return selected

    async def refresh(self) -> None:
        """Fetch the key set now, unless a fetch happened within ``refetch_interval``."""
        await self._remote.refresh()

    async def ready(self) -> bool:
        """Whether a key set was had once (a stale copy counts); without one, a fetch is tried (bounded)."""
        if self._remote.value is None:
            await self._remote.refresh()
        return self._remote.value is not None


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
