"""Small facts about hosts and addresses."""

from __future__ import annotations

__all__ = ["is_loopback_host"]


def is_loopback_host(host: str) -> bool:
    """``localhost``, ``127.0.0.0/8`` or ``::1`` (brackets allowed)."""
    host = host.strip("[]").lower()
    return host == "localhost" or host == "::1" or host.startswith("127.")
