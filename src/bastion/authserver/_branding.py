"""``Branding``: how the authorization server's pages present the service (name, logo, colour, help).

The sign-in, consent, error and account pages show the service's name and logo,
use its accent colour for the primary button, links and focus rings, and link to
its support page. Everything is checked when the object is made, so that a value
can never loosen the pages' Content-Security-Policy or their contrast:

- the logo and support URLs are ``https`` (``http`` only on a loopback host), with
  no user name, password or character that could break out of a CSP source; the
  logo's origin is the only image source the pages allow;
- the accent colour is ``#rgb`` or ``#rrggbb``; the text on it is white or black,
  whichever contrasts more (never under 4.5:1, WCAG 2.2 success criterion 1.4.3),
  and links and focus rings use it darkened until it reaches 4.5:1 on the pages'
  lightest grey (:data:`PAGE_GREY`, where the footer's link stands), so on white too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from bastion._core.errors import ConfigurationError
from bastion._core.net import is_loopback_host

__all__ = ["DEFAULT_ACCENT", "MAX_SERVICE_NAME", "MAX_URL", "PAGE_GREY", "Branding", "contrast", "darken_to", "text_on"]

#: The accent colour when none is given: a blue that carries white text at 6.6:1.
DEFAULT_ACCENT = "#2054c8"
#: The grey behind the pages' card and signed-in line: the darkest background a link stands on.
PAGE_GREY = "#f3f4f6"
#: The longest service name (it is a heading on a phone's screen).
MAX_SERVICE_NAME = 80
#: The longest logo or support URL.
MAX_URL = 2048
_HEX = re.compile(r"#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})")
# Characters that may stand in a URL placed in a CSP header and an HTML attribute: no
# whitespace, quotes, angle brackets, backslashes, or the ``;`` and ``,`` that separate CSP parts.
_URL_CHARS = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&()*+=%]+")
_MAILTO = re.compile(r"mailto:[A-Za-z0-9.!#$%&*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")


def _web_url(name: str, url: str) -> str:
    """``url`` checked: absolute https (http on loopback), no credentials, CSP-safe characters."""
    if len(url) > MAX_URL or not _URL_CHARS.fullmatch(url):
        raise ConfigurationError(f"Branding.{name} must be a URL of at most {MAX_URL} plain characters")
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - a malformed port raises here
    except ValueError:
        raise ConfigurationError(f"Branding.{name} is not a valid URL") from None
    if not host or "@" in parts.netloc:
        raise ConfigurationError(f"Branding.{name} must be an absolute URL with a host and no credentials")
    if parts.scheme == "https" or (parts.scheme == "http" and is_loopback_host(host)):
        return url
    raise ConfigurationError(f"Branding.{name} must be an https URL (http only on a loopback host)")


def _rgb(color: str) -> tuple[int, int, int]:
    digits = color[1:]
    return int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16)


def _hex(rgb: tuple[float, float, float]) -> str:
    return "#" + "".join(f"{round(channel):02x}" for channel in rgb)


def _luminance(color: str) -> float:
    """Relative luminance (WCAG 2.2, definition of "relative luminance") of ``#rrggbb``."""

    def linear(channel: int) -> float:
        c = channel / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (linear(channel) for channel in _rgb(color))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(first: str, second: str) -> float:
    """The contrast ratio of two ``#rrggbb`` colours, from 1 to 21."""
    lighter, darker = sorted((_luminance(first), _luminance(second)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def text_on(background: str) -> str:
    """White or black, whichever contrasts more with ``background`` (at least 4.58:1 either way)."""
    return "#ffffff" if contrast(background, "#ffffff") >= contrast(background, "#000000") else "#000000"


def darken_to(color: str, background: str = "#ffffff", ratio: float = 4.5) -> str:
    """``color``, darkened in small steps until it contrasts with ``background`` at least ``ratio``:1."""
    red, green, blue = (float(channel) for channel in _rgb(color))
    shade = color
    while contrast(shade, background) < ratio:
        red, green, blue = red * 0.95, green * 0.95, blue * 0.95
        shade = _hex((red, green, blue))
    return shade


@dataclass(frozen=True)
class Branding:
    """How the server's pages present the service people sign in to.

    Attributes:
        service_name: The name shown at the top of every page and in the sign-in
            heading ("Sign in to Notes"); at most 80 characters. Default: the name of
            the ``MCPServer`` the server serves, else the issuer's host name.
        logo_url: An image shown beside the name (about 32 pixels high; decorative,
            the name is its text). ``https``, or ``http`` on a loopback host. The
            pages' CSP allows images from its origin and nowhere else.
        accent_color: ``#rgb`` or ``#rrggbb``: the primary button, links, focus
            rings and the stripe above the page. Any colour keeps readable text:
            black or white on the button, a darker shade for links (4.5:1 at least).
        support_url: Where people get help ("Contact support" on every page, and
            the next step of the error pages): ``https`` (``http`` on loopback) or
            ``mailto:``.

    Raises:
        ConfigurationError: a value is malformed, too long, or not https.
    """

    service_name: str | None = None
    logo_url: str | None = None
    accent_color: str = DEFAULT_ACCENT
    support_url: str | None = None

    def __post_init__(self) -> None:
        if self.service_name is not None:
            name = " ".join(self.service_name.split())
            if not name or len(name) > MAX_SERVICE_NAME or not name.isprintable():
                raise ConfigurationError(f"Branding.service_name must be 1 to {MAX_SERVICE_NAME} printable characters")
            object.__setattr__(self, "service_name", name)
        if self.logo_url is not None:
            _web_url("logo_url", self.logo_url)
        if self.support_url is not None and not _MAILTO.fullmatch(self.support_url):
            _web_url("support_url", self.support_url)
        if not isinstance(self.accent_color, str) or not _HEX.fullmatch(self.accent_color):
            raise ConfigurationError("Branding.accent_color must be a hex colour: #rgb or #rrggbb")
        color = self.accent_color.lower()
        if len(color) == 4:
            color = "#" + "".join(digit * 2 for digit in color[1:])
        object.__setattr__(self, "accent_color", color)

    @property
    def logo_origin(self) -> str | None:
        """The logo's origin (``https://cdn.example.com``), the pages' one image source."""
        if self.logo_url is None:
            return None
        parts = urlsplit(self.logo_url)
        return f"{parts.scheme}://{parts.netloc.lower()}"

    @property
    def on_accent(self) -> str:
        """The colour of text on the accent colour: white or black."""
        return text_on(self.accent_color)

    @property
    def accent_ink(self) -> str:
        """The accent colour as links and focus rings use it: 4.5:1 at least on the pages' backgrounds."""
        return darken_to(self.accent_color, PAGE_GREY)
