"""Outbound fetches of JSON documents at URLs that clients choose (RFC 9700 section 4.15, CIMD security).

A Client ID Metadata Document lives at a URL the *client* picks, so fetching it
lets anyone make the server send requests. :class:`SafeFetcher` keeps that
harmless: every URL and address goes through the SSRF guard of
:mod:`bastion.authserver._ssrf` (``https``, public addresses only, connections pinned
to the vetted address), and then

- redirects are followed by hand, a few at most, each hop checked the same way;
- one deadline covers the whole fetch, the body is read as a stream and cut at
  a size limit, and only a 2xx JSON answer is accepted.

In development, named loopback https origins may be fetched from too
(:mod:`bastion.authserver._dev_origins`): their certificates are checked against
the CA file named with them, and a redirect must stay within the origin.

Failures raise :class:`~bastion._core.http.FetchError`, whose message names the host
but never a query string or credentials.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from os import PathLike
from typing import Any

import httpcore2
import httpx2

from bastion._core.errors import ConfigurationError
from bastion._core.http import FetchError
from bastion.authserver._dev_origins import DevelopmentOrigins, Origin, development_settings
from bastion.authserver._ssrf import PinnedBackend, check_url

__all__ = ["FetchedJSON", "SafeFetcher"]

#: Status codes whose ``Location`` is followed (RFC 9110 section 15.4).
REDIRECTS = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True)
class FetchedJSON:
    """A JSON document fetched by :meth:`SafeFetcher.get_json`.

    Attributes:
        url: The URL that answered (after redirects).
        data: The parsed JSON value.
        cache_control: The response's ``Cache-Control`` header, if any.
        status: The HTTP status code (2xx).
    """

    url: str
    data: Any
    cache_control: str | None
    status: int


def _reason(exc: BaseException) -> str:
    """A short cause for a connection failure: the exception type, and the certificate problem if any."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"certificate not trusted ({cause.verify_message})"
        cause = cause.__cause__ or cause.__context__
    return type(exc).__name__


def _is_json(media_type: str) -> bool:
    """``application/json`` or a ``+json`` structured syntax suffix (RFC 6839)."""
    return media_type == "application/json" or (media_type.startswith("application/") and media_type.endswith("+json"))


def _ssl_context(verify: ssl.SSLContext | str | bool) -> ssl.SSLContext:
    if isinstance(verify, ssl.SSLContext):
        return verify
    if isinstance(verify, str):
        if os.path.isdir(verify):
            return ssl.create_default_context(capath=verify)
        return ssl.create_default_context(cafile=verify)
    return httpx2.create_ssl_context(verify=verify, trust_env=False)


class SafeFetcher:
    """Fetches JSON documents from URLs that clients supply, without reaching internal hosts.

    Args:
        allow_private: Development only: allow private and loopback addresses,
            and plain ``http`` to a loopback host.
        verify: Certificate verification: ``True`` (the system's CA bundle), a
            CA file or directory, an :class:`ssl.SSLContext`, or ``False``.
        timeout: Seconds for a whole fetch, redirects and body included.
        max_bytes: The largest response body read.
        max_redirects: How many redirects are followed.
        trusted_networks: Networks reached even though :func:`~bastion.authserver._ssrf.check_address`
            refuses them (an internal host you run that serves client documents),
            e.g. ``["10.1.2.0/24"]``. ``https`` is still required.
        development_origins: Development only: loopback https origins fetched from
            anyway, e.g. ``["https://localhost:3000"]``; a fetch that begins at one may
            be redirected within that origin only. An authorization server accepts a
            fetcher with these only when its issuer is loopback.
        development_ca_file: The PEM file of the CA that issued the certificates of the
            development origins; for them, only it is trusted (required with them).

    Raises:
        ConfigurationError: a limit is not positive, or the development origins or
            their CA file are wrong (:meth:`DevelopmentOrigins.build
            <bastion.authserver._dev_origins.DevelopmentOrigins.build>`).
    """

    def __init__(
        self,
        *,
        allow_private: bool = False,
        verify: ssl.SSLContext | str | bool = True,
        timeout: float = 5.0,
        max_bytes: int = 64 * 1024,
        max_redirects: int = 3,
        trusted_networks: Iterable[str] = (),
        development_origins: Iterable[str] = (),
        development_ca_file: str | PathLike[str] | None = None,
    ) -> None:
        if not timeout > 0 or max_bytes <= 0 or max_redirects < 0:
            raise ConfigurationError("timeout and max_bytes must be positive, max_redirects not negative")
        #: The development origins and their CA, or ``None`` (the default: none).
        self.development = development_settings(development_origins, development_ca_file)
        self.allow_private = allow_private
        self.timeout = float(timeout)
        self.max_bytes = max_bytes
        self.max_redirects = max_redirects
        self.trusted_networks = tuple(ipaddress.ip_network(network) for network in trusted_networks)
        self._ssl_context = _ssl_context(verify)
        self._development_context = self._ssl_context if self.development is None else self.development.context

    async def get_json(self, url: str) -> FetchedJSON:
        """GET ``url`` and parse its JSON answer, following at most ``max_redirects`` redirects.

        Raises:
            FetchError: the URL or an address it leads to is refused, the fetch
                failed or timed out, the answer is not a 2xx JSON document of at
                most ``max_bytes``.
        """
        origin = self._development_origin(url)
        if origin is None:
            target = check_url(url, allow_private=self.allow_private, trusted_networks=self.trusted_networks)
            context = self._ssl_context
        else:
            target = httpx2.URL(url).copy_with(fragment=None)
            context = self._development_context  # the development CA only, whatever `verify` says
        # One connection pool per fetch: nothing outlives the call, whatever event loop runs it.
        pool = httpcore2.AsyncConnectionPool(
            ssl_context=context,
            network_backend=PinnedBackend(self.allow_private, self.trusted_networks, development_origin=origin),
            max_connections=1,
            retries=0,
        )
        try:
            async with asyncio.timeout(self.timeout), pool:
                for _ in range(self.max_redirects + 1):
                    result = await self._get_once(pool, target)
                    if isinstance(result, FetchedJSON):
                        return result
                    target = self._follow(target, result, origin)
        except TimeoutError:
            raise FetchError(f"fetching from {target.host} timed out") from None
        except httpcore2.TimeoutException:
            raise FetchError(f"fetching from {target.host} timed out") from None
        except (httpcore2.NetworkError, httpcore2.ProtocolError, ssl.SSLError, OSError) as exc:
            raise FetchError(f"fetching from {target.host} failed: {_reason(exc)}") from None
        raise FetchError(f"fetching from {target.host}: more than {self.max_redirects} redirects")

    async def aclose(self) -> None:
        """Release resources. Each fetch closes its own connections, so there is nothing left to close."""

    def _development_origin(self, url: str) -> Origin | None:
        """The development origin ``url`` is at, or ``None`` (then the usual rules apply)."""
        if self.development is None:
            return None
        try:
            parsed = httpx2.URL(url)
        except (httpx2.InvalidURL, TypeError, UnicodeError):
            return None  # check_url refuses it
        return None if parsed.userinfo else self.development.match(parsed)

    def _follow(self, current: httpx2.URL, location: str, origin: Origin | None) -> httpx2.URL:
        """The next hop of a redirect, checked like the first URL (kept within a development origin)."""
        if origin is not None:
            return DevelopmentOrigins.follow(origin, current, location)
        try:
            joined = current.join(location)
        except (httpx2.InvalidURL, UnicodeError):
            raise FetchError(f"{current.host} redirected to an invalid URL") from None
        return check_url(str(joined), allow_private=self.allow_private, trusted_networks=self.trusted_networks)

    async def _get_once(self, pool: httpcore2.AsyncConnectionPool, url: httpx2.URL) -> FetchedJSON | str:
        """One request: the document, or the ``Location`` of a redirect."""
        host = url.host
        request_url = httpcore2.URL(scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path)
        headers = [
            (b"Accept", b"application/json"),
            (b"Accept-Encoding", b"identity"),
            (b"User-Agent", b"bastion"),
        ]
        timeouts = {"connect": self.timeout, "read": self.timeout, "write": self.timeout, "pool": self.timeout}
        async with pool.stream("GET", request_url, headers=headers, extensions={"timeout": timeouts}) as response:
            fields = httpx2.Headers(response.headers)
            if response.status in REDIRECTS:
                location = fields.get("location")
                if not location:
                    raise FetchError(f"{host} answered HTTP {response.status} without a Location")
                return location
            if not 200 <= response.status < 300:
                raise FetchError(f"{host} answered HTTP {response.status}")
            media_type = fields.get("content-type", "").split(";", 1)[0].strip().lower()
            if not _is_json(media_type):
                raise FetchError(f"{host} answered {media_type[:60] or 'no content type'!r}, not JSON")
            encoding = fields.get("content-encoding", "identity").strip().lower()
            if encoding not in ("", "identity"):
                raise FetchError(f"{host} answered an encoded body ({encoding[:20]!r})")
            declared = fields.get("content-length", "")
            if declared.isdigit() and int(declared) > self.max_bytes:
                raise FetchError(f"{host} answered more than {self.max_bytes} bytes")
            body = await self._read(response, host)
            cache_control = fields.get("cache-control")
            status = response.status
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):
            raise FetchError(f"{host} answered something that is not JSON") from None
        return FetchedJSON(url=str(url), data=data, cache_control=cache_control, status=status)

    async def _read(self, response: httpcore2.Response, host: str) -> bytes:
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_stream():
            size += len(chunk)
            if size > self.max_bytes:
                raise FetchError(f"{host} answered more than {self.max_bytes} bytes")
            chunks.append(chunk)
        return b"".join(chunks)
