"""The page of the applications a user allowed: listing, withdrawing access, CSRF, sign out, escaping, headers."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2
import pytest

from bastion import TokenInactive
from bastion.authserver import AuthorizationServer, Client
from bastion.authserver._browser.consent import consents
from bastion.authserver._browser.layout import plain_look
from bastion.authserver._browser.pages import ConsentView, consent_page

from support.authserver import PUBLIC_CLIENT, pkce_pair
from support.pages import Browser, Form, browsing, callback_query, only_form, page_text, parse_page, request_params

LOOPBACK = "http://127.0.0.1:40000/callback"
NOTES_WEB = Client(
    client_id="notes-web",
    client_name="Notes Web",
    redirect_uris=("https://notes.example/callback",),
)
NASTY_CLIENT = Client(
    client_id="nasty",
    client_name='<script>alert("x")</script> & co',
    redirect_uris=("https://nasty.example/cb",),
)
CLIENTS = [PUBLIC_CLIENT, NOTES_WEB, NASTY_CLIENT]
FRAMING = {"x-frame-options": "DENY", "cache-control": "no-store"}


@dataclass
class Tokens:
    """What the token endpoint gave a client."""

    client_id: str
    access: str
    refresh: str


def served(tmp_path: Path, **options: Any) -> AbstractAsyncContextManager[tuple[Browser, AuthorizationServer]]:
    """A served authorization server with this file's clients, and a browser for it."""
    options.setdefault("clients", CLIENTS)
    return browsing(tmp_path, **options)


async def allow(
    b: Browser, client_id: str, redirect_uri: str, scope: str = "notes:read", *, user: str = "alice"
) -> Tokens:
    """Authorize ``client_id`` (signing in as ``user`` when needed), remember the consent, redeem the code."""
    verifier, challenge = pkce_pair()
    params = request_params(redirect_uri, client_id=client_id, scope=scope, code_challenge=challenge)
    page = await b.authorize(**params)
    if "password" in only_form(page).fields:
        page = await b.sign_in(page, user)
    code = callback_query(await b.approve(page, remember=True))["code"]
    response = await b.http.post(
        b.base + "/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "client_id": client_id,
            "code_verifier": verifier,
        },
    )
    assert response.status_code == 200, response.text
    return Tokens(client_id, response.json()["access_token"], response.json()["refresh_token"])


async def refresh(b: Browser, tokens: Tokens) -> httpx2.Response:
    """Use the client's refresh token at /token."""
    data = {"grant_type": "refresh_token", "refresh_token": tokens.refresh, "client_id": tokens.client_id}
    return await b.http.post(b.base + "/token", data=data)


async def consents_page(b: Browser) -> httpx2.Response:
    """GET /consents."""
    return await b.http.get(b.base + "/consents")


def withdraw_form(page: httpx2.Response, client_id: str) -> Form:
    """The "Withdraw access" form of ``client_id``."""
    forms = [form for form in parse_page(page.text).forms if form.fields.get("client_id") == client_id]
    assert len(forms) == 1, page.text
    return forms[0]


def sign_out_form(page: httpx2.Response) -> Form:
    """The "Sign out" form."""
    forms = [form for form in parse_page(page.text).forms if form.action.endswith("/consents/sign-out")]
    assert len(forms) == 1, page.text
    return forms[0]


def assert_page_headers(response: httpx2.Response) -> None:
    """The headers every page carries: no framing, no caching, no scripts."""
    for name, value in FRAMING.items():
        assert response.headers[name] == value, name
    policy = response.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in policy
    assert "script-src" not in policy
    assert "default-src 'none'" in policy


async def test_the_page_lists_each_allowed_application_with_its_scopes_resources_and_date(tmp_path: Path) -> None:
    async with served(tmp_path) as (b, server):
        await allow(b, "public-client", LOOPBACK)
        await allow(b, "notes-web", "https://notes.example/callback", "notes:read notes:write")
        page = await consents_page(b)
        remembered = await consents(server, "alice")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert_page_headers(page)
    text = page_text(page)
    assert "Applications you allowed" in text
    assert "Signed in as Alice Liddell" in text
    assert "Test Public Client" in text
    assert "Notes Web" in text
    assert "Read your notes notes:read" in text
    assert "Change your notes notes:write" in text
    assert text.count(b.base + "/mcp") == 2
    for consent in remembered:
        shown = datetime.fromtimestamp(consent.granted_at, UTC).strftime("%d %B %Y, %H:%M UTC")
        assert f"Allowed on {shown}" in text
    forms = parse_page(page.text).forms
    assert [form.fields.get("client_id") for form in forms] == [None, "notes-web", "public-client"]
    assert all(form.method == "post" and form.fields["csrf"] for form in forms)
    assert "Withdraw access</button>" in page.text
    assert 'aria-label="Withdraw access for Notes Web"' in page.text
    assert "Sign out</button>" in page.text
    assert "<h1>Applications you allowed</h1>" in page.text
    assert "<script" not in page.text


async def test_withdrawing_one_application_revokes_its_tokens_and_keeps_the_other(tmp_path: Path) -> None:
    async with served(tmp_path) as (b, server):
        public = await allow(b, "public-client", LOOPBACK)
        web = await allow(b, "notes-web", "https://notes.example/callback")
        page = await consents_page(b)
        done = await b.submit(page, withdraw_form(page, "notes-web"))
        assert done.status_code == 303
        assert done.headers["location"].startswith("/consents?")
        assert_page_headers(done)
        after = await b.follow(done)
        assert after.status_code == 200
        text = page_text(after)
        assert "You withdrew the access of Notes Web." in text
        assert "Test Public Client" in text
        assert [form.fields.get("client_id") for form in parse_page(after.text).forms] == [None, "public-client"]
        assert [c.client_id for c in await consents(server, "alice")] == ["public-client"]

        refused = await refresh(b, web)
        assert refused.status_code == 400
        assert refused.json()["error"] == "invalid_grant"
        with pytest.raises(TokenInactive):
            await server.verifier.verify(web.access)

        assert (await server.verifier.verify(public.access)).subject == "alice"
        still = await refresh(b, public)
        assert still.status_code == 200, still.text
        again = await b.authorize(**request_params("https://notes.example/callback", client_id="notes-web"))
        assert "Allow Notes Web to access your account?" in page_text(again)
        reloaded = await consents_page(b)
    assert "You withdrew" not in page_text(reloaded)


async def test_a_missing_or_wrong_csrf_token_is_refused_and_nothing_is_withdrawn(tmp_path: Path) -> None:
    async with served(tmp_path) as (b, server):
        tokens = await allow(b, "public-client", LOOPBACK)
        page = await consents_page(b)
        form = withdraw_form(page, "public-client")
        target = b.base + form.action
        missing = await b.http.post(target, data={"client_id": "public-client"})
        empty = await b.http.post(target, data={"client_id": "public-client", "csrf": ""})
        wrong = await b.http.post(target, data={"client_id": "public-client", "csrf": form.fields["csrf"][:-2] + "xx"})
        sign_out = await b.http.post(b.base + sign_out_form(page).action, data={"csrf": "nope"})
        for response in (missing, empty, wrong, sign_out):
            assert response.status_code == 403
            assert "security token is missing or wrong" in page_text(response)
            assert "location" not in response.headers
            assert_page_headers(response)
        assert [c.client_id for c in await consents(server, "alice")] == ["public-client"]
        assert (await refresh(b, tokens)).status_code == 200
        assert (await consents_page(b)).status_code == 200


async def test_another_users_session_cannot_withdraw_alices_consent(tmp_path: Path) -> None:
    async with served(tmp_path) as (alice, server):
        tokens = await allow(alice, "public-client", LOOPBACK)
        alices_form = withdraw_form(await consents_page(alice), "public-client")
        async with httpx2.AsyncClient() as http:
            bob = Browser(http, alice.base)
            await allow(bob, "notes-web", "https://notes.example/callback", user="bob")
            bobs_page = await consents_page(bob)
            assert "Signed in as Bob" in page_text(bobs_page)
            assert "Test Public Client" not in page_text(bobs_page)
            bobs_csrf = withdraw_form(bobs_page, "notes-web").fields["csrf"]
            target = alice.base + alices_form.action
            with_alices_token = await http.post(target, data=alices_form.fields)
            with_his_token = await http.post(target, data={"client_id": "public-client", "csrf": bobs_csrf})
        assert with_alices_token.status_code == 403
        assert with_his_token.status_code == 303
        assert "withdrawn" not in with_his_token.headers["location"]
        assert [c.client_id for c in await consents(server, "alice")] == ["public-client"]
        assert [c.client_id for c in await consents(server, "bob")] == ["notes-web"]
        assert (await refresh(alice, tokens)).status_code == 200


async def test_without_a_session_the_page_says_not_signed_in(tmp_path: Path) -> None:
    async with served(tmp_path) as (b, server):
        tokens = await allow(b, "public-client", LOOPBACK)
        csrf = withdraw_form(await consents_page(b), "public-client").fields["csrf"]
        async with httpx2.AsyncClient() as stranger:
            shown = await stranger.get(b.base + "/consents")
            posted = await stranger.post(
                b.base + "/consents/withdraw", data={"client_id": "public-client", "csrf": csrf}
            )
        for response in (shown, posted):
            assert response.status_code == 403
            assert "You are not signed in" in page_text(response)
            assert not parse_page(response.text).forms
            assert '<a class="button primary" href="/consents/sign-in">Sign in</a>' in response.text
            assert_page_headers(response)
        assert [c.client_id for c in await consents(server, "alice")] == ["public-client"]
        assert (await refresh(b, tokens)).status_code == 200


async def test_signing_out_ends_this_browsers_session_only(tmp_path: Path) -> None:
    async with served(tmp_path) as (b, server):
        await allow(b, "public-client", LOOPBACK)
        session_cookie = b.http.cookies["bastion-session"]
        async with httpx2.AsyncClient() as http:
            other = Browser(http, b.base)
            await other.sign_in(await other.authorize(**request_params(LOOPBACK)))
            page = await consents_page(b)
            out = await b.submit(page, sign_out_form(page))
            assert out.status_code == 303
            assert out.headers["location"] == "/consents"
            assert "bastion-session" not in b.http.cookies
            after = await b.follow(out)
            assert after.status_code == 403
            assert "You are not signed in" in page_text(after)
            async with httpx2.AsyncClient(cookies={"bastion-session": session_cookie}) as replay:
                assert (await replay.get(b.base + "/consents")).status_code == 403
            assert (await consents_page(other)).status_code == 200
        login = await b.authorize(**request_params(LOOPBACK))
        assert "password" in only_form(login).fields
        assert [c.client_id for c in await consents(server, "alice")] == ["public-client"]


async def test_a_client_name_with_markup_is_escaped(tmp_path: Path) -> None:
    async with served(tmp_path) as (b, _):
        await allow(b, "nasty", "https://nasty.example/cb")
        page = await consents_page(b)
        done = await b.follow(await b.submit(page, withdraw_form(page, "nasty")))
    escaped = "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; co"
    for response in (page, done):
        assert "<script>" not in response.text
        assert escaped in response.text
    assert '<script>alert("x")</script> & co' in page_text(page)
    assert 'You withdrew the access of <script>alert("x")</script> & co.' in page_text(done)


async def test_a_client_that_no_longer_resolves_is_shown_by_its_id_and_can_be_withdrawn(tmp_path: Path) -> None:
    gone = Client(client_id="registered-then-gone", client_name="Gone App", redirect_uris=("https://gone.example/cb",))
    async with served(tmp_path) as (b, server):
        await server.clients.save(gone)
        await allow(b, gone.client_id, "https://gone.example/cb")
        assert "Gone App" in page_text(await consents_page(b))
        await server.clients.delete(gone.client_id)
        page = await consents_page(b)
        assert "Gone App" not in page_text(page)
        assert "registered-then-gone" in page_text(page)
        done = await b.follow(await b.submit(page, withdraw_form(page, gone.client_id)))
        assert "You withdrew the access of registered-then-gone." in page_text(done)
        assert await consents(server, "alice") == []


async def test_a_confirmation_cannot_be_forged_by_a_link(tmp_path: Path) -> None:
    async with served(tmp_path) as (b, _):
        await allow(b, "public-client", LOOPBACK)
        forged = await b.http.get(b.base + "/consents?withdrawn=public-client&mark=AAAA")
        repeated = await b.http.get(b.base + "/consents?withdrawn=a&withdrawn=b")
    for response in (forged, repeated):
        assert response.status_code == 200
        assert "You withdrew" not in page_text(response)
        assert "Test Public Client" in page_text(response)


async def test_an_application_allowed_without_remember_is_listed_and_can_be_withdrawn(tmp_path: Path) -> None:
    async with served(tmp_path) as (b, _):
        verifier, challenge = pkce_pair()
        consent = await b.sign_in(await b.authorize(**request_params(LOOPBACK, code_challenge=challenge)), "bob")
        code = callback_query(await b.approve(consent))["code"]
        issued = await b.http.post(
            b.base + "/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": LOOPBACK,
                "client_id": "public-client",
                "code_verifier": verifier,
            },
        )
        assert issued.status_code == 200, issued.text
        tokens = Tokens("public-client", issued.json()["access_token"], issued.json()["refresh_token"])
        page = await consents_page(b)
        assert page.status_code == 200
        assert "Test Public Client" in page_text(page)
        assert "without asking to remember" in page_text(page)
        done = await b.submit(page, withdraw_form(page, "public-client"))
        assert done.status_code == 303
        assert (await refresh(b, tokens)).json()["error"] == "invalid_grant"
        after = await consents_page(b)
    assert "You have not allowed any application" in page_text(after)
    assert [form.action for form in parse_page(after.text).forms] == ["/consents/sign-out"]


async def test_withdrawing_an_application_without_consent_changes_nothing_and_confirms_nothing(tmp_path: Path) -> None:
    async with served(tmp_path) as (b, server):
        await allow(b, "public-client", LOOPBACK)
        page = await consents_page(b)
        csrf = withdraw_form(page, "public-client").fields["csrf"]
        other = await b.http.post(b.base + "/consents/withdraw", data={"client_id": "notes-web", "csrf": csrf})
        blank = await b.http.post(b.base + "/consents/withdraw", data={"client_id": "", "csrf": csrf})
        repeated = await b.http.post(
            b.base + "/consents/withdraw", data={"client_id": ["public-client", "x"], "csrf": csrf}
        )
        assert other.status_code == 303
        assert other.headers["location"] == "/consents"
        assert blank.status_code == 400
        assert repeated.status_code == 400
        assert_page_headers(repeated)
        assert [c.client_id for c in await consents(server, "alice")] == ["public-client"]


def test_the_consent_page_says_where_a_remembered_consent_can_be_withdrawn() -> None:
    view = ConsentView(
        action="/authorize/consent",
        flow_id="f",
        csrf="c",
        client_name="App",
        client_url=None,
        redirect_host="app.example",
        user_name="Alice",
        scopes=[],
        resource="https://rs.example/mcp",
        localhost_only=False,
        consents_url="/consents",
    )
    with_link = consent_page(plain_look(), view)
    assert 'You can withdraw this later on <a href="/consents">' in with_link
    assert "You can withdraw this later" not in consent_page(plain_look(), replace(view, consents_url=None))
