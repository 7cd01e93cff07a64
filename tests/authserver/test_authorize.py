"""The authorization endpoint over real HTTP: checks, error pages and redirects, login, CSRF, flows, sessions."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

import httpx2
import pytest
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from bastion import ConfigurationError
from bastion.authserver import AuthorizationServer, Client, User
from bastion.authserver._browser.flows import Flow, FlowRefused
from bastion.authserver._browser.login import LoginStep, signed_in
from bastion.storage import MemoryStore, SQLiteStore

from support.authserver import CONFIDENTIAL_CLIENT, PUBLIC_CLIENT, make_server, pkce_pair
from support.clock import FakeClock
from support.pages import Browser, browsing, callback_query, only_form, page_text, parse_page, request_params

LOOPBACK = "http://127.0.0.1:49152/callback"
WEB = "https://app.example.com/callback"
QUERY_CLIENT = Client(
    client_id="query-client",
    client_name="Query Client",
    redirect_uris=("https://app.example.com/cb?tenant=7",),
)
TWO_URIS_CLIENT = Client(
    client_id="two-uris",
    redirect_uris=("https://app.example.com/one", "https://app.example.com/two"),
)
NO_CODE_CLIENT = Client(
    client_id="machine",
    redirect_uris=(WEB,),
    token_endpoint_auth_method="client_secret_basic",
    grant_types=("client_credentials",),
    client_secret_hash="0" * 64,
)
CLIENTS = [PUBLIC_CLIENT, CONFIDENTIAL_CLIENT, QUERY_CLIENT, TWO_URIS_CLIENT, NO_CODE_CLIENT]


def browser(tmp_path: Path, **options: Any) -> AbstractAsyncContextManager[tuple[Browser, AuthorizationServer]]:
    """A served authorization server with this file's clients, and a browser for it."""
    options.setdefault("clients", CLIENTS)
    return browsing(tmp_path, **options)


async def redeem(b: Browser, code: str, verifier: str, redirect_uri: str = LOOPBACK) -> httpx2.Response:
    """Exchange a code at the token endpoint as the public client."""
    return await b.http.post(
        b.base + "/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "client_id": "public-client",
            "code_verifier": verifier,
        },
    )


async def test_code_flow_for_a_loopback_client_on_any_port(tmp_path: Path) -> None:
    verifier, challenge = pkce_pair()
    async with browser(tmp_path) as (b, server):
        login = await b.authorize(**request_params(LOOPBACK, code_challenge=challenge))
        assert login.status_code == 200
        assert only_form(login).fields.keys() >= {"flow", "csrf", "username", "password"}
        consent = await b.sign_in(login)
        assert consent.status_code == 200
        back = await b.approve(consent)
        assert back.status_code == 303
        assert back.headers["location"].startswith(LOOPBACK + "?")
        query = callback_query(back)
        assert query.keys() == {"code", "state", "iss"}
        assert query["state"] == "xyz-state"
        assert query["iss"] == server.require_issuer() == b.base + "/"
        tokens = await redeem(b, query["code"], verifier)
        assert tokens.status_code == 200, tokens.text
        assert tokens.json()["token_type"].lower() == "bearer"
        claims = await server.verifier.verify(tokens.json()["access_token"])
        assert claims.subject == "alice"
        assert claims.scopes == ["notes:read"]


async def test_state_is_echoed_exactly_and_omitted_when_not_sent(tmp_path: Path) -> None:
    state = "a b&c=d/é%20+?#"
    async with browser(tmp_path, auto_approve="alice") as (b, _):
        sent = callback_query(await b.authorize(**request_params(LOOPBACK, state=state)))
        none = callback_query(await b.authorize(**request_params(LOOPBACK, state=None)))
    assert sent["state"] == state
    assert "state" not in none
    assert "code" in none


async def test_the_redirect_uri_keeps_its_own_query(tmp_path: Path) -> None:
    registered = QUERY_CLIENT.redirect_uris[0]
    async with browser(tmp_path, auto_approve="alice") as (b, _):
        ok = await b.authorize(**request_params(registered, client_id="query-client"))
        bad = await b.authorize(**request_params(registered, client_id="query-client", response_type="token"))
    for response in (ok, bad):
        assert response.headers["location"].startswith(registered + "&")
    assert callback_query(ok)["tenant"] == "7"
    assert callback_query(bad)["error"] == "unsupported_response_type"


async def test_a_single_registered_redirect_uri_may_be_omitted(tmp_path: Path) -> None:
    async with browser(tmp_path, auto_approve="alice") as (b, _):
        response = await b.authorize(**request_params(None, client_id="confidential-client"))
    assert response.headers["location"].startswith(WEB + "?code=")


@pytest.mark.parametrize(
    ("client_id", "redirect_uri"),
    [
        (None, LOOPBACK),
        ("unknown-client", LOOPBACK),
        (["public-client", "public-client"], LOOPBACK),
        ("x" * 9000, LOOPBACK),
        ("two-uris", None),
        ("public-client", ["http://127.0.0.1:1/callback", "http://127.0.0.1:2/callback"]),
        ("public-client", "http://127.0.0.1:5000/other"),
        ("public-client", "http://127.0.0.1:5000/callback/"),
        ("public-client", "http://localhost:5000/callback"),
        ("public-client", "https://127.0.0.1:5000/callback"),
        ("public-client", "http://127.0.0.1:5000/callback#frag"),
        ("public-client", "http://evil@127.0.0.1:5000/callback"),
        ("confidential-client", WEB + "/"),
        ("confidential-client", "https://APP.example.com/callback"),
        ("confidential-client", "https://app.example.com/Callback"),
        ("confidential-client", WEB + "?extra=1"),
        ("confidential-client", "https://user:pw@app.example.com/callback"),
        ("confidential-client", WEB + "#fragment"),
        ("confidential-client", "https://app.example.com:8443/callback"),
        ("confidential-client", "http://app.example.com/callback"),
        ("confidential-client", "https://evil.example/callback"),
        ("confidential-client", "https://app.example.com/callback" + "a" * 9000),
        ("confidential-client", "javascript:alert(1)"),
    ],
)
async def test_an_unverified_client_or_redirect_uri_is_a_page_never_a_redirect(
    tmp_path: Path, client_id: Any, redirect_uri: Any
) -> None:
    async with browser(tmp_path) as (b, _):
        params = request_params(redirect_uri, client_id=client_id)
        response = await b.authorize(**params)
    assert response.status_code == 400
    assert "location" not in response.headers
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["x-frame-options"] == "DENY"
    text = page_text(response)
    assert "The app that sent you here is not set up correctly" in text
    assert "Close this page and go back to the app" in text
    assert "Technical details invalid_request:" in text


CHALLENGE = pkce_pair()[1]


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"response_type": None}, "invalid_request"),
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"response_type": "code id_token"}, "unsupported_response_type"),
        ({"response_type": ["code", "code"]}, "invalid_request"),
        ({"code_challenge": None}, "invalid_request"),
        ({"code_challenge": None, "code_challenge_method": None}, "invalid_request"),
        ({"code_challenge_method": None}, "invalid_request"),
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge_method": "plain", "code_challenge": "a" * 43}, "invalid_request"),
        ({"code_challenge_method": "s256"}, "invalid_request"),
        ({"code_challenge_method": ["S256", "plain"]}, "invalid_request"),
        ({"code_challenge": CHALLENGE[:-1]}, "invalid_request"),
        ({"code_challenge": CHALLENGE + "A"}, "invalid_request"),
        ({"code_challenge": CHALLENGE[:-1] + "="}, "invalid_request"),
        ({"code_challenge": ["a" * 43, "b" * 43]}, "invalid_request"),
        ({"code_challenge": "a" * 9000}, "invalid_request"),
        ({"scope": "notes:delete"}, "invalid_scope"),
        ({"scope": "notes:read " + "x" * 9000}, "invalid_request"),
        ({"scope": ["notes:read", "notes:write"]}, "invalid_request"),
        ({"resource": "https://elsewhere.example/mcp"}, "invalid_target"),
        ({"resource": "https://elsewhere.example/mcp#frag"}, "invalid_target"),
        ({"resource": "not a url"}, "invalid_target"),
        ({"prompt": "none"}, "login_required"),
        ({"prompt": "none login"}, "invalid_request"),
        ({"prompt": ["login", "consent"]}, "invalid_request"),
    ],
)
async def test_errors_after_the_redirect_uri_is_verified_go_back_with_state_and_iss(
    tmp_path: Path, overrides: dict[str, Any], error: str
) -> None:
    async with browser(tmp_path) as (b, server):
        response = await b.authorize(**request_params(LOOPBACK, **overrides))
    assert response.status_code == 302, response.text
    assert response.headers["location"].startswith(LOOPBACK + "?")
    query = callback_query(response)
    assert query["error"] == error
    assert query["error_description"]
    assert query["state"] == "xyz-state"
    assert query["iss"] == server.require_issuer()
    assert "code" not in query


async def test_a_repeated_or_oversized_state_is_an_error_without_state(tmp_path: Path) -> None:
    async with browser(tmp_path) as (b, server):
        repeated = callback_query(await b.authorize(**request_params(LOOPBACK, state=["one", "two"])))
        oversized = callback_query(await b.authorize(**request_params(LOOPBACK, state="s" * 9000)))
    for query in (repeated, oversized):
        assert query["error"] == "invalid_request"
        assert "state" not in query
        assert query["iss"] == server.require_issuer()


async def test_a_client_without_the_code_grant_is_unauthorized(tmp_path: Path) -> None:
    async with browser(tmp_path) as (b, _):
        response = await b.authorize(**request_params(WEB, client_id="machine"))
    assert callback_query(response)["error"] == "unauthorized_client"


async def test_unknown_parameters_are_ignored(tmp_path: Path) -> None:
    async with browser(tmp_path, auto_approve="alice") as (b, _):
        response = await b.authorize(**request_params(LOOPBACK, nonce="n", display="page", prompt="select_account"))
    assert "code" in callback_query(response)


async def test_post_to_the_authorization_endpoint_works_like_get_and_answers_303(tmp_path: Path) -> None:
    async with browser(tmp_path, auto_approve="alice") as (b, _):
        ok = await b.http.post(b.base + "/authorize", data=request_params(LOOPBACK))
        bad = await b.http.post(b.base + "/authorize", data=request_params(LOOPBACK, code_challenge_method="plain"))
        unreadable = await b.http.post(b.base + "/authorize", content=b"{}", headers={"content-type": "text/json"})
    assert ok.status_code == 303
    assert "code" in callback_query(ok)
    assert bad.status_code == 303
    assert callback_query(bad)["error"] == "invalid_request"
    assert unreadable.status_code == 400
    assert "location" not in unreadable.headers


async def test_auto_approve_redirects_straight_back_with_a_code_for_that_user(tmp_path: Path) -> None:
    _, challenge = pkce_pair()
    async with browser(tmp_path, auto_approve=User("alice", name="Alice")) as (b, server):
        response = await b.authorize(**request_params(LOOPBACK, code_challenge=challenge, prompt="none"))
        assert response.status_code == 302
        query = callback_query(response)
        assert query["state"] == "xyz-state"
        assert query["iss"] == server.require_issuer()
        grant = await server.codes.redeem(query["code"], "public-client")
    assert grant.user.subject == "alice"
    assert grant.scopes == ("notes:read",)
    assert grant.redirect_uri == LOOPBACK
    assert grant.redirect_uri_sent


async def test_wrong_password_shows_the_form_again_without_saying_which_part_was_wrong(tmp_path: Path) -> None:
    async with browser(tmp_path) as (b, _):
        login = await b.authorize(**request_params(LOOPBACK))
        answers = [
            await b.submit(login, username="alice", password="wrong"),
            await b.submit(login, username="nobody", password="wrong"),
            await b.submit(login, username="alice", password=""),
            await b.submit(login, username="a" * 5000, password="x"),
            await b.submit(login, username="alice", password="p" * 5000),
        ]
        texts = set()
        for answer in answers:
            assert answer.status_code == 200
            assert "set-cookie" not in answer.headers
            assert "The username or password is incorrect." in page_text(answer)
            texts.add(page_text(answer).replace("nobody", "alice").replace("a" * 256, "alice"))
        assert len(texts) == 1
        consent = await b.sign_in(answers[0])
    assert "Allow" in page_text(consent)


async def test_password_guessing_is_throttled_per_username(tmp_path: Path) -> None:
    now = [1_800_000_000.0]
    async with browser(tmp_path, clock=lambda: now[0]) as (b, _):
        login = await b.authorize(**request_params(LOOPBACK))
        for _ in range(10):
            assert (await b.submit(login, username="alice", password="guess")).status_code == 200
        refused = await b.submit(login, username="alice", password="alice-secret-pw")
        assert refused.status_code == 429
        assert "Too many sign-in attempts" in page_text(refused)
        assert "set-cookie" not in refused.headers
        # Another user is not locked out by guesses at alice's password.
        other = await b.authorize(**request_params(LOOPBACK))
        assert (await b.submit(other, username="bob", password="bob-secret-pw")).status_code in (200, 302, 303)
        now[0] += 301
        fresh = await b.authorize(**request_params(LOOPBACK))
        consent = await b.sign_in(fresh)
    assert "Allow" in page_text(consent)


async def test_a_users_callable_may_be_sync_and_return_a_subject(tmp_path: Path) -> None:
    def users(username: str, password: str) -> str | None:
        return "user-42" if (username, password) == ("carol", "carol-pw") else None

    async with browser(tmp_path, users=users) as (b, server):
        login = await b.authorize(**request_params(LOOPBACK))
        wrong = await b.submit(login, username="carol", password="wrong")
        assert "incorrect" in page_text(wrong)
        answer = await b.submit(wrong, username="carol", password="carol-pw")
        back = await b.approve(await b.follow(answer))
        grant = await server.codes.redeem(callback_query(back)["code"], "public-client")
    assert grant.user.subject == "user-42"


@pytest.mark.parametrize("csrf", [None, "", "forged-token", "x" * 200])
async def test_a_missing_or_forged_csrf_token_is_refused_and_changes_nothing(tmp_path: Path, csrf: str | None) -> None:
    async with browser(tmp_path) as (b, _):
        login = await b.authorize(**request_params(LOOPBACK))
        form = only_form(login)
        fields = {**form.fields, "username": "alice", "password": "alice-secret-pw", "csrf": csrf}
        refused = await b.http.post(b.base + form.action, data={k: v for k, v in fields.items() if v is not None})
        assert refused.status_code == 403
        assert "set-cookie" not in refused.headers
        assert "location" not in refused.headers
        consent = await b.sign_in(login)
        assert consent.status_code == 200
        consent_form = only_form(consent)
        fields = {**consent_form.fields, "decision": "approve", "csrf": csrf}
        refused = await b.http.post(b.base + consent_form.action, data={k: v for k, v in fields.items() if v})
        assert refused.status_code == 403
        assert "location" not in refused.headers
        back = await b.approve(consent)
    assert "code" in callback_query(back)


async def test_a_flow_cannot_be_continued_from_another_browser(tmp_path: Path) -> None:
    async with browser(tmp_path) as (victim, _):
        login = await victim.authorize(**request_params(LOOPBACK))
        async with httpx2.AsyncClient() as other_http:
            attacker = Browser(other_http, victim.base)
            stolen = await attacker.submit(login, username="alice", password="alice-secret-pw")
            assert stolen.status_code == 403
            await attacker.authorize(**request_params(LOOPBACK))  # a browser cookie of its own
            assert (await attacker.submit(login, username="bob", password="bob-secret-pw")).status_code == 403
            consent = await victim.sign_in(login)
            assert (await attacker.approve(consent)).status_code == 403
            flow = only_form(consent).fields["flow"]
            assert (await other_http.get(victim.base + "/authorize/consent", params={"flow": flow})).status_code == 403
        back = await victim.approve(consent)
    assert "code" in callback_query(back)


async def test_a_completed_flow_cannot_be_replayed(tmp_path: Path) -> None:
    async with browser(tmp_path) as (b, _):
        login = await b.authorize(**request_params(LOOPBACK))
        consent = await b.sign_in(login)
        assert "code" in callback_query(await b.approve(consent))
        again = await b.approve(consent)
        deny = await b.submit(consent, decision="deny")
        relogin = await b.submit(login, username="alice", password="alice-secret-pw")
    for response in (again, deny, relogin):
        assert response.status_code == 400
        assert "location" not in response.headers
        assert "expired or was already completed" in page_text(response)


async def test_a_signed_in_browser_goes_straight_to_consent_and_prompt_login_asks_again(tmp_path: Path) -> None:
    async with browser(tmp_path) as (b, _):
        await b.approve(await b.sign_in(await b.authorize(**request_params(LOOPBACK))))
        second = await b.authorize(**request_params(LOOPBACK))
        forced = await b.authorize(**request_params(LOOPBACK, prompt="login"))
        silent = await b.authorize(**request_params(LOOPBACK, prompt="none"))
    assert "Allow Test Public Client" in page_text(second)
    assert "Sign in" in parse_page(forced.text).title
    assert callback_query(silent)["error"] == "consent_required"


async def test_pages_and_redirects_carry_the_security_headers(tmp_path: Path) -> None:
    async with browser(tmp_path) as (b, _):
        error_page = await b.authorize(**request_params(LOOPBACK, client_id="nobody"))
        login = await b.authorize(**request_params(LOOPBACK))
        consent = await b.sign_in(login)
        back = await b.approve(consent)
    for response in (error_page, login, consent, back):
        headers = response.headers
        csp = headers["content-security-policy"]
        assert "default-src 'none'" in csp
        assert "frame-ancestors 'none'" in csp
        assert "base-uri 'none'" in csp
        assert "script-src" not in csp
        assert "form-action" not in csp
        assert headers["x-frame-options"] == "DENY"
        assert headers["cache-control"] == "no-store"
        assert headers["referrer-policy"] == "no-referrer"
        assert headers["x-content-type-options"] == "nosniff"
    assert "<script" not in login.text + consent.text + error_page.text
    assert '<html lang="en">' in login.text
    assert '<label for="username">' in login.text


async def test_cookies_over_http_on_loopback_are_httponly_and_lax(tmp_path: Path) -> None:
    async with browser(tmp_path) as (b, _):
        login = await b.authorize(**request_params(LOOPBACK))
        answer = await b.submit(login, username="alice", password="alice-secret-pw")
    cookies = login.headers.get_list("set-cookie") + answer.headers.get_list("set-cookie")
    assert {c.split("=")[0] for c in cookies} == {"bastion-browser", "bastion-session"}
    for cookie in cookies:
        attributes = {part.strip().lower() for part in cookie.split(";")[1:]}
        assert {"httponly", "path=/", "samesite=lax"} <= attributes
        assert "secure" not in attributes


async def test_cookies_over_https_are_secure_with_the_host_prefix(tmp_path: Path) -> None:
    server = make_server(tmp_path, issuer="https://auth.example.com", clients=CLIENTS)
    server.add_resource("https://auth.example.com/mcp")
    transport = httpx2.ASGITransport(app=server.app())
    async with httpx2.AsyncClient(transport=transport, base_url="https://auth.example.com") as http:
        b = Browser(http, "https://auth.example.com")
        login = await b.authorize(**request_params(WEB, client_id="confidential-client"))
        answer = await b.submit(login, username="alice", password="alice-secret-pw")
        consent = await b.follow(answer)
        back = await b.approve(consent)
    assert "code" in callback_query(back)
    cookies = login.headers.get_list("set-cookie") + answer.headers.get_list("set-cookie")
    assert {c.split("=")[0] for c in cookies} == {"__Host-bastion-browser", "__Host-bastion-session"}
    for cookie in cookies:
        attributes = {part.strip().lower() for part in cookie.split(";")[1:]}
        assert {"httponly", "path=/", "samesite=lax", "secure"} <= attributes
        assert not any(a.startswith("domain") for a in attributes)


async def test_a_server_without_a_login_method_says_so(tmp_path: Path) -> None:
    async with browser(tmp_path, users=None) as (b, _):
        response = await b.authorize(**request_params(LOOPBACK))
        silent = await b.authorize(**request_params(LOOPBACK, prompt="none"))
    assert response.status_code == 400
    assert "no way to sign users in" in page_text(response)
    assert callback_query(silent)["error"] == "login_required"


async def test_the_login_form_posts_to_the_issuer_path(tmp_path: Path) -> None:
    server = make_server(tmp_path, issuer="http://127.0.0.1/tenant1", clients=CLIENTS)
    server.add_resource("http://127.0.0.1/mcp")
    transport = httpx2.ASGITransport(app=server.app())
    async with httpx2.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
        b = Browser(http, "http://127.0.0.1/tenant1")
        login = await b.authorize(**request_params(LOOPBACK))
        assert only_form(login).action == "/tenant1/authorize/login"
        consent = await b.follow(await b.submit(login, username="alice", password="alice-secret-pw"))
        assert only_form(consent).action == "/tenant1/authorize/consent"
        back = await b.approve(consent)
    assert callback_query(back)["iss"] == "http://127.0.0.1/tenant1"
    assert urlsplit(back.headers["location"]).port == 49152


async def test_a_flow_expires_after_ten_minutes_and_a_session_after_twelve_hours(tmp_path: Path) -> None:
    clock = FakeClock(1_800_000_000.0)
    store = SQLiteStore(tmp_path / "auth.db", clock=clock)
    async with browser(tmp_path, store=store, clock=clock) as (b, _):
        login = await b.authorize(**request_params(LOOPBACK))
        clock.now += 601
        late = await b.submit(login, username="alice", password="alice-secret-pw")
        assert late.status_code == 400
        assert "expired" in page_text(late)
        await b.approve(await b.sign_in(await b.authorize(**request_params(LOOPBACK))))
        clock.now += 11 * 3600
        assert "Allow" in page_text(await b.authorize(**request_params(LOOPBACK)))
        clock.now += 2 * 3600
        assert "Sign in" in parse_page((await b.authorize(**request_params(LOOPBACK))).text).title


async def test_a_store_outage_is_a_503_page(tmp_path: Path) -> None:
    store = MemoryStore()
    server = make_server(tmp_path, store=store, issuer="http://127.0.0.1", clients=CLIENTS)
    server.add_resource("http://127.0.0.1/mcp")
    await store.aclose()
    transport = httpx2.ASGITransport(app=server.app())
    async with httpx2.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
        response = await Browser(http, "http://127.0.0.1").authorize(**request_params(LOOPBACK))
    assert response.status_code == 503
    assert "try again later" in page_text(response).lower()


class UpstreamLogin(LoginStep):
    """A login step shaped like an upstream identity provider: a redirect out, a callback in."""

    async def start(self, server: AuthorizationServer, request: Request, flow: Flow) -> Response:
        # A real step would redirect to the provider with state=flow.id; the provider comes back here.
        query = urlencode({"state": flow.id, "who": "upstream-user"})
        return RedirectResponse(server.path("/upstream/callback") + "?" + query, status_code=302)

    def routes(self, server: AuthorizationServer) -> list[BaseRoute]:
        async def callback(request: Request) -> Response:
            user = User(request.query_params["who"], name="From Upstream")
            try:
                return await signed_in(server, request, request.query_params["state"], user)
            except FlowRefused as exc:
                return exc.response()

        return [Route(server.path("/upstream/callback"), callback)]


async def test_a_login_step_plugs_in_with_its_own_routes_and_signed_in(tmp_path: Path) -> None:
    async with browser(tmp_path, users=None, login=UpstreamLogin()) as (b, server):
        out = await b.authorize(**request_params(LOOPBACK))
        assert out.status_code == 302
        consent = await b.follow(out)
        assert "Signed in as From Upstream" in page_text(consent)
        back = await b.approve(consent)
        grant = await server.codes.redeem(callback_query(back)["code"], "public-client")
        assert grant.user.subject == "upstream-user"
        async with httpx2.AsyncClient() as other:
            replayed = await other.get(urljoin(b.base, out.headers["location"]))
    assert replayed.status_code in (400, 403)
    assert "location" not in replayed.headers


def test_login_takes_a_login_step(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="LoginStep"):
        make_server(tmp_path, users=None, login=object()).app()
