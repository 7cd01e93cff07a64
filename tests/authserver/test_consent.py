"""The consent page and remembered consents: what the user sees, deny, remember, more scopes, withdrawal."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import httpx2
import pytest

from bastion import TokenInactive
from bastion.authserver import AuthorizationServer, Client
from bastion.authserver._browser.consent import consents, withdraw_consent

from support.authserver import CONFIDENTIAL_CLIENT, PUBLIC_CLIENT, pkce_pair
from support.pages import Browser, browsing, callback_query, only_form, page_text, request_params

LOOPBACK = "http://127.0.0.1:40000/callback"
WEB = "https://app.example.com/callback"
URL_CLIENT = Client(
    client_id="https://tool.example.net/oauth/client.json",
    client_name="Hosted Tool",
    redirect_uris=("https://tool.example.net/callback",),
    kind="metadata_document",
)
NASTY_CLIENT = Client(
    client_id="nasty",
    client_name='<script>alert("x")</script> & co',
    redirect_uris=("https://nasty.example/cb",),
)
CLIENTS = [PUBLIC_CLIENT, CONFIDENTIAL_CLIENT, URL_CLIENT, NASTY_CLIENT]


def browser(tmp_path: Path, **options: Any) -> AbstractAsyncContextManager[tuple[Browser, AuthorizationServer]]:
    """A served authorization server with this file's clients, and a browser for it."""
    options.setdefault("clients", CLIENTS)
    return browsing(tmp_path, **options)


async def consent_page(b: Browser, **params: Any) -> httpx2.Response:
    """The consent page of a fresh request, signing in as alice when the browser is not yet."""
    page = await b.authorize(**params)
    if "password" in only_form(page).fields:
        page = await b.sign_in(page)
    assert page.status_code == 200, page.text
    return page


async def test_the_consent_page_names_the_client_host_scopes_and_warns_for_a_local_app(tmp_path: Path) -> None:
    async with browser(tmp_path) as (b, _):
        page = await consent_page(b, **request_params(LOOPBACK, scope="notes:read notes:write offline_access"))
    text = page_text(page)
    assert "Allow Test Public Client to access your account?" in text
    assert "Signed in as Alice Liddell" in text
    assert "Read your notes notes:read" in text
    assert "Change your notes notes:write" in text
    assert "Stay signed in It can keep using your account after you close this page" in text
    assert "offline_access" in text
    assert "refresh tokens" not in text
    assert "sent back to 127.0.0.1" in text
    assert "This application runs on your own computer" in text
    assert b.base + "/mcp" in text
    form = only_form(page)
    assert {name for name, _ in form.buttons} == {"decision"}
    assert {value for _, value in form.buttons} == {"approve", "deny"}
    assert "remember" in form.checkboxes
    assert '<label for="remember"' in page.text


async def test_a_web_client_has_no_local_warning_and_a_url_client_id_is_shown(tmp_path: Path) -> None:
    async with browser(tmp_path) as (b, _):
        web = page_text(await consent_page(b, **request_params(WEB, client_id="confidential-client")))
        url = page_text(
            await consent_page(b, **request_params("https://tool.example.net/callback", client_id=URL_CLIENT.client_id))
        )
    assert "Test Web Client" in web
    assert "sent back to app.example.com" in web
    assert "own computer" not in web
    assert "Hosted Tool" in url
    assert URL_CLIENT.client_id in url
    assert "sent back to tool.example.net" in url


async def test_everything_shown_is_escaped(tmp_path: Path) -> None:
    async with browser(tmp_path) as (b, _):
        login = await b.authorize(**request_params("https://nasty.example/cb", client_id="nasty"))
        page = await b.sign_in(login)
    for response in (login, page):
        assert "<script>" not in response.text
        assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; co" in response.text
    assert '<script>alert("x")</script> & co' in page_text(page)


async def test_deny_redirects_with_access_denied_state_and_iss(tmp_path: Path) -> None:
    async with browser(tmp_path) as (b, server):
        page = await consent_page(b, **request_params(LOOPBACK))
        denied = await b.submit(page, decision="deny")
    assert denied.status_code == 303
    assert denied.headers["location"].startswith(LOOPBACK + "?")
    query = callback_query(denied)
    assert query["error"] == "access_denied"
    assert query["state"] == "xyz-state"
    assert query["iss"] == server.require_issuer()
    assert "code" not in query


async def test_an_unknown_decision_changes_nothing(tmp_path: Path) -> None:
    async with browser(tmp_path) as (b, _):
        page = await consent_page(b, **request_params(LOOPBACK))
        odd = await b.submit(page, decision="maybe")
        approved = await b.approve(page)
    assert odd.status_code == 400
    assert "location" not in odd.headers
    assert "code" in callback_query(approved)


async def test_a_remembered_consent_skips_the_page_until_more_scopes_are_asked(tmp_path: Path) -> None:
    async with browser(tmp_path) as (b, _):
        first = await b.approve(await consent_page(b, **request_params(LOOPBACK)), remember=True)
        assert "code" in callback_query(first)
        again = await b.authorize(**request_params("http://127.0.0.1:40001/callback", state="second"))
        assert again.status_code == 302
        assert callback_query(again)["state"] == "second"
        assert "code" in callback_query(again)
        more = await b.authorize(**request_params(LOOPBACK, scope="notes:read notes:write"))
        assert "Change your notes" in page_text(more)
        assert "code" in callback_query(await b.approve(more, remember=True))
        fewer = await b.authorize(**request_params(LOOPBACK, scope="notes:write"))
        assert "code" in callback_query(fewer)
        forced = await b.authorize(**request_params(LOOPBACK, prompt="consent"))
        assert "Allow Test Public Client" in page_text(forced)


async def test_without_remember_the_page_is_shown_every_time(tmp_path: Path) -> None:
    async with browser(tmp_path) as (b, _):
        await b.approve(await consent_page(b, **request_params(LOOPBACK)))
        again = await b.authorize(**request_params(LOOPBACK))
        silent = await b.authorize(**request_params(LOOPBACK, prompt="none"))
    assert again.status_code == 200
    assert "Allow Test Public Client" in page_text(again)
    assert callback_query(silent)["error"] == "consent_required"


async def test_a_remembered_consent_is_per_user_and_per_client(tmp_path: Path) -> None:
    async with browser(tmp_path) as (b, server):
        await b.approve(await consent_page(b, **request_params(LOOPBACK)), remember=True)
        other_client = await b.authorize(**request_params(WEB, client_id="confidential-client"))
        assert "Allow Test Web Client" in page_text(other_client)
        async with httpx2.AsyncClient() as http:
            bob = Browser(http, b.base)
            page = await bob.sign_in(await bob.authorize(**request_params(LOOPBACK)), "bob")
            assert "Signed in as Bob" in page_text(page)
        remembered = await consents(server, "alice")
        assert [c.client_id for c in remembered] == ["public-client"]
        assert remembered[0].scopes == ("notes:read",)
        assert await consents(server, "bob") == []


async def test_withdrawing_consent_asks_again_and_revokes_the_clients_tokens(tmp_path: Path) -> None:
    verifier, challenge = pkce_pair()
    async with browser(tmp_path) as (b, server):
        page = await consent_page(b, **request_params(LOOPBACK, code_challenge=challenge))
        code = callback_query(await b.approve(page, remember=True))["code"]
        tokens = await b.http.post(
            b.base + "/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": LOOPBACK,
                "client_id": "public-client",
                "code_verifier": verifier,
            },
        )
        assert tokens.status_code == 200, tokens.text
        access, refresh = tokens.json()["access_token"], tokens.json()["refresh_token"]
        assert (await server.verifier.verify(access)).subject == "alice"

        assert await withdraw_consent(server, "alice", "public-client")
        assert await consents(server, "alice") == []
        again = await b.authorize(**request_params(LOOPBACK))
        assert "Allow Test Public Client" in page_text(again)
        refreshed = await b.http.post(
            b.base + "/token",
            data={"grant_type": "refresh_token", "refresh_token": refresh, "client_id": "public-client"},
        )
        assert refreshed.status_code == 400
        assert refreshed.json()["error"] == "invalid_grant"
        with pytest.raises(TokenInactive):
            await server.verifier.verify(access)
    assert not await withdraw_consent(server, "alice", "confidential-client")
