"""Development origins: client metadata documents fetched from named loopback https origins.

Client ID Metadata Documents must be https URLs (every MCP SDK insists), and the SSRF
guard (:mod:`bastion.authserver._ssrf`) refuses loopback addresses, so a developer
could not try the path against a local server. A :class:`DevelopmentOrigins` names the
few loopback https origins (``https://localhost:3000``) that a fetch may reach anyway,
and the CA file their certificates are checked against. Everything else about a fetch
stays: the deadline, the size limit, JSON only, and redirects, which must stay within
the origin the fetch began at. Any other loopback URL is refused as before.

The authorization server accepts these origins only when its own issuer is loopback
(:class:`~bastion.authserver.AuthorizationServer`): a server others use must never fetch
from its own machine on a client's say-so.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from dataclasses import dataclass, field
from os import PathLike, fspath
from pathlib import Path
from urllib.parse import urlsplit

import httpx2

from bastion._core.errors import ConfigurationError
from bastion._core.http import FetchError
from bastion._core.net import is_loopback_host

__all__ = ["DevelopmentOrigins", "Origin", "development_settings"]

#: An origin as compared: the host (lower case, IPv6 without brackets) and the port.
Origin = tuple[str, int]

_EXAMPLE = "https://localhost:3000"


def _origin(text: object) -> Origin:
    """The host and port of an https loopback origin written as ``https://host[:port]``."""
    if not isinstance(text, str):
        raise TypeError(f"a development metadata origin is a string like {_EXAMPLE!r}")
    try:
        parts = urlsplit(text.strip())
        port = parts.port
    except ValueError:
        raise ConfigurationError(f"development metadata origin {text!r} is not a valid URL") from None
    if parts.scheme != "https":
        raise ConfigurationError(f"development metadata origin {text!r} must use https (documents are https URLs)")
    host = parts.hostname
    extra = parts.path not in ("", "/") or "?" in text or "#" in text or "@" in parts.netloc
    if not host or extra:
        raise ConfigurationError(
            f"development metadata origin {text!r} must be only scheme, host and port, like {_EXAMPLE!r}"
        )
    if not is_loopback_host(host):
        raise ConfigurationError(
            f"development metadata origin {text!r} must be a loopback host (localhost, 127.0.0.1 or [::1])"
        )
    if port == 0:
        raise ConfigurationError(f"development metadata origin {text!r} has port 0")
    return host.lower(), 443 if port is None else port


def _url_origin(url: httpx2.URL) -> Origin | None:
    if url.scheme != "https" or not url.host:
        return None
    return url.host.lower(), 443 if url.port is None else url.port


def _written(origin: Origin) -> str:
    host, port = origin
    return f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"


def _trusting(ca_file: str) -> ssl.SSLContext:
    """A client TLS context trusting the certificates of ``ca_file`` and nothing else."""
    path = Path(ca_file)
    if not path.is_file():
        raise ConfigurationError(f"development CA file {ca_file!r} is not a file")
    try:
        # With a cafile, the default context loads only that file, not the system's CAs.
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file)
    except (ssl.SSLError, OSError, UnicodeError):
        raise ConfigurationError(f"development CA file {ca_file!r} holds no PEM certificate") from None
    if context.cert_store_stats().get("x509", 0) == 0:
        raise ConfigurationError(f"development CA file {ca_file!r} holds no PEM certificate")
    return context


@dataclass(frozen=True)
class DevelopmentOrigins:
    """Loopback https origins whose documents are fetched, certificates checked against one CA file.

    Made by :meth:`build`, which checks what it is given.

    Attributes:
        origins: The host and port of each origin, without duplicates.
        ca_file: The PEM file of the CA (or CAs) that issued those servers' certificates.
        context: The TLS context trusting that file only, not the system's CAs.
    """

    origins: tuple[Origin, ...]
    ca_file: str
    context: ssl.SSLContext = field(repr=False, compare=False)

    @classmethod
    def build(cls, origins: Iterable[str], ca_file: str | PathLike[str]) -> DevelopmentOrigins:
        """The checked settings.

        Args:
            origins: ``https://host:port`` origins with a loopback host (``localhost``,
                ``127.0.0.1``, ``[::1]``); the port defaults to 443.
            ca_file: The PEM file of the CA that issued their certificates.

        Raises:
            ConfigurationError: no origin, an origin that is not such an https loopback
                origin, or a CA file that does not exist or holds no certificate.
            TypeError: ``origins`` is one string rather than a list of them.
        """
        if isinstance(origins, str):
            raise TypeError(f"development metadata origins are a list of strings, like [{_EXAMPLE!r}]")
        checked = tuple(dict.fromkeys(_origin(origin) for origin in origins))
        if not checked:
            raise ConfigurationError("name at least one development metadata origin, like " + repr(_EXAMPLE))
        path = fspath(ca_file)
        return cls(origins=checked, ca_file=path, context=_trusting(path))

    @property
    def names(self) -> list[str]:
        """The origins as written in messages (``https://localhost:3000``)."""
        return [_written(origin) for origin in self.origins]

    def match(self, url: httpx2.URL) -> Origin | None:
        """The named origin of ``url``, or ``None`` when the URL is at none of them."""
        origin = _url_origin(url)
        return origin if origin in self.origins else None

    @staticmethod
    def follow(origin: Origin, current: httpx2.URL, location: str) -> httpx2.URL:
        """The next hop of a redirect from a development origin: within that origin only.

        Raises:
            FetchError: the location is invalid, has credentials, or leaves the origin.
        """
        try:
            joined = current.join(location)
        except (httpx2.InvalidURL, UnicodeError):
            raise FetchError(f"{current.host} redirected to an invalid URL") from None
        if joined.userinfo:
            raise FetchError(f"{current.host} redirected to a URL with credentials")
        if _url_origin(joined) != origin:
            raise FetchError(f"{current.host} redirected out of the development origin {_written(origin)}")
        return joined.copy_with(fragment=None)


def development_settings(origins: Iterable[str], ca_file: str | PathLike[str] | None) -> DevelopmentOrigins | None:
    """The checked development origins, or ``None`` when neither origins nor a CA file are given.

    Raises:
        ConfigurationError: origins without a CA file, a CA file without origins, or
            either of them wrong (:meth:`DevelopmentOrigins.build`).
        TypeError: ``origins`` is one string rather than a list of them.
    """
    if isinstance(origins, str):
        raise TypeError(f"development metadata origins are a list of strings, like [{_EXAMPLE!r}]")
    named = list(origins)
    if not named and ca_file is None:
        return None
    if ca_file is None:
        raise ConfigurationError("development metadata origins need the CA file that issued their certificates")
    if not named:
        raise ConfigurationError("a development CA file needs at least one development metadata origin")
    return DevelopmentOrigins.build(named, ca_file)
