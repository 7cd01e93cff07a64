"""A real browser (Debian's chromium, driven by Playwright) signs in and approves consent on the real pages."""

from __future__ import annotations

import tempfile
from pathlib import Path
from urllib.parse import urlencode

import httpx2

from bastion.testing import serve

from support.authserver import make_server, pkce_pair, serving
from support.chromium import CHROMIUM, CHROMIUM_ARGS, callback_app, require_browser


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
                    assert await page.title() == "Sign in \N{EN DASH} 127.0.0.1"
                    sign_in = await page.get_by_role("heading", level=1).inner_text()
                    assert sign_in == "Sign in to 127.0.0.1"
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
