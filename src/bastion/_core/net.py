"""Small facts about hosts: which are loopback, the one definition every module uses."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

__all__ = ["is_loopback_host", "is_loopback_url"]

_IPV6_LOOPBACK = ipaddress.IPv6Address("::1")


def is_loopback_host(host: str) -> bool:
    """``localhost``, an IPv4 literal in ``127.0.0.0/8``, or ``::1`` (bracketed or not).

    Names are compared case-insensitively. A DNS name that merely starts with ``127.``
    (``127.evil.example``), an IPv4-mapped IPv6 address (``::ffff:127.0.0.1``) and
    brackets around anything but an IPv6 address are not loopback.
    """
    if host.startswith("[") and host.endswith("]"):
        try:
            return ipaddress.IPv6Address(host[1:-1]) == _IPV6_LOOPBACK
        except ValueError:
            return False
    if host.lower() == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address):
        return address == _IPV6_LOOPBACK
    return address.is_loopback


def is_loopback_url(url: str) -> bool:
    """Whether the host of the absolute URL ``url`` is loopback (see :func:`is_loopback_host`)."""
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return False
    return host is not None and is_loopback_host(host)
