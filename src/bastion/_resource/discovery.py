"""A cache of an authorization server's metadata document (RFC 8414, OpenID Connect Discovery 1.0).

:class:`DiscoveryCache` keeps the document published at one configuration URL. It is a
:class:`~bastion._core.remote_json.RemoteJSON`: refetched when the ``Cache-Control``
lifetime ends (bounded), concurrent fetches coalesced into one request, never
fetched more often than ``refetch_interval``, the last good document served while
the endpoint fails. A document is only
accepted when its ``issuer`` is the one expected for the URL (RFC 8414 section 3.3,
OpenID Connect Discovery 1.0 section 4.3: this is what stops a document from one
server impersonating another) and its endpoints are ``https``.
:func:`shared_discovery` hands out one cache per URL and settings, so the verifiers
and providers of a process share it.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from bastion._core.errors import BastionError, ConfigurationError
from bastion._core.http import DEFAULT_TIMEOUT
from bastion._core.net import is_loopback_host
from bastion._core.remote_json import RemoteJSON, shown_url

__all__ = [
    "MAX_DISCOVERY_BYTES",
    "DiscoveryCache",
    "DiscoveryUnavailable",
    "discovery_urls",
    "issuer_from_config_url",
    "shared_discovery",
]

logger = logging.getLogger("bastion")

#: The largest metadata document read (the biggest real ones are a few tens of KB).
MAX_DISCOVERY_BYTES = 128 * 1024

OIDC_WELL_KNOWN = "/.well-known/openid-configuration"
OAUTH_WELL_KNOWN = "/.well-known/oauth-authorization-server"


Clock = Callable[[], float]


class DiscoveryUnavailable(BastionError):
    """No valid metadata document could be had from the authorization server, ever.

    The message says why (network, HTTP status, not JSON, wrong issuer...); it
    names no secret. Once a document was had, failures serve it instead.
    """

    description = "The authorization server's metadata could not be fetched"


def issuer_from_config_url(url: str) -> str:
    """The issuer a configuration URL belongs to.

    - ``X/.well-known/openid-configuration`` (OpenID Connect Discovery 1.0 section 4):
      ``X``; also ``X/.well-known/oauth-authorization-server``, which some servers publish.
    - ``ORIGIN/.well-known/oauth-authorization-server/PATH`` (RFC 8414 section 3.1) and
      ``ORIGIN/.well-known/openid-configuration/PATH`` (path insertion): ``ORIGIN/PATH``.

    Raises:
        ConfigurationError: the URL has none of these forms, or is not a plain http(s) URL.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname or parts.username or parts.password:
        raise ConfigurationError(f"a discovery URL must be an https URL without credentials, not {shown_url(url)!r}")
    origin = f"{parts.scheme}://{parts.netloc}"
    path = parts.path
    for well_known in (OAUTH_WELL_KNOWN, OIDC_WELL_KNOWN):
        if path == well_known or path.startswith(well_known + "/"):
            return origin + path[len(well_known) :]
    for well_known in (OIDC_WELL_KNOWN, OAUTH_WELL_KNOWN):
        if path.endswith(well_known):
            return origin + path[: -len(well_known)]
    raise ConfigurationError(
        f"{shown_url(url)!r} is not a discovery URL (.../.well-known/openid-configuration or "
        ".well-known/oauth-authorization-server); pass the issuer too"
    )


def discovery_urls(issuer: str) -> tuple[str, ...]:
    """Where an issuer's metadata may be published, in the order to try them.

    The order of the MCP authorization specification: RFC 8414 with path insertion,
    OpenID Connect Discovery with path insertion, then with the path appended. An
    issuer with a path also gets RFC 8414's name appended, which Keycloak serves.
    """
    parts = urlsplit(issuer)
    origin = f"{parts.scheme}://{parts.netloc}"
    # RFC 8414 section 3.1: a terminating "/" after the host is removed before inserting.
    path = parts.path.rstrip("/")
    if not path:
        return (origin + OAUTH_WELL_KNOWN, origin + OIDC_WELL_KNOWN)
    return (
        origin + OAUTH_WELL_KNOWN + path,
        origin + OIDC_WELL_KNOWN + path,
        origin + path + OIDC_WELL_KNOWN,
        origin + path + OAUTH_WELL_KNOWN,
    )


def same_issuer(found: str, expected: str) -> bool:
    """Whether two issuer identifiers are the same: identical, except that a bare origin may end in ``/``."""
    return found == expected or (_root(found) is not None and _root(found) == _root(expected))


def _root(issuer: str) -> str | None:
    parts = urlsplit(issuer)
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        return None
    return issuer.removesuffix("/")


def _log_failure(shown: str, reason: str, serving: bool) -> None:
    if serving:
        logger.warning("fetching discovery document %s failed: %s; serving the last good document", shown, reason)
    else:
        # The caller gets DiscoveryUnavailable with the reason and decides how loud to be
        # (a verifier trying several well-known URLs expects some to be missing).
        logger.info("fetching discovery document %s failed: %s", shown, reason)


class DiscoveryCache:
    """The metadata document published at one configuration URL, fetched lazily and kept fresh.

    Args:
        url: The configuration URL (``https``; plain ``http`` is accepted with a warning
            unless the host is a loopback address).
        issuer: The issuer the document must name. Default: the one the URL belongs to
            (see :func:`issuer_from_config_url`). A bare origin may differ by a final ``/``.
        clock: Seconds since the epoch; injectable for tests.
        min_ttl, max_ttl: Bounds for the lifetime taken from ``Cache-Control: max-age``.
        default_ttl: The lifetime when the response sets none.
        refetch_interval: The least time between two fetches (an expired or failing document).
        timeout: Seconds for a whole fetch.
        max_bytes: The largest document read.

    Raises:
        ConfigurationError: the URL or the settings are unusable.
    """

    def __init__(
        self,
        url: str,
        *,
        issuer: str | None = None,
        clock: Clock = time.time,
        min_ttl: float = 60.0,
        max_ttl: float = 86400.0,
        default_ttl: float = 3600.0,
        refetch_interval: float = 30.0,
        timeout: float = DEFAULT_TIMEOUT,
        max_bytes: int = MAX_DISCOVERY_BYTES,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("https", "http") or not parts.hostname or parts.username or parts.password:
            raise ConfigurationError(
                f"a discovery URL must be an https URL without credentials, not {shown_url(url)!r}"
            )
        self._shown = shown_url(url)
        # Plain http is tolerated for a server that is itself configured over http (a
        # development network); its endpoints may then be http too.
        self._plain = parts.scheme == "http" and not is_loopback_host(parts.hostname)
        if self._plain:
            logger.warning("discovery URL %s is plain http: anyone on the path can substitute endpoints", self._shown)
        self.url = url
        self.issuer = issuer_from_config_url(url) if issuer is None else issuer
        self._remote = RemoteJSON(
            url,
            parse=self._validate,
            label="discovery",
            clock=clock,
            min_ttl=min_ttl,
            max_ttl=max_ttl,
            default_ttl=default_ttl,
            refetch_interval=refetch_interval,
            timeout=timeout,
            max_bytes=max_bytes,
            on_failure=_log_failure,
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._shown!r}, issuer={self.issuer!r})"

    @property
    def cached(self) -> dict[str, Any] | None:
        """The last good document, without any I/O (``None`` before the first successful fetch)."""
        document = self._remote.value
        return None if document is None else dict(document)

    async def document(self) -> dict[str, Any]:
        """The metadata document: cached while fresh, fetched when stale, the last good one on failure.

        Raises:
            DiscoveryUnavailable: no valid document could be fetched yet.
        """
        document = await self._remote.get()
        if document is None:
            raise DiscoveryUnavailable(f"no metadata document from {self._shown}: {self._remote.failure}")
        return dict(document)

    async def refresh(self) -> None:
        """Fetch the document now, unless a fetch happened within ``refetch_interval``."""
        await self._remote.refresh()

    def _validate(self, document: object) -> dict[str, Any]:
        """``document`` if it is metadata of the expected issuer with usable endpoints; else ValueError."""
        if type(document) is not dict:
            raise ValueError("the document is not a JSON object")
        issuer = document.get("issuer")
        if not isinstance(issuer, str):
            raise ValueError("the document has no issuer")
        if not same_issuer(issuer, self.issuer):
            # RFC 8414 section 3.3: the issuer must be identical to the one the URL was built from.
            raise ValueError(f"the document names the issuer {issuer!r:.100}, not {self.issuer!r}")
        for name, value in document.items():
            if name == "issuer" or name == "jwks_uri" or name.endswith("_endpoint"):
                if not isinstance(value, str):
                    raise ValueError(f"{name} is not a string")
                self._check_url(name, value)
        return document

    def _check_url(self, name: str, value: str) -> None:
        try:
            parts = urlsplit(value)
            host = parts.hostname
        except ValueError:
            raise ValueError(f"{name} is not a URL") from None
        if not host or parts.scheme not in ("https", "http"):
            raise ValueError(f"{name} is not an absolute https URL")
        if parts.scheme == "http" and not (self._plain or is_loopback_host(host)):
            raise ValueError(f"{name} is plain http")


_shared: weakref.WeakValueDictionary[tuple[Any, ...], DiscoveryCache] = weakref.WeakValueDictionary()


def shared_discovery(url: str, **options: Any) -> DiscoveryCache:
    """The process-wide cache for ``url`` with these settings, created on first use.

    Everything that discovers one server shares one cache and so one fetch. Different
    settings (another expected issuer, another clock) get a cache of their own. The
    caller keeps a reference: an unused cache is dropped.
    """
    key = (url, *sorted(options.items()))
    cache = _shared.get(key)
    if cache is None:
        cache = DiscoveryCache(url, **options)
        _shared[key] = cache
    return cache
