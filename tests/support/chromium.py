"""Debian's chromium driven by Playwright in tests: where it is, how it is launched, and a client's callback.

No browser is ever downloaded: Playwright drives ``/usr/bin/chromium``.
"""

from __future__ import annotations

import os

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def require_browser() -> None:
    """Skip without chromium or Playwright, except on CI, where their absence is a failure."""
    missing = None
    if not os.path.exists(CHROMIUM):
        missing = f"{CHROMIUM} is not installed (apt-get install chromium)"
    else:
        try:
            import playwright.async_api  # noqa: F401
        except ImportError:
            missing = "playwright is not installed (pip install -e '.[dev]')"
    if missing is not None:
        if os.environ.get("CI"):
            pytest.fail(missing)
        pytest.skip(missing)


def callback_app(received: list[dict[str, str]]) -> Starlette:
    """The client's loopback redirect target: records the query it is called with."""

    async def callback(request: Request) -> PlainTextResponse:
        received.append(dict(request.query_params))
        return PlainTextResponse("You can close this window.")

    return Starlette(routes=[Route("/callback", callback)])
