"""Redirect URI rules: which URIs a client may register, and how a requested one is matched.

- Only ``https`` URIs, or ``http`` to a loopback host (``127.0.0.1``, ``[::1]``,
  ``localhost``), as the MCP authorization spec requires; private-use schemes
  (``com.example.app:/cb``) are refused.
- Absolute, no fragment (RFC 6749 section 3.1.2), no userinfo, no wildcard,
  printable ASCII of RFC 3986 characters only, at most :data:`MAX_REDIRECT_URI`
  characters.
- Matching is exact string comparison (OAuth 2.1 section 4.1.1, RFC 9700
  section 4.1.3), with one exception: a registered ``http`` loopback URI matches
  a requested one that differs only by its port, because a native app binds
  whatever port is free (RFC 8252 section 7.3).
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from urllib.parse import urlsplit

from bastion.authserver._errors import InvalidRedirectURI, InvalidRequest
from bastion.authserver._models import Client

__all__ = [
    "LOOPBACK_HOSTS",
    "MAX_REDIRECT_URI",
    "is_loopback_redirect",
    "redirect_uri_matches",
    "select_redirect_uri",
    "validate_redirect_uri",
]

#: The longest redirect URI accepted.
MAX_REDIRECT_URI = 2000
#: The hosts of a loopback redirect (RFC 8252 section 7.3; ``localhost`` as MCP clients use it).
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "[::1]", "localhost"})

# RFC 3986 unreserved, reserved and "%" characters, minus "#" (no fragment) and "*" (no wildcard).
_ALLOWED = frozenset(string.ascii_letters + string.digits + "-._~:/?[]@!$&'()+,;=%")
_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_HOST_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")
_HOST_IPV6 = re.compile(r"\[[0-9A-Fa-f:.]+\]")
_AUTHORITY = re.compile(r"^([a-z]+)://([^/?]*)(.*)$", re.DOTALL)


def _split_authority(uri: str) -> tuple[str, str, str | None, str] | None:
    """``(scheme, host, port, rest)`` of an absolute ``scheme://authority...`` URI, else ``None``."""
    found = _AUTHORITY.match(uri)
    if found is None:
        return None
    scheme, authority, rest = found.groups()
    host, sep, port = authority.rpartition(":") if not authority.endswith("]") else (authority, "", "")
    if not sep:
        return scheme, authority, None, rest
    return scheme, host, port, rest


def validate_redirect_uri(uri: str) -> str:
    """``uri`` itself if a client may register it as a redirect URI.

    Raises:
        InvalidRedirectURI: it is not an absolute https URI (or http to a
            loopback host), or it has a fragment, userinfo, a wildcard, a bad
            character, or is too long.
    """
    if not isinstance(uri, str) or not uri:
        raise InvalidRedirectURI("a redirect URI must be a non-empty string")
    if len(uri) > MAX_REDIRECT_URI:
        raise InvalidRedirectURI(f"a redirect URI must be at most {MAX_REDIRECT_URI} characters")
    if "#" in uri:
        raise InvalidRedirectURI("a redirect URI must not have a fragment")
    if "*" in uri:
        raise InvalidRedirectURI("a redirect URI must not contain a wildcard")
    if not set(uri) <= _ALLOWED or _PERCENT.search(uri):
        raise InvalidRedirectURI("a redirect URI must be a URI of printable ASCII characters")
    parts = _split_authority(uri)
    if parts is None:
        raise InvalidRedirectURI("a redirect URI must be an absolute https URI")
    scheme, host, port, _ = parts
    if scheme not in ("https", "http"):
        raise InvalidRedirectURI("a redirect URI must use https (or http to a loopback address)")
    if "@" in host or "@" in (port or ""):
        raise InvalidRedirectURI("a redirect URI must not contain a user name or password")
    if not (_HOST_NAME.fullmatch(host) or _HOST_IPV6.fullmatch(host)):
        raise InvalidRedirectURI("a redirect URI must name a valid host")
    if port is not None and not (port.isdigit() and len(port) <= 5 and 0 < int(port) < 65536):
        raise InvalidRedirectURI("a redirect URI has an invalid port")
    try:
        urlsplit(uri)  # the parser clients will use must accept it too
    except ValueError:
        raise InvalidRedirectURI("a redirect URI must be a valid URI") from None
    if scheme == "http" and host.lower() not in LOOPBACK_HOSTS:
        raise InvalidRedirectURI("an http redirect URI is allowed only for a loopback address (127.0.0.1, [::1])")
    return uri


def _valid(uri: str) -> bool:
    try:
        validate_redirect_uri(uri)
    except InvalidRedirectURI:
        return False
    return True


def is_loopback_redirect(uri: str) -> bool:
    """Whether ``uri`` is a valid ``http`` redirect to a loopback host (RFC 8252 section 7.3)."""
    if not _valid(uri):
        return False
    parts = _split_authority(uri)
    return parts is not None and parts[0] == "http" and parts[1].lower() in LOOPBACK_HOSTS


def _without_port(uri: str) -> str:
    parts = _split_authority(uri)
    assert parts is not None  # callers pass valid URIs only
    scheme, host, _, rest = parts
    return f"{scheme}://{host}{rest}"


def redirect_uri_matches(registered: Sequence[str], requested: str) -> bool:
    """Whether ``requested`` is one of the ``registered`` redirect URIs.

    Exact string comparison (scheme, host case, path and its trailing slash,
    query all count), except that a registered http loopback URI matches a
    requested one that differs only by its port (RFC 8252 section 7.3).
    """
    if not _valid(requested):
        return False
    loopback = is_loopback_redirect(requested)
    for candidate in registered:
        if candidate == requested:
            return True
        if loopback and is_loopback_redirect(candidate) and _without_port(candidate) == _without_port(requested):
            return True
    return False


def select_redirect_uri(client: Client, requested: str | None) -> str:
    """The redirect URI of an authorization request for ``client``.

    Without ``redirect_uri``, the client's single registered one. The caller
    shows an error page for these errors: it never redirects to an unverified URI.

    Raises:
        InvalidRequest: ``redirect_uri`` is missing while several (or none) are
            registered, or it does not match a registered one.
    """
    if requested is None:
        if len(client.redirect_uris) == 1:
            return client.redirect_uris[0]
        if not client.redirect_uris:
            raise InvalidRequest("the client has no registered redirect URI")
        raise InvalidRequest("the redirect_uri parameter is missing and the client registered several")
    if redirect_uri_matches(client.redirect_uris, requested):
        return requested
    raise InvalidRequest("the redirect_uri is not registered for this client")
