"""A real browser (Debian's chromium, driven by Playwright) signs in and approves consent on the real pages."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from urllib.parse import urlencode

import httpx2
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from bastion.testing import serve

from support.authserver import make_server, pkce_pair, serving

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


async def test_a_user_signs_in_and_approves_in_chromium(tmp_path: Path) -> None:
    require_browser()
    from playwright.async_api import async_playwright

    verifier, challenge = pkce_pair()
    received: list[dict[str, str]] = []
    server = make_server(tmp_path)
    with serving(server) as base, serve(callback_app(received)) as client_base:
        redirect_uri = client_base + "/callback"
        authorize_url = (
            base
            + "/authorize?"
            + urlencode(
                {
                    "response_type": "code",
                    "client_id": "public-client",
                    "redirect_uri": redirect_uri,
                    "code_challenge": challenge,
                    "code_challenge_method": "S256",
                    "state": "browser-state",
                    "scope": "notes:read notes:write",
                    "resource": base + "/mcp",
                }
            )
        )
        console: list[str] = []
        async with async_playwright() as playwright:
            with tempfile.TemporaryDirectory() as profile:
                context = await playwright.chromium.launch_persistent_context(
                    profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
                )
                try:
                    page = await context.new_page()
                    page.on("console", lambda message: console.append(message.text))
                    await page.goto(authorize_url)
                    assert await page.title() == "Sign in"
                    await page.get_by_label("Username").fill("alice")
                    await page.get_by_label("Password").fill("alice-secret-pw")
                    await page.get_by_role("button", name="Sign in").click()

                    heading = page.get_by_role("heading", level=1)
                    assert await heading.inner_text() == "Allow Test Public Client to access your account?"
                    text = await page.locator("main").inner_text()
                    assert "Read your notes" in text
                    assert "Change your notes" in text
                    assert "This application runs on your own computer" in text
                    assert "sent back to 127.0.0.1" in text
                    await page.get_by_label("Remember my decision for Test Public Client").check()
                    await page.get_by_role("button", name="Allow").click()
                    await page.wait_for_url(redirect_uri + "?*")
                    assert "You can close this window." in await page.locator("body").inner_text()
                finally:
                    await context.close()

        assert len(received) == 1
        query = received[0]
        assert query["state"] == "browser-state"
        assert query["iss"] == server.require_issuer()
        async with httpx2.AsyncClient() as http:
            tokens = await http.post(
                base + "/token",
                data={
                    "grant_type": "authorization_code",
                    "code": query["code"],
                    "redirect_uri": redirect_uri,
                    "client_id": "public-client",
                    "code_verifier": verifier,
                },
            )
        assert tokens.status_code == 200, tokens.text
        access = await server.verifier.verify(tokens.json()["access_token"])
    assert access.subject == "alice"
    assert sorted(access.scopes) == ["notes:read", "notes:write"]
    assert not [line for line in console if "Content Security Policy" in line]
