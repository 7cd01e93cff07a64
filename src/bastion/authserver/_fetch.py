"""Outbound fetches of URLs that clients choose: SSRF-safe (RFC 9700 section 4.15, CIMD security).

A Client ID Metadata Document lives at a URL the *client* picks, so fetching it
lets anyone make the server send requests. :class:`SafeFetcher` keeps that
harmless:

- ``https`` only (``http`` only for a loopback host in development), no
  credentials in the URL;
- the host is resolved once and refused when any of its addresses is not a
  public unicast one (:func:`check_address`); the connection then goes to the
  vetted address itself, so a second DNS answer cannot point it elsewhere (DNS
  rebinding), while TLS still checks the certificate against the host name;
- redirects are followed by hand, a few at most, each hop checked the same way;
- one deadline covers the whole fetch, the body is read as a stream and cut at
  a size limit, and only a 2xx JSON answer is accepted.

Failures raise :class:`~bastion._core.http.FetchError`, whose message names the host
but never a query string or credentials.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import socket
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import anyio
import httpcore2
import httpx2

from bastion._core.errors import ConfigurationError
from bastion._core.http import FetchError
from bastion._core.net import is_loopback_host

__all__ = ["FetchedJSON", "SafeFetcher", "check_address"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Status codes whose ``Location`` is followed (RFC 9110 section 15.4).
REDIRECTS = frozenset({301, 302, 303, 307, 308})

_CGNAT = ipaddress.ip_network("100.64.0.0/10")  # RFC 6598 shared address space
_UNIQUE_LOCAL = ipaddress.ip_network("fc00::/7")  # RFC 4193
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052 well-known prefix: embeds an IPv4 address
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")  # RFC 8215 local-use translation
_TEREDO = ipaddress.ip_network("2001::/32")  # RFC 4380: the client address is hidden
_V4_COMPATIBLE = ipaddress.ip_network("::/96")  # RFC 4291 section 2.5.5.1, deprecated


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


def _refusal(ip: IPAddress) -> str | None:
    """Why ``ip`` is not a public unicast address, or ``None`` when it is one."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            reason = _refusal(embedded)
            return None if reason is None else f"{reason} (embedded in an IPv6 address)"
        if ip in _NAT64_LOCAL:
            return "local NAT64"
        if ip in _TEREDO:
            return "Teredo"
        if ip in _V4_COMPATIBLE and not ip.is_unspecified and not ip.is_loopback:
            return "IPv4-compatible"
        if ip in _UNIQUE_LOCAL:
            return "unique-local"
        if ip.is_site_local:
            return "site-local"
    elif ip in _CGNAT:
        return "shared (CGNAT)"
    for reason, flag in (
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("private", ip.is_private),
        ("reserved", ip.is_reserved),
        ("non-global", not ip.is_global),
    ):
        if flag:
            return reason
    return None


def check_address(ip: str | IPAddress) -> None:
    """Refuse an address that a fetch on a client's behalf must not reach.

    Allowed: public unicast addresses only. Refused: private, loopback,
    link-local, multicast, reserved and unspecified addresses, shared (CGNAT)
    ``100.64.0.0/10``, unique-local ``fc00::/7``, site-local, Teredo, and IPv6
    forms that embed a refused IPv4 address (mapped, 6to4, NAT64).

    Raises:
        FetchError: the address is refused or is not an IP address.
    """
    try:
        address = ipaddress.ip_address(ip) if isinstance(ip, str) else ip
    except ValueError:
        raise FetchError(f"{str(ip)[:64]!r} is not an IP address") from None
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id:
        raise FetchError(f"{address} is a scoped (link-local) address")
    reason = _refusal(address)
    if reason is not None:
        raise FetchError(f"{address} is a {reason} address")


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


class _PinnedBackend(httpcore2.AsyncNetworkBackend):
    """Resolves the host, vets every address, and connects to a vetted one.

    The connection pool hands us the URL's host name; TLS (SNI and the
    certificate check) still uses that name, only the TCP connection goes to
    the address checked here.
    """

    def __init__(self, allow_private: bool, trusted: tuple[IPNetwork, ...]) -> None:
        self._allow_private = allow_private
        self._trusted = trusted
        self._inner = httpcore2.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's backend interface)
        local_address: str | None = None,
        socket_options: Iterable[httpcore2.SOCKET_OPTION] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        addresses = await _resolve(host, port)
        if not self._allow_private:
            for address in addresses:
                if any(address in network for network in self._trusted):
                    continue
                reason = (
                    "scoped" if isinstance(address, ipaddress.IPv6Address) and address.scope_id else _refusal(address)
                )
                if reason is not None:
                    # The address itself is not named: the message may reach the client, and
                    # internal addresses are none of its business.
                    raise FetchError(f"refused to connect to {host}: it resolves to a {reason} address")
        failure: Exception | None = None
        for address in addresses:
            try:
                stream = await self._inner.connect_tcp(
                    str(address), port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
                return _ClosingStream(stream)
            except (httpcore2.ConnectError, httpcore2.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None  # _resolve never returns an empty list
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's backend interface)
        socket_options: Iterable[httpcore2.SOCKET_OPTION] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        raise FetchError("unix sockets are not fetched")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _ClosingStream(httpcore2.AsyncNetworkStream):
    """A TCP stream that is closed when its TLS handshake is cancelled (the fetch deadline).

    httpcore closes the socket when the handshake fails, but not when it is
    cancelled, which would leave the socket to the garbage collector.
    """

    def __init__(self, inner: httpcore2.AsyncNetworkStream) -> None:
        self._inner = inner

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's stream interface)
    ) -> httpcore2.AsyncNetworkStream:
        try:
            return await self._inner.start_tls(ssl_context, server_hostname, timeout)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._inner.aclose()
            raise

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


async def _resolve(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` resolves to, in resolver order, without duplicates."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise FetchError(f"{host} could not be resolved") from None
    addresses: dict[IPAddress, None] = {}
    for family, _, _, _, sockaddr in infos:
        if family in (socket.AF_INET, socket.AF_INET6):
            addresses[ipaddress.ip_address(str(sockaddr[0]))] = None
    if not addresses:
        raise FetchError(f"{host} has no IP address")
    return list(addresses)


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
        trusted_networks: Networks reached even though :func:`check_address`
            refuses them (an internal host you run that serves client documents),
            e.g. ``["10.1.2.0/24"]``. ``https`` is still required.
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
    ) -> None:
        if not timeout > 0 or max_bytes <= 0 or max_redirects < 0:
            raise ConfigurationError("timeout and max_bytes must be positive, max_redirects not negative")
        self.allow_private = allow_private
        self.timeout = float(timeout)
        self.max_bytes = max_bytes
        self.max_redirects = max_redirects
        self.trusted_networks = tuple(ipaddress.ip_network(network) for network in trusted_networks)
        self._ssl_context = _ssl_context(verify)

    async def get_json(self, url: str) -> FetchedJSON:
        """GET ``url`` and parse its JSON answer, following at most ``max_redirects`` redirects.

        Raises:
            FetchError: the URL or an address it leads to is refused, the fetch
                failed or timed out, the answer is not a 2xx JSON document of at
                most ``max_bytes``.
        """
        target = self._check_url(url)
        # One connection pool per fetch: nothing outlives the call, whatever event loop runs it.
        pool = httpcore2.AsyncConnectionPool(
            ssl_context=self._ssl_context,
            network_backend=_PinnedBackend(self.allow_private, self.trusted_networks),
            max_connections=1,
            retries=0,
        )
        try:
            async with asyncio.timeout(self.timeout), pool:
                for _ in range(self.max_redirects + 1):
                    result = await self._get_once(pool, target)
                    if isinstance(result, FetchedJSON):
                        return result
                    target = self._follow(target, result)
        except TimeoutError:
            raise FetchError(f"fetching from {target.host} timed out") from None
        except httpcore2.TimeoutException:
            raise FetchError(f"fetching from {target.host} timed out") from None
        except (httpcore2.NetworkError, httpcore2.ProtocolError, ssl.SSLError, OSError) as exc:
            raise FetchError(f"fetching from {target.host} failed: {_reason(exc)}") from None
        raise FetchError(f"fetching from {target.host}: more than {self.max_redirects} redirects")

    async def aclose(self) -> None:
        """Release resources. Each fetch closes its own connections, so there is nothing left to close."""

    def _check_url(self, url: str) -> httpx2.URL:
        try:
            parsed = httpx2.URL(url)
        except (httpx2.InvalidURL, TypeError, UnicodeError):
            raise FetchError("not a valid URL") from None
        host = parsed.host
        if not host:
            raise FetchError("the URL has no host")
        if parsed.userinfo:
            raise FetchError(f"the URL for {host} must not contain credentials")
        if parsed.scheme == "http":
            if not (self.allow_private and is_loopback_host(host)):
                raise FetchError(f"the URL for {host} must use https")
        elif parsed.scheme != "https":
            raise FetchError(f"the URL for {host} must use https")
        try:
            literal = ipaddress.ip_address(host)
        except ValueError:
            pass
        else:
            if not self.allow_private and not any(literal in network for network in self.trusted_networks):
                check_address(literal)
        return parsed.copy_with(fragment=None)

    def _follow(self, current: httpx2.URL, location: str) -> httpx2.URL:
        """The next hop of a redirect, checked like the first URL."""
        try:
            joined = current.join(location)
        except (httpx2.InvalidURL, UnicodeError):
            raise FetchError(f"{current.host} redirected to an invalid URL") from None
        return self._check_url(str(joined))

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
