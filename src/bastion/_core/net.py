"""Small facts about hosts."""

from __future__ import annotations

import ipaddress

__all__ = ["is_loopback_host"]


def is_loopback_host(host: str) -> bool:
    """``localhost``, or an IP literal in ``127.0.0.0/8`` or ``::1`` (brackets allowed).

    A DNS name that merely starts with ``127.`` (``127.evil.example``) is not loopback.
    """
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
