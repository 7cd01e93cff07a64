"""Branding: checked when made, on every page, escaped, within a strict CSP, readable whatever the colour."""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

import httpx2
import pytest

from bastion import ConfigurationError, MCPServer
from bastion.authserver import AuthorizationServer, Branding
from bastion.authserver._branding import PAGE_GREY, contrast, darken_to, text_on

from support.authserver import make_server
from support.pages import Browser, browsing, only_form, page_text, parse_page, request_params

LOOPBACK = "http://127.0.0.1:40000/callback"
BRAND = Branding(
    service_name="Acme Notes",
    logo_url="https://cdn.acme.example/brand/logo.svg",
    accent_color="#0B7A75",
    support_url="mailto:help@acme.example",
)


@pytest.mark.parametrize(
    "options",
    [
        {"accent_color": "red"},
        {"accent_color": "#12345"},
        {"accent_color": "#gggggg"},
        {"accent_color": "#0b7a75; background:url(x)"},
        {"service_name": ""},
        {"service_name": "   "},
        {"service_name": "x" * 81},
        {"service_name": "Acme\x00Notes"},
        {"logo_url": "http://cdn.acme.example/logo.png"},
        {"logo_url": "javascript:alert(1)"},
        {"logo_url": "data:image/png;base64,AAAA"},
        {"logo_url": "https://user:pw@cdn.acme.example/logo.png"},
        {"logo_url": "https://cdn.acme.example/logo.png; script-src *"},
        {"logo_url": "https://cdn.acme.example/a'b.png"},
        {"logo_url": "https:///logo.png"},
        {"logo_url": "https://cdn.acme.example:99999/logo.png"},
        {"logo_url": "https://cdn.acme.example/" + "a" * 2048},
        {"support_url": "ftp://help.acme.example"},
        {"support_url": "mailto:"},
        {"support_url": 'https://help.acme.example/"onmouseover="x'},
    ],
)
def test_a_bad_branding_value_is_a_configuration_error(options: dict[str, str]) -> None:
    with pytest.raises(ConfigurationError, match="Branding"):
        Branding(**options)


def test_values_are_normalised_and_loopback_http_is_allowed() -> None:
    branding = Branding(service_name="  Acme \n Notes ", accent_color="#ABC", logo_url="http://127.0.0.1:8000/logo.png")
    assert branding.service_name == "Acme Notes"
    assert branding.accent_color == "#aabbcc"
    assert branding.logo_origin == "http://127.0.0.1:8000"
    assert (
        Branding(support_url="https://help.acme.example/#contact").support_url == "https://help.acme.example/#contact"
    )


@pytest.mark.parametrize("accent", ["#2054c8", "#0b7a75", "#ffd700", "#00ff00", "#ffffff", "#000000", "#777777"])
def test_any_accent_keeps_aa_contrast(accent: str) -> None:
    branding = Branding(accent_color=accent)
    assert contrast(branding.accent_color, branding.on_accent) >= 4.5
    assert contrast(branding.accent_ink, PAGE_GREY) >= 4.5
    assert contrast(branding.accent_ink, "#ffffff") >= 4.5


def test_text_on_the_accent_is_white_or_black_whichever_reads_better() -> None:
    assert text_on("#2054c8") == "#ffffff"
    assert text_on("#ffd700") == "#000000"
    assert darken_to("#2054c8") == "#2054c8"  # dark enough already
    assert contrast(darken_to("#ffd700"), "#ffffff") >= 4.5


def test_a_server_takes_branding_and_defaults_to_the_issuers_host(tmp_path: Path) -> None:
    assert make_server(tmp_path, branding=BRAND).branding is BRAND
    assert make_server(tmp_path).branding == Branding()


def test_an_mcp_server_names_the_service_unless_the_branding_does(tmp_path: Path) -> None:
    auth = make_server(tmp_path, issuer="https://notes.example.com")
    MCPServer("Notes", auth=auth, resource_url="https://notes.example.com/mcp")
    assert auth.branding.service_name == "Notes"
    named = AuthorizationServer("https://notes.example.com", store=auth.store, branding=BRAND)
    MCPServer("Notes", auth=named, resource_url="https://notes.example.com/mcp")
    assert named.branding.service_name == "Acme Notes"
    unnamed = AuthorizationServer("https://notes.example.com", store=auth.store)
    MCPServer("x" * 200, auth=unnamed, resource_url="https://notes.example.com/mcp")
    assert unnamed.branding.service_name is None  # too long for the pages: the issuer's host instead


def assert_branded(response: httpx2.Response) -> None:
    """The page names the service, shows the logo and support link, and its CSP allows exactly that."""
    assert '<header class="brand"><img src="https://cdn.acme.example/brand/logo.svg" alt=""><span>Acme Notes' in (
        response.text
    )
    assert '<a href="mailto:help@acme.example">' in response.text
    assert "--accent:#0b7a75" in response.text
    policy = response.headers["content-security-policy"]
    assert "img-src https://cdn.acme.example;" in policy + ";"
    assert "script-src" not in policy
    assert "unsafe-inline" not in policy
    assert "default-src 'none'" in policy
    style = re.search(r"<style>(.*?)</style>", response.text, re.DOTALL)
    assert style is not None
    digest = base64.b64encode(hashlib.sha256(style.group(1).encode()).digest()).decode()
    assert f"style-src 'sha256-{digest}'" in policy


async def test_branding_is_on_every_page(tmp_path: Path) -> None:
    async with browsing(tmp_path, branding=BRAND) as (b, _):
        login = await b.authorize(**request_params(LOOPBACK))
        assert "Sign in to Acme Notes" in page_text(login)
        consent = await b.sign_in(login)
        assert "use your Acme Notes account" in page_text(consent)
        await b.approve(consent, remember=True)
        consents = await b.http.get(b.base + "/consents")
        refused = await b.authorize(**request_params("https://evil.example/callback"))
        expired = await b.submit(consent, decision="approve")
        async with httpx2.AsyncClient() as http:
            signed_out = await http.get(b.base + "/consents")
        for response in (login, consent, consents, refused, expired, signed_out):
            assert_branded(response)
        assert "Acme Notes" in page_text(refused)


async def test_without_branding_the_pages_name_the_issuers_host_and_allow_no_image(tmp_path: Path) -> None:
    async with browsing(tmp_path) as (b, _):
        login = await b.authorize(**request_params(LOOPBACK))
    assert "Sign in to 127.0.0.1" in page_text(login)
    assert "<img" not in login.text
    assert "<footer>" not in login.text
    assert "img-src" not in login.headers["content-security-policy"]


async def test_a_service_name_with_markup_is_escaped(tmp_path: Path) -> None:
    nasty = Branding(service_name='<script>alert("x")</script> & Co')
    async with browsing(tmp_path, branding=nasty) as (b, _):
        login = await b.authorize(**request_params(LOOPBACK))
    assert "<script" not in login.text
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; Co" in login.text


async def test_consents_without_a_session_signs_in_and_comes_back(tmp_path: Path) -> None:
    async with browsing(tmp_path) as (b, _):
        offer = await b.http.get(b.base + "/consents")
        assert offer.status_code == 403
        assert 'href="/consents/sign-in"' in offer.text
        login = await b.http.get(b.base + "/consents/sign-in")
        assert login.status_code == 200
        assert "to see the applications you allowed" in page_text(login)
        done = await b.submit(login, username="bob", password="bob-secret-pw")
        assert done.status_code == 303
        assert done.headers["location"] == "/consents"
        listed = await b.follow(done)
        assert listed.status_code == 200
        assert "Signed in as Bob" in page_text(listed)
        again = await b.http.get(b.base + "/consents/sign-in")
        assert (again.status_code, again.headers["location"]) == (303, "/consents")


async def test_an_account_sign_in_can_never_become_an_authorization(tmp_path: Path) -> None:
    async with browsing(tmp_path) as (b, server):
        login = await b.http.get(b.base + "/consents/sign-in")
        fields = only_form(login).fields
        # Its flow posted to the consent step (approve), or shown as a consent page: refused.
        answer = await b.http.post(b.base + "/authorize/consent", data={**fields, "decision": "approve"})
        shown = await b.http.get(b.base + "/authorize/consent", params={"flow": fields["flow"]})
        switched = await b.http.post(b.base + "/authorize/switch", data=fields)
        for response in (answer, shown, switched):
            assert response.status_code == 400
            assert "location" not in response.headers
        assert await server.grants.by_user("alice") == []


async def test_not_you_needs_the_flows_csrf_token(tmp_path: Path) -> None:
    async with browsing(tmp_path) as (b, _):
        consent = await b.sign_in(await b.authorize(**request_params(LOOPBACK)))
        switch = next(form for form in parse_page(consent.text).forms if form.action.endswith("/authorize/switch"))
        refused = await b.submit(consent, switch, csrf="wrong")
        assert refused.status_code == 403
        assert "bastion-session" in b.http.cookies
        switched = await b.submit(consent, switch)
        assert switched.status_code == 303
        assert "bastion-session" not in b.http.cookies
        login = await b.follow(switched)
        assert "password" in only_form(login).fields
        consent = await Browser.sign_in(b, login, "bob")
        assert "Signed in as Bob" in page_text(consent)
