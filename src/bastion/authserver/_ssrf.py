"""The SSRF guard: which hosts and addresses a fetch on a client's behalf may reach (RFC 9700 section 4.15).

A URL a client chooses (a Client ID Metadata Document, a ``jwks_uri``) must not make the
server reach its own network. The rules:

- ``https`` only (``http`` only for a loopback host in development), no credentials
  in the URL (:func:`check_url`);
- an address is reached only when it is a public unicast one (:func:`check_address`),
  or within networks the operator trusts;
- the host is resolved once and refused when any of its addresses is refused; the
  connection then goes to the vetted address itself (:class:`PinnedBackend`), so a
  second DNS answer cannot point it elsewhere (DNS rebinding), while TLS still checks
  the certificate against the host name.

Refusals raise :class:`~bastion._core.http.FetchError`, whose message names the host
but never an internal address, a query string or credentials.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import Iterable
from typing import Any

import anyio
import httpcore2
import httpx2

from bastion._core.http import FetchError
from bastion._core.net import is_loopback_host

__all__ = ["IPNetwork", "PinnedBackend", "check_address", "check_url"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_CGNAT = ipaddress.ip_network("100.64.0.0/10")  # RFC 6598 shared address space
_UNIQUE_LOCAL = ipaddress.ip_network("fc00::/7")  # RFC 4193
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052 well-known prefix: embeds an IPv4 address
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")  # RFC 8215 local-use translation
_TEREDO = ipaddress.ip_network("2001::/32")  # RFC 4380: the client address is hidden
_V4_COMPATIBLE = ipaddress.ip_network("::/96")  # RFC 4291 section 2.5.5.1, deprecated


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


def check_url(url: str, *, allow_private: bool, trusted_networks: tuple[IPNetwork, ...]) -> httpx2.URL:
    """``url`` without its fragment, when a fetch may go there.

    ``allow_private`` (development) also allows plain ``http`` to a loopback host and
    any literal address; an address within ``trusted_networks`` is always allowed.

    Raises:
        FetchError: the URL is malformed, has credentials, is not ``https``, or is a refused address.
    """
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
        if not (allow_private and is_loopback_host(host)):
            raise FetchError(f"the URL for {host} must use https")
    elif parsed.scheme != "https":
        raise FetchError(f"the URL for {host} must use https")
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        if not allow_private and not any(literal in network for network in trusted_networks):
            check_address(literal)
    return parsed.copy_with(fragment=None)


class PinnedBackend(httpcore2.AsyncNetworkBackend):
    """Resolves the host, vets every address, and connects to a vetted one.

    The connection pool hands us the URL's host name; TLS (SNI and the
    certificate check) still uses that name, only the TCP connection goes to
    the address checked here.

    With ``development_origin`` (a loopback host and port the operator named, see
    :mod:`bastion.authserver._dev_origins`) it connects to that host and port only,
    and only to loopback addresses.
    """

    def __init__(
        self,
        allow_private: bool,
        trusted: tuple[IPNetwork, ...],
        *,
        development_origin: tuple[str, int] | None = None,
    ) -> None:
        self._allow_private = allow_private
        self._trusted = trusted
        self._development_origin = development_origin
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
        if self._development_origin is not None:
            if (host.strip("[]").lower(), port) != self._development_origin:
                raise FetchError(f"refused to connect to {host}: not the development origin of this fetch")
            if not all(address.is_loopback for address in addresses):
                raise FetchError(f"refused to connect to {host}: a development origin must resolve to loopback only")
        elif not self._allow_private:
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
