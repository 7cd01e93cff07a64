"""The browser pages' responses: their security headers, the error pages, and the guard around a handler.

Every page and every redirect of the browser steps carries a Content-Security-Policy
without scripts (only the page's own stylesheet, by its hash, and the logo's origin),
refuses framing (RFC 9700 section 4.16, clickjacking), and is not cached.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from starlette.responses import HTMLResponse, Response

from bastion._core.errors import RETRY_AFTER, BastionError
from bastion.authserver._browser.layout import BASE_POLICY, Look, look_of, plain_look
from bastion.authserver._browser.pages import error_page
from bastion.authserver._errors import InvalidRequest
from bastion.storage import StoreError

if TYPE_CHECKING:
    from bastion.authserver._server import AuthorizationServer

__all__ = [
    "PAGE_HEADERS",
    "FlowRefused",
    "error_response",
    "guarded_page",
    "page",
    "secure_headers",
    "unavailable",
]

# No form-action: Chromium applies it to the redirect that follows a form POST, and the
# consent form's answer is a redirect to the client's own origin.
PAGE_HEADERS = {
    "Content-Security-Policy": BASE_POLICY,
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


def secure_headers(response: Response, look: Look | None = None) -> Response:
    """Add the page headers (CSP, no framing, no caching, no referrer) to ``response``.

    With ``look``, the policy allows that page's stylesheet and logo; without, nothing (a redirect).
    """
    for name, value in PAGE_HEADERS.items():
        response.headers[name] = value
    if look is not None:
        response.headers["Content-Security-Policy"] = look.content_security_policy
    return response


def page(look: Look, html: str, status: int = 200) -> Response:
    """An HTML page rendered with ``look``, with the security headers."""
    return secure_headers(HTMLResponse(html, status_code=status), look)


def error_response(
    server: AuthorizationServer | None,
    title: str,
    message: str,
    status: int,
    *,
    link: tuple[str, str] | None = None,
    next_step: str | None = None,
) -> Response:
    """The error page (:func:`~.pages.error_page`) in ``server``'s look, as a response."""
    look = plain_look() if server is None else look_of(server)
    return page(look, error_page(look, title, message, link=link, next_step=next_step), status)


def unavailable(server: AuthorizationServer | None) -> Response:
    """The page shown while the store cannot be reached: 503 with ``Retry-After``, nothing about the cause."""
    response = error_response(
        server,
        "Please try again later",
        "The server cannot complete sign-ins right now.",
        503,
        next_step="Wait a minute, then go back to the application and try again.",
    )
    response.headers["Retry-After"] = str(RETRY_AFTER)
    return response


class FlowRefused(BastionError):
    """A login or consent form (or a login step's callback) that cannot go on; carries the page to show.

    ``message`` is the page's text: it is the error's public description.
    """

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message, description=message)
        self.message = message
        self.status = status

    def response(self, server: AuthorizationServer | None = None) -> Response:
        """The error page, in ``server``'s look when given."""
        return error_response(server, "This sign-in cannot continue", self.message, self.status)


async def guarded_page(server: AuthorizationServer, handle: Callable[[], Awaitable[Response]], during: str) -> Response:
    """Run a browser-facing handler: a refused flow or an unreadable form as its page (413 for
    an oversized one), a store outage as the 503 page, logged on ``server.outages`` as ``the
    store failed during <during>`` (once per interval, with a count, without a traceback)."""
    try:
        return await handle()
    except FlowRefused as exc:
        return exc.response(server)
    except InvalidRequest as exc:
        return error_response(server, "This request cannot be read", exc.description, exc.status)
    except StoreError as exc:
        server.outages.warning(f"the store failed during {during}: {exc}")
        return unavailable(server)
