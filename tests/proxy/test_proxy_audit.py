"""The OAuth proxy's audit events: a sign-in at the provider, its failures, and failed upstream refreshes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from bastion import AuditEvent, MCPServer, get_access_token, require_auth
from bastion.proxy import OAuthProxy
from bastion.storage import SQLiteStore
from bastion.testing import serve

from support.authserver import PUBLIC_CLIENT, SCOPES, refresh
from support.clock import FakeClock
from support.fake_upstream import (
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

PROVIDER = "Fake ID"


def collect(proxy: OAuthProxy) -> list[AuditEvent]:
    events: list[AuditEvent] = []
    proxy.audit.add_sink(events.append)
    return events


def summary(events: list[AuditEvent]) -> list[tuple[str, str, str | None, str | None, dict[str, Any]]]:
    return [(e.name, e.outcome, e.subject, e.client_id, dict(e.facts)) for e in events]


def no_secret_of(fake: FakeUpstream, events: list[AuditEvent]) -> bool:
    text = "\n".join(e.to_json() for e in events)
    return not any(secret in text for secret in fake.secrets())


async def test_a_sign_in_at_the_provider(tmp_path: Path) -> None:
    with fake_upstream() as fake, proxy_of(fake, tmp_path / "proxy.db") as (proxy, base):
        events = collect(proxy)
        async with httpx2.AsyncClient() as http:
            await signed_in(http, fake, base)
    flow = {"scopes": ["notes:read"], "resource": base + "/mcp"}
    assert summary(events) == [
        ("signin.succeeded", "success", "alice", "public-client", {"method": "upstream", "provider": PROVIDER}),
        ("consent.given", "success", "alice", "public-client", {**flow, "remember": 0}),
        ("code.issued", "success", "alice", "public-client", flow),
        ("code.redeemed", "success", "alice", "public-client", flow),
        ("token.issued", "success", "alice", "public-client", {"grant_type": "authorization_code", **flow}),
    ]
    assert {e.address for e in events} == {"127.0.0.1"}
    assert no_secret_of(fake, events)


@pytest.mark.parametrize(
    ("mode", "outcome", "reason"),
    [
        ("down", "error", "the provider could not be reached"),
        ("bad_signature", "failure", "the provider's answer was refused"),
        ("no_subject", "failure", "the provider's answer was refused"),
    ],
)
async def test_a_failed_sign_in_at_the_provider(mode: TokenMode, outcome: str, reason: str, tmp_path: Path) -> None:
    with fake_upstream(token_mode=mode) as fake, proxy_of(fake, tmp_path / "proxy.db") as (proxy, base):
        events = collect(proxy)
        async with httpx2.AsyncClient() as http:
            upstream = await approve(http, base, await consent_page(http, Authorization(base)))
            assert (await http.get(fake.sign_in(upstream.headers["location"]))).status_code == 502
    assert summary(events) == [
        ("upstream.signin_failed", outcome, None, "public-client", {"provider": PROVIDER, "reason": reason})
    ]
    assert events[0].address == "127.0.0.1"
    assert no_secret_of(fake, events)


async def test_a_sign_in_refused_at_the_provider_and_a_consent_denied(tmp_path: Path) -> None:
    with fake_upstream() as fake, proxy_of(fake, tmp_path / "proxy.db") as (proxy, base):
        events = collect(proxy)
        async with httpx2.AsyncClient() as http:
            upstream = await approve(http, base, await consent_page(http, Authorization(base)))
            assert (await http.get(fake.deny(upstream.headers["location"]))).status_code == 302
            denied = await approve(http, base, await consent_page(http, Authorization(base)), decision="deny")
            assert denied.status_code == 303
    flow = {"scopes": ["notes:read"], "resource": base + "/mcp"}
    assert summary(events) == [
        (
            "upstream.signin_failed",
            "refused",
            None,
            "public-client",
            {"provider": PROVIDER, "reason": "the provider answered with an error"},
        ),
        ("consent.denied", "refused", None, "public-client", flow),  # before signing in: no user yet
    ]


async def test_a_refresh_the_provider_cannot_or_will_not_renew(tmp_path: Path) -> None:
    clock = FakeClock()
    with fake_upstream(expires_in=300) as fake, proxy_of(fake, tmp_path / "proxy.db", clock) as (proxy, base):
        events = collect(proxy)
        async with httpx2.AsyncClient() as http:
            _, tokens = await signed_in(http, fake, base)
            clock.advance(301)
            del events[:]
            fake.token_mode = "down"
            assert (await refresh(http, base, tokens["refresh_token"])).status_code == 503
            fake.token_mode = "ok"
            fake.refuse_refresh = True
            assert (await refresh(http, base, tokens["refresh_token"])).status_code == 400
    refreshing = {"grant_type": "refresh_token"}
    down = {"provider": PROVIDER, "reason": "the provider could not be reached"}
    refusing = {"provider": PROVIDER, "reason": "the provider refused the refresh"}
    assert summary(events) == [
        ("upstream.refresh_failed", "error", "alice", None, down),
        ("token.refused", "error", None, "public-client", {**refreshing, "reason": "temporarily_unavailable"}),
        ("upstream.refresh_failed", "failure", "alice", None, refusing),
        ("token.refused", "failure", None, "public-client", {**refreshing, "reason": "invalid_grant"}),
    ]
    assert no_secret_of(fake, events)


async def test_a_tool_whose_upstream_token_cannot_be_renewed(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with fake_upstream(expires_in=30) as fake:
        proxy = OAuthProxy(
            fake.upstream(),
            base_url=base,
            store=SQLiteStore(tmp_path / "proxy.db"),
            scopes=SCOPES,
            clients=[PUBLIC_CLIENT],
        )
        mcp = MCPServer("Upstream", auth=proxy, resource_url=base + "/mcp")

        @mcp.tool(auth=require_auth)
        async def upstream() -> str:
            return (await get_access_token().upstream())[:10]

        events = collect(proxy)
        with serve(mcp.streamable_http_app(), port=port):
            async with httpx2.AsyncClient() as http:
                _, tokens = await signed_in(http, fake, base)
            del events[:]
            fake.refuse_refresh = True
            async with (
                httpx2.AsyncClient(headers={"Authorization": f"Bearer {tokens['access_token']}"}) as http,
                Client(streamable_http_client(base + "/mcp", http_client=http)) as client,
            ):
                assert (await client.call_tool("upstream", {})).is_error
    [event] = events
    assert (event.name, event.outcome, event.subject, event.client_id) == (
        "upstream.refresh_failed",
        "failure",
        "alice",
        "public-client",
    )
    assert event.grant_id is not None
    assert event.address == "127.0.0.1"
    assert no_secret_of(fake, events)
