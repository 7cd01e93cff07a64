"""The public URL of ``bastion demo`` (``--public-url`` or ``BASTION_BASE_URL``), checked with the flag's name."""

from __future__ import annotations

from urllib.parse import urlsplit

from bastion._cli.errors import CommandRefused
from bastion._core.net import is_loopback_host

__all__ = ["check_public_url"]


def check_public_url(url: str, source: str) -> str:
    """``url`` without a trailing slash, if clients can use it as the server's base URL.

    Raises:
        CommandRefused: it is not an absolute http(s) URL, uses http beyond loopback, or has a
            query, a fragment or credentials; the message names ``source`` (``--public-url``).
    """
    try:
        parts = urlsplit(url)
        hostname = parts.hostname
    except ValueError:  # an unclosed bracket or a port that is no number
        parts, hostname = None, None
    if parts is None or parts.scheme not in ("http", "https") or not hostname:
        shown = "" if "@" in url else f", not {url[:80]!r}"  # credentials are never printed
        raise CommandRefused(f"{source} must be an absolute http(s) URL such as https://notes.example.com{shown}")
    if parts.username is not None or parts.password is not None:
        raise CommandRefused(f"{source} must not contain credentials")
    if parts.query or parts.fragment or "?" in url or "#" in url:
        raise CommandRefused(f"{source} must not have a query or a fragment")
    if parts.scheme == "http" and not is_loopback_host(hostname):
        raise CommandRefused(f"{source} must use https (http is allowed only for a loopback host)")
    return url.rstrip("/")
