"""The OAuth proxy when its identity provider fails: a clear page or an RFC 6749 error, nothing kept half-done.

The provider is a small fake on loopback (``fake_upstream``) whose token endpoint is down, slow,
answers error JSON, an HTML page or garbage, or signs an id_token badly. The user sees a 502 page;
the state and the flow are used up; no code, grant or provider tokens are left in the store; and
neither the page nor any log line carries the proxy's client secret or a token.
"""

from __future__ import annotations

import logging
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from bastion import MCPServer, get_access_token, require_auth
from bastion.proxy import OAuthProxy
from bastion.storage import SQLiteStore
from bastion.testing import serve

from support.authserver import PUBLIC_CLIENT, SCOPES, oauth_error, refresh
from support.clock import FakeClock
from support.fake_upstream import (
    OTHER_CLIENT,
    Authorization,
    FakeUpstream,
    TokenMode,
    approve,
    consent_page,
    fake_upstream,
    free_port,
    proxy_of,
    signed_in,
)
from support.pages import page_text

#: What a failed sign-in must not leave behind.
HALF_DONE = ("code", "grant", "upstream", "upstream-state", "flow", "refresh", "consent")


def live_records(db: Path, now: float) -> Counter[str]:
    """How many unexpired records each namespace of the proxy's SQLite store holds."""
    with sqlite3.connect(db) as connection:
        rows = connection.execute(
            "SELECT namespace, COUNT(*) FROM records WHERE expires_at IS NULL OR expires_at > ? GROUP BY namespace",
            (now,),
        ).fetchall()
    connection.close()
    return Counter({str(namespace): int(count) for namespace, count in rows})


def assert_nothing_leaks(fake: FakeUpstream, *texts: str) -> None:
    for text in texts:
        for secret in fake.secrets():
            assert secret not in text


def logged(caplog: pytest.LogCaptureFixture, base: str) -> str:
    """Every line logged meanwhile, but the test's own HTTP client's (its requests to the proxy at ``base``)."""
    lines = [f"{record.getMessage()} {record.exc_text or ''}" for record in caplog.records]
    return "\n".join(line for line in lines if base not in line)


FAILURES: list[tuple[TokenMode, str]] = [
    ("down", "HTTP 503"),
    ("error_json", "HTTP 500"),
    ("html", "not JSON"),
    ("garbage", "not JSON"),
    ("slow", "failed"),
    ("bad_signature", "id_token was refused"),
    ("bad_nonce", "nonce"),
    ("no_subject", "id_token was refused"),
]


@pytest.mark.parametrize(("mode", "reason"), FAILURES)
async def test_a_failing_provider_is_a_502_page_and_nothing_is_kept(
    mode: TokenMode, reason: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    db = tmp_path / "proxy.db"
    with fake_upstream(token_mode=mode) as fake, proxy_of(fake, db, upstream_timeout=0.5) as (proxy, base):
        async with httpx2.AsyncClient() as http:
            upstream = await approve(http, base, await consent_page(http, Authorization(base)))
            callback_url = fake.sign_in(upstream.headers["location"])
            answer = await http.get(callback_url)
            assert answer.status_code == 502
            assert answer.headers["x-frame-options"] == "DENY"
            text = page_text(answer)
            assert "The sign-in did not complete" in text
            assert reason in text
            # The state is used up: the same answer from the provider cannot be tried again.
            again = await http.get(callback_url)
            assert again.status_code == 400
        assert fake.token_requests == 1
        if mode in ("bad_signature", "bad_nonce", "no_subject"):
            # Tokens the proxy will not use are revoked at the provider.
            assert set(fake.issued) <= fake.revoked
        live = live_records(db, proxy.clock())
        assert not {name: live[name] for name in HALF_DONE if live[name]}
        assert_nothing_leaks(fake, answer.text, again.text, logged(caplog, base))


async def test_a_refusal_at_the_provider_goes_back_to_the_client(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    db = tmp_path / "proxy.db"
    with fake_upstream() as fake, proxy_of(fake, db) as (proxy, base):
        async with httpx2.AsyncClient() as http:
            upstream = await approve(http, base, await consent_page(http, Authorization(base)))
            callback_url = fake.deny(upstream.headers["location"])
            answer = await http.get(callback_url)
            assert answer.status_code == 302
            query = {k: v[0] for k, v in parse_qs(urlsplit(answer.headers["location"]).query).items()}
            assert query["error"] == "access_denied"
            assert query["state"] == "client-state"
            assert query["iss"] == proxy.issuer
            assert (await http.get(callback_url)).status_code == 400
        assert fake.token_requests == 0
        live = live_records(db, proxy.clock())
        assert not {name: live[name] for name in HALF_DONE if live[name]}


async def test_a_callback_without_code_or_state_is_a_page(tmp_path: Path) -> None:
    with fake_upstream() as fake, proxy_of(fake, tmp_path / "proxy.db") as (_, base):
        async with httpx2.AsyncClient() as http:
            no_state = await http.get(base + "/auth/callback?code=abc")
            assert no_state.status_code == 400
            assert "has no state" in page_text(no_state)
            unknown = await http.get(base + "/auth/callback?code=abc&state=made-up")
            assert unknown.status_code == 400
            repeated = await http.get(base + "/auth/callback?state=a&state=b")
            assert repeated.status_code == 400
            upstream = await approve(http, base, await consent_page(http, Authorization(base)))
            state = parse_qs(urlsplit(upstream.headers["location"]).query)["state"][0]
            no_code = await http.get(base + "/auth/callback?state=" + state)
            assert no_code.status_code == 400
            assert "has no code" in page_text(no_code)
        assert fake.token_requests == 0


# -- after the sign-in: the proxy's refresh and the tools follow the provider's session ---------------


async def test_a_proxy_refresh_renews_an_expired_upstream_session(tmp_path: Path) -> None:
    clock = FakeClock()
    with fake_upstream(expires_in=300) as fake, proxy_of(fake, tmp_path / "proxy.db", clock) as (_, base):
        async with httpx2.AsyncClient() as http:
            _, tokens = await signed_in(http, fake, base)
            clock.now += 301
            before = fake.token_requests
            renewed = await refresh(http, base, tokens["refresh_token"], resource=base + "/mcp")
            assert renewed.status_code == 200, renewed.text
            assert fake.token_requests == before + 1  # the provider's tokens were refreshed first


async def test_a_retried_proxy_refresh_returns_the_same_tokens_without_asking_the_provider(tmp_path: Path) -> None:
    clock = FakeClock()
    with fake_upstream(expires_in=300) as fake, proxy_of(fake, tmp_path / "proxy.db", clock) as (_, base):
        async with httpx2.AsyncClient() as http:
            _, tokens = await signed_in(http, fake, base)
            first = (await refresh(http, base, tokens["refresh_token"])).json()
            # The answer was lost; the client retries once the provider's token has expired.
            clock.now += 301
            before = fake.token_requests
            again = await refresh(http, base, tokens["refresh_token"])
            assert again.status_code == 200, again.text
            assert again.json()["refresh_token"] == first["refresh_token"]
            assert fake.token_requests == before  # a retry renews nothing at the provider
            assert not fake.revoked
            renewed = await refresh(http, base, first["refresh_token"])
            assert renewed.status_code == 200, renewed.text
            assert fake.token_requests == before + 1  # the successor's first use does


async def test_a_provider_that_is_down_does_not_sign_the_user_out(tmp_path: Path) -> None:
    clock = FakeClock()
    with fake_upstream(expires_in=300) as fake, proxy_of(fake, tmp_path / "proxy.db", clock) as (_, base):
        async with httpx2.AsyncClient() as http:
            _, tokens = await signed_in(http, fake, base)
            clock.now += 301
            fake.token_mode = "down"
            unavailable = await refresh(http, base, tokens["refresh_token"])
            assert unavailable.status_code == 503
            assert oauth_error(unavailable) == "temporarily_unavailable"
            # Nothing was rotated: once the provider is back, the same refresh token works.
            fake.token_mode = "ok"
            renewed = await refresh(http, base, tokens["refresh_token"])
            assert renewed.status_code == 200, renewed.text


async def test_a_proxy_refresh_after_the_provider_refused_the_refresh_token_is_invalid_grant(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    clock = FakeClock()
    with fake_upstream(expires_in=300) as fake, proxy_of(fake, tmp_path / "proxy.db", clock) as (_, base):
        async with httpx2.AsyncClient() as http:
            _, tokens = await signed_in(http, fake, base)
            fake.refuse_refresh = True  # the user revoked the proxy's access at the provider
            # While the provider's access token lives, the session stands.
            first = await refresh(http, base, tokens["refresh_token"])
            assert first.status_code == 200
            clock.now += 301
            refused = await refresh(http, base, first.json()["refresh_token"])
            assert refused.status_code == 400
            assert oauth_error(refused) == "invalid_grant"
            assert "sign in again" in refused.json()["error_description"]
            assert_nothing_leaks(fake, refused.text, logged(caplog, base))


async def test_a_proxy_refresh_after_an_upstream_token_without_refresh_expired_is_invalid_grant(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    with (
        fake_upstream(expires_in=300, refresh_tokens=False) as fake,
        proxy_of(fake, tmp_path / "proxy.db", clock) as (_, base),
    ):
        async with httpx2.AsyncClient() as http:
            _, tokens = await signed_in(http, fake, base)
            first = await refresh(http, base, tokens["refresh_token"])
            assert first.status_code == 200
            clock.now += 301
            refused = await refresh(http, base, first.json()["refresh_token"])
            assert refused.status_code == 400
            assert oauth_error(refused) == "invalid_grant"


# -- a tool asking for the provider's token -----------------------------------------------------------


async def call_upstream_tool(base: str, access_token: str) -> Any:
    headers = {"Authorization": f"Bearer {access_token}"}
    async with (
        httpx2.AsyncClient(headers=headers) as http,
        Client(streamable_http_client(base + "/mcp", http_client=http)) as client,
    ):
        return await client.call_tool("upstream", {})


async def test_a_tool_gets_a_refreshed_upstream_token_or_a_tool_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    port = free_port()
    # 30 s of life: less than the minute a tool is promised, so every call refreshes first.
    with fake_upstream(expires_in=30) as fake:
        base = f"http://127.0.0.1:{port}"
        proxy = OAuthProxy(
            fake.upstream(),
            base_url=base,
            store=SQLiteStore(tmp_path / "proxy.db"),
            scopes=SCOPES,
            clients=[PUBLIC_CLIENT, OTHER_CLIENT],
        )
        mcp = MCPServer("Upstream", auth=proxy, resource_url=base + "/mcp")

        @mcp.tool(auth=require_auth)
        async def upstream() -> str:
            return (await get_access_token().upstream())[:10]

        with serve(mcp.streamable_http_app(), port=port):
            async with httpx2.AsyncClient() as http:
                _, tokens = await signed_in(http, fake, base)
            ok = await call_upstream_tool(base, tokens["access_token"])
            assert not ok.is_error
            assert fake.token_requests == 2  # the code, then a refresh
            fake.refuse_refresh = True
            failed = await call_upstream_tool(base, tokens["access_token"])
            assert failed.is_error
            # A tool error (the SDK shows the model only the tool's name for an exception it did not expect).
            message = " ".join(getattr(part, "text", "") for part in failed.content)
            assert "upstream" in message
            assert_nothing_leaks(fake, message, logged(caplog, base))
