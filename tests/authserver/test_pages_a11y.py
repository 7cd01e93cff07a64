"""The browser pages in Debian's chromium: accessible (axe-core), usable by keyboard, branded, script-free.

Every page a person meets (sign-in, a failed sign-in, consent, the error page of a
misconfigured app, the applications they allowed, the confirmation of a withdrawal,
the same page without a session) is checked where it is served, under its real
Content-Security-Policy:

- axe-core (``tests/browser``, from npm) runs in the page and finds no violation of
  WCAG 2.2 A/AA or best practice. It is evaluated through the DevTools protocol, which
  the page's CSP does not govern, while the page itself still cannot run a script
  (``add_script_tag`` is refused);
- the service's name, logo (loaded: the CSP allows its origin), accent colour and
  support link are on it;
- screenshots at 1280x800 and 375x812 are kept (``support/artifacts.py`` says where).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import pytest
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

from bastion.authserver import AuthorizationServer, Branding
from bastion.testing import serve

from support.artifacts import KEPT, artifacts_dir
from support.authserver import make_server, pkce_pair, serving
from support.chromium import CHROMIUM, CHROMIUM_ARGS, callback_app, require_browser

if TYPE_CHECKING:
    from playwright.async_api import BrowserContext, Page, ViewportSize

AXE = Path(__file__).resolve().parents[1] / "browser" / "node_modules" / "axe-core" / "axe.min.js"
DESKTOP: ViewportSize = {"width": 1280, "height": 800}
PHONE: ViewportSize = {"width": 375, "height": 812}
ACCENT = "#0b7a75"
SUPPORT = "https://help.acme.example/support"
#: The brand's logo: a small SVG served from an origin of its own.
LOGO_SVG = (
    b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32" width="32" height="32">'
    b'<rect width="32" height="32" rx="8" fill="#0b7a75"/><path d="M9 22 16 8l7 14z" fill="#fff"/></svg>'
)


def require_axe() -> str:
    """axe-core's source, installed by ``scripts/test`` (``npm ci --prefix tests/browser``)."""
    if not AXE.exists():
        message = f"{AXE} is missing: run npm ci --prefix tests/browser"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return AXE.read_text()


def logo_app() -> Starlette:
    async def logo(_: Any) -> Response:
        return Response(LOGO_SVG, media_type="image/svg+xml")

    return Starlette(routes=[Route("/logo.svg", logo)])


def authorize_url(base: str, redirect_uri: str, **extra: str) -> str:
    _, challenge = pkce_pair()
    query = {
        "response_type": "code",
        "client_id": "public-client",
        "redirect_uri": redirect_uri,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "state": "a11y-state",
        "scope": "notes:read notes:write offline_access",
        "resource": base + "/mcp",
        **extra,
    }
    return base + "/authorize?" + urlencode(query)


async def accessible(page: Page, axe: str, name: str) -> None:
    """axe-core finds nothing wrong on ``page`` (and did check it: rules passed)."""
    if not await page.evaluate("() => typeof window.axe === 'object'"):
        await page.evaluate(axe)
    results = await page.evaluate(
        """async () => {
            const results = await axe.run(document);
            return {
                passed: results.passes.length,
                violations: results.violations.map(v => ({
                    id: v.id, impact: v.impact, help: v.help,
                    nodes: v.nodes.map(n => n.target.join(" ") + ": " + n.failureSummary),
                })),
            };
        }"""
    )
    assert results["violations"] == [], f"axe on {name}:\n" + json.dumps(results["violations"], indent=2)
    assert results["passed"] >= 10, results


class Pages:
    """Checks each page it is shown: axe, branding, no script; and keeps its screenshots."""

    def __init__(self, axe: str, logo_origin: str) -> None:
        self.axe = axe
        self.logo_origin = logo_origin
        self.folder = artifacts_dir("screenshots")
        self.checked: list[str] = []

    async def check(self, page: Page, name: str) -> None:
        await self.branded(page)
        await self.scriptless(page)
        await accessible(page, self.axe, name)
        await self.screenshots(page, name)
        self.checked.append(name)

    async def branded(self, page: Page) -> None:
        assert await page.locator("header.brand").inner_text() == "Acme Notes"
        logo = page.locator("header.brand img")
        assert await logo.get_attribute("src") == self.logo_origin + "/logo.svg"
        assert await logo.get_attribute("alt") == ""  # decorative: the name beside it is the text
        assert await logo.evaluate("img => img.complete && img.naturalWidth > 0"), "the CSP blocked the logo"
        assert await page.locator("footer a").get_attribute("href") == SUPPORT
        stripe = await page.locator("main").evaluate("m => getComputedStyle(m).borderTopColor")
        assert stripe == "rgb(11, 122, 117)"
        primary = page.locator(".primary")
        if await primary.count():
            colors = await primary.first.evaluate(
                "b => [getComputedStyle(b).backgroundColor, getComputedStyle(b).color]"
            )
            assert colors == ["rgb(11, 122, 117)", "rgb(255, 255, 255)"]

    async def scriptless(self, page: Page) -> None:
        assert await page.evaluate("() => document.scripts.length") == 0
        with pytest.raises(Exception, match="Content Security Policy"):
            await page.add_script_tag(content="window.injected = true")
        assert await page.evaluate("() => window.injected") is None

    async def screenshots(self, page: Page, name: str) -> None:
        for label, size in (("desktop", DESKTOP), ("phone", PHONE)):
            await page.set_viewport_size(size)
            # Readable on a phone: nothing wider than the screen, so no sideways scrolling.
            assert await page.evaluate("() => document.documentElement.scrollWidth") <= size["width"], label
            path = self.folder / f"{name}-{label}.png"
            await page.screenshot(path=str(path), full_page=True)
            KEPT.append(path)
        await page.set_viewport_size(DESKTOP)


@asynccontextmanager
async def chromium() -> AsyncIterator[BrowserContext]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        with tempfile.TemporaryDirectory() as profile:
            context = await playwright.chromium.launch_persistent_context(
                profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS, viewport=DESKTOP
            )
            try:
                yield context
            finally:
                await context.close()


def branded_server(tmp_path: Path, logo_base: str) -> AuthorizationServer:
    branding = Branding(
        service_name="Acme Notes", logo_url=logo_base + "/logo.svg", accent_color=ACCENT, support_url=SUPPORT
    )
    return make_server(tmp_path, branding=branding)


async def test_every_page_is_accessible_branded_and_kept_as_screenshots(tmp_path: Path) -> None:
    require_browser()
    pages_checked: list[str]
    received: list[dict[str, str]] = []
    with (
        serve(logo_app()) as logo_base,
        serve(callback_app(received)) as client_base,
    ):
        server = branded_server(tmp_path, logo_base)
        pages = Pages(require_axe(), logo_base)
        redirect_uri = client_base + "/callback"
        with serving(server) as base:
            async with chromium() as context:
                page = await context.new_page()
                await page.goto(authorize_url(base, redirect_uri))
                assert await page.get_by_role("heading", level=1).inner_text() == "Sign in to Acme Notes"
                assert "to continue to Test Public Client" in await page.locator("main").inner_text()
                await pages.check(page, "sign-in")

                await page.get_by_label("Username").fill("alice")
                await page.get_by_label("Password").fill("wrong password")
                await page.get_by_role("button", name="Sign in").click()
                assert await page.get_by_role("alert").inner_text() == "The username or password is incorrect."
                await pages.check(page, "sign-in-failed")

                await page.get_by_label("Password").fill("alice-secret-pw")
                await page.get_by_role("button", name="Sign in").click()
                await page.wait_for_url("**/authorize/consent?*")
                main = await page.locator("main").inner_text()
                assert "Signed in as Alice Liddell" in main
                assert "Stay signed in" in main
                await pages.check(page, "consent")

                await page.get_by_label("Remember my decision for Test Public Client").check()
                await page.get_by_role("button", name="Allow").click()
                await page.wait_for_url(redirect_uri + "?*")

                await page.goto(base + "/consents")
                await pages.check(page, "consents")
                await page.get_by_role("button", name="Withdraw access for Test Public Client").click()
                await page.wait_for_url("**/consents?withdrawn=*")
                status = await page.get_by_role("status").inner_text()
                assert status == "You withdrew the access of Test Public Client."
                await pages.check(page, "withdrawn")

                await page.goto(authorize_url(base, "https://evil.example/callback"))
                assert await page.get_by_role("heading", level=1).inner_text() == "This app can't sign you in"
                await page.locator("summary").click()
                details = await page.locator("details").inner_text()
                assert "invalid_request: the redirect_uri is not registered for this client" in details
                assert "evil.example" not in await page.content()
                await pages.check(page, "bad-redirect")

            async with chromium() as stranger:
                page = await stranger.new_page()
                await page.goto(base + "/consents")
                assert await page.get_by_role("heading", level=1).inner_text() == "You are not signed in"
                await pages.check(page, "consents-signed-out")
                await page.get_by_role("link", name="Sign in").click()
                assert "to see the applications you allowed" in await page.locator("main").inner_text()
                await pages.check(page, "consents-sign-in")
                await page.get_by_label("Username").fill("bob")
                await page.get_by_label("Password").fill("bob-secret-pw")
                await page.get_by_role("button", name="Sign in").click()
                await page.wait_for_url(base + "/consents")
                assert "Signed in as Bob" in await page.locator("main").inner_text()
        pages_checked = pages.checked
    assert len(pages_checked) == 8
    assert len(received) == 1


async def test_a_keyboard_alone_signs_in_and_allows(tmp_path: Path) -> None:
    require_browser()
    received: list[dict[str, str]] = []
    with serve(logo_app()) as logo_base, serve(callback_app(received)) as client_base:
        server = branded_server(tmp_path, logo_base)
        redirect_uri = client_base + "/callback"
        with serving(server) as base:
            async with chromium() as context:
                page = await context.new_page()
                await page.goto(authorize_url(base, redirect_uri))
                assert await page.evaluate("() => document.activeElement.id") == "username"
                await page.keyboard.type("alice")
                await page.keyboard.press("Tab")
                assert await page.evaluate("() => document.activeElement.id") == "password"
                await page.keyboard.type("alice-secret-pw")
                await page.keyboard.press("Enter")
                await page.wait_for_url("**/authorize/consent?*")

                order = []
                for _ in range(12):
                    await page.keyboard.press("Tab")
                    focused = await page.evaluate(
                        """() => { const e = document.activeElement; const s = getComputedStyle(e);
                        return [e.textContent.trim() || e.id, s.outlineStyle, s.outlineWidth]; }"""
                    )
                    order.append(focused[0])
                    assert focused[1:] == ["solid", "3px"], f"no visible focus on {focused[0]}"
                    if focused[0] == "Allow":
                        break
                assert order[-1] == "Allow", order
                assert order.index("Not you? Switch account") < order.index("remember") < order.index("Allow")
                await page.keyboard.press("Enter")
                await page.wait_for_url(redirect_uri + "?*")
    assert len(received) == 1
    assert "code" in received[0]
    assert received[0]["state"] == "a11y-state"


async def test_not_you_signs_out_and_asks_who_signs_in(tmp_path: Path) -> None:
    require_browser()
    received: list[dict[str, str]] = []
    with serve(logo_app()) as logo_base, serve(callback_app(received)) as client_base:
        server = branded_server(tmp_path, logo_base)
        redirect_uri = client_base + "/callback"
        with serving(server) as base:
            async with chromium() as context:
                page = await context.new_page()
                await page.goto(authorize_url(base, redirect_uri))
                await page.get_by_label("Username").fill("alice")
                await page.get_by_label("Password").fill("alice-secret-pw")
                await page.get_by_role("button", name="Sign in").click()
                await page.wait_for_url("**/authorize/consent?*")
                await page.get_by_role("button", name="Not you? Switch account").click()
                assert await page.get_by_role("heading", level=1).inner_text() == "Sign in to Acme Notes"
                assert "bastion-session" not in {cookie["name"] for cookie in await context.cookies()}
                await page.get_by_label("Username").fill("bob")
                await page.get_by_label("Password").fill("bob-secret-pw")
                await page.get_by_role("button", name="Sign in").click()
                assert "Signed in as Bob" in await page.locator("main").inner_text()
                await page.get_by_role("button", name="Allow").click()
                await page.wait_for_url(redirect_uri + "?*")
    assert len(received) == 1
    assert "code" in received[0]


@pytest.mark.parametrize(
    ("accent", "on_accent"),
    [
        (None, "rgb(255, 255, 255)"),
        ("#ffd700", "rgb(0, 0, 0)"),
        ("#7fdbff", "rgb(0, 0, 0)"),
        ("#800000", "rgb(255, 255, 255)"),
    ],
)
async def test_any_accent_colour_keeps_the_pages_readable(tmp_path: Path, accent: str | None, on_accent: str) -> None:
    require_browser()
    axe = require_axe()
    branding = Branding() if accent is None else Branding(service_name="Acme Notes", accent_color=accent)
    server = make_server(tmp_path, branding=branding)
    with serve(callback_app([])) as client_base, serving(server) as base:
        async with chromium() as context:
            page = await context.new_page()
            await page.goto(authorize_url(base, client_base + "/callback"))
            heading = "Sign in to 127.0.0.1" if accent is None else "Sign in to Acme Notes"
            assert await page.get_by_role("heading", level=1).inner_text() == heading
            assert await page.locator("header.brand img").count() == 0
            assert await page.locator("footer").count() == 0  # no support link configured
            await accessible(page, axe, f"sign-in with {accent}")
            await page.get_by_label("Username").fill("alice")
            await page.get_by_label("Password").fill("alice-secret-pw")
            await page.get_by_role("button", name="Sign in").click()
            await page.wait_for_url("**/authorize/consent?*")
            allow = page.get_by_role("button", name="Allow")
            assert await allow.evaluate("b => getComputedStyle(b).color") == on_accent
            await accessible(page, axe, f"consent with {accent}")
