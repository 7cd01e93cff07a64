"""Checks of the providers' constructor arguments: a mistake is a ``ConfigurationError`` at start-up."""

from __future__ import annotations

import re
from collections.abc import Sequence
from urllib.parse import urlsplit

from bastion._core.errors import ConfigurationError
from bastion._core.net import is_loopback_url

__all__ = ["hostname", "identifier", "required", "scope_list", "server_url"]

_HOSTNAME = re.compile(
    r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?)*"
)
_IDENTIFIER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def required(value: str | None, what: str) -> str:
    """``value``, which must be a non-empty string."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(f"{what} is required")
    return value


def hostname(value: str | None, what: str) -> str:
    """A bare host name (``example.okta.com``): no scheme, no path, no port."""
    value = required(value, what)
    if "://" in value:
        raise ConfigurationError(f"{what} is a host name such as login.example.com, without https://")
    host = value.rstrip("/")
    if not _HOSTNAME.fullmatch(host) or len(host) > 253:
        raise ConfigurationError(f"{what} {value!r:.100} is not a host name (no path or port)")
    return host.lower()


def identifier(value: str | None, what: str) -> str:
    """A path segment such as a realm or a tenant: letters, digits, ``.``, ``_`` and ``-``."""
    value = required(value, what)
    if not _IDENTIFIER.fullmatch(value):
        raise ConfigurationError(f"{what} {value!r:.100} may hold only letters, digits, '.', '_' and '-'")
    return value


def server_url(value: str | None, what: str) -> str:
    """An https URL without query or fragment (plain http on loopback only), without its final slash."""
    value = required(value, what)
    parts = urlsplit(value)
    loopback = is_loopback_url(value)
    if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
        raise ConfigurationError(f"{what} must be an https URL (http only on localhost)")
    if not parts.hostname or parts.query or parts.fragment or parts.username or parts.password:
        raise ConfigurationError(f"{what} must be a plain URL: a host and an optional path")
    return value.rstrip("/")


def scope_list(scopes: str | Sequence[str], what: str = "scopes") -> tuple[str, ...]:
    """The scopes as a tuple; a string is split on spaces (``"openid email"``)."""
    items = scopes.split() if isinstance(scopes, str) else list(scopes)
    for scope in items:
        if not isinstance(scope, str) or not scope or any(c in scope for c in ' "\\') or not scope.isprintable():
            raise ConfigurationError(f"{what}: {scope!r:.100} is not a scope (RFC 6749 section 3.3)")
    return tuple(dict.fromkeys(items))
