"""Several replicas of one OAuth proxy refresh a sign-in's upstream tokens once between them.

Two ``OAuthProxy`` objects stand for two replicas: one base URL, one store (each its own
handle on one SQLite file or one Redis prefix), the same encryption keys, and each its own
in-process dedupe, so only the refresh lease in the store keeps them apart. The provider
(``FakeUpstream``) rotates refresh tokens and revokes the whole sign-in when it sees one
twice, as GitHub or Auth0 do: the user must keep their session.

To be sure the replicas overlap, the provider holds its answer to the refresh until a
replica has found the lease taken (the store reports the refused ``add``); nothing sleeps.
"""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest

from bastion import AccessToken, UpstreamUnavailable
from bastion.authserver._lease import LEASE_NAMESPACE
from bastion.proxy import OAuthProxy
from bastion.proxy._proxy import REFRESH_LEASE_PREFIX
from bastion.storage import RedisStore, SQLiteStore, Store
from bastion.testing import serve

from support.authserver import PUBLIC_CLIENT, SCOPES, oauth_error, refresh
from support.clock import FakeClock
from support.fake_upstream import FakeUpstream, fake_upstream, free_port, signed_in

#: How long the provider's access tokens live; the tests move the clock past it.
LIFE = 3600
#: A guard against a hang if the lease were broken, not a wait: every event comes in milliseconds.
GUARD = 30.0

StoreMaker = Callable[[FakeClock], Store]


@pytest.fixture(params=["sqlite", "redis"])
def store_of(request: pytest.FixtureRequest, tmp_path: Path) -> StoreMaker:
    """A new handle on the one store the replicas share."""
    if request.param == "sqlite":
        db = tmp_path / "proxy.db"
        return lambda clock: SQLiteStore(db, clock=clock)
    url = request.getfixturevalue("redis_url")
    return lambda clock: RedisStore(url, clock=clock)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@asynccontextmanager
async def replicas(
    fake: FakeUpstream, store_of: StoreMaker, clock: FakeClock, upstream_timeout: float = 5.0
) -> AsyncIterator[tuple[list[OAuthProxy], list[str]]]:
    """Two replicas of one proxy, each served on a port of its own: ``(proxies, the URLs they answer at)``."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    keys = [base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()]
    proxies = [
        OAuthProxy(
            fake.upstream(),
            base_url=base,
            store=store_of(clock),
            clock=clock,
            encryption_keys=keys,
            upstream_timeout=upstream_timeout,
            scopes=SCOPES,
            clients=[PUBLIC_CLIENT],
            resources=[base + "/mcp"],
        )
        for _ in range(2)
    ]
    with serve(proxies[0].app(), port=port), serve(proxies[1].app()) as second:
        try:
            yield proxies, [base, second]
        finally:
            # While the servers run, so that the connections their loops opened are closed too.
            for proxy in proxies:
                await proxy.aclose()
                await proxy.store.aclose()


def lease_refusals(monkeypatch: pytest.MonkeyPatch, proxies: list[OAuthProxy]) -> list[asyncio.Event]:
    """One event per replica, set once that replica finds a refresh lease taken by someone else.

    The store's ``add`` is watched, not replaced: the replica still talks to the real store,
    on whichever event loop it runs (the test's, or its server's).
    """
    loop = asyncio.get_running_loop()
    events = []
    for proxy in proxies:
        event = asyncio.Event()
        add = proxy.store.add

        async def watched(
            namespace: str,
            key: str,
            value: bytes,
            ttl: float | None = None,
            *,
            index: str | None = None,
            add: Any = add,
            event: asyncio.Event = event,
        ) -> bool:
            added: bool = await add(namespace, key, value, ttl, index=index)
            if namespace == LEASE_NAMESPACE and not added:
                loop.call_soon_threadsafe(event.set)
            return added

        monkeypatch.setattr(proxy.store, "add", watched)
        events.append(event)
    return events


async def first(events: list[asyncio.Event]) -> None:
    """Until one of ``events`` is set."""
    waits = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waits, timeout=GUARD, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()
    assert any(event.is_set() for event in events), "no replica found the lease taken: each refreshed on its own"


async def every(events: list[asyncio.Event]) -> None:
    """Until all of ``events`` are set."""
    await asyncio.wait_for(asyncio.gather(*(event.wait() for event in events)), GUARD)


async def sign_in(proxy: OAuthProxy, base: str, fake: FakeUpstream) -> tuple[dict[str, Any], AccessToken]:
    """A user signs in through the first replica: the proxy's tokens, and its access token verified."""
    async with httpx2.AsyncClient() as http:
        _, tokens = await signed_in(http, fake, base)
    return tokens, await proxy.any_resource_verifier.check(tokens["access_token"])


async def test_concurrent_tool_calls_on_two_replicas_refresh_once(
    store_of: StoreMaker, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    with fake_upstream(expires_in=LIFE, rotate_refresh=True) as fake:
        async with replicas(fake, store_of, clock) as (proxies, bases):
            _, access = await sign_in(proxies[0], bases[0], fake)
            signed_in_with = set(fake.issued)
            clock.advance(LIFE)
            refused = lease_refusals(monkeypatch, proxies)
            fake.token_mode = "slow"
            calls = [asyncio.ensure_future(proxies[n % 2].upstream_token(access)) for n in range(20)]
            await first(refused)
            fake.release.set()
            tokens = await asyncio.gather(*calls)

            assert fake.refreshes == 1
            assert len(set(tokens)) == 1
            assert tokens[0] in fake.issued
            assert tokens[0] not in signed_in_with
            # The session stands: an hour later the rotated refresh token is good, on either replica.
            clock.advance(LIFE)
            again = await proxies[1].upstream_token(access)
            assert again not in (*signed_in_with, tokens[0])
            assert await proxies[0].upstream_token(access) == again
            assert fake.refreshes == 2
            assert fake.reuses == 0
            assert not fake.revoked


async def test_concurrent_proxy_refreshes_on_two_replicas_refresh_upstream_once(
    store_of: StoreMaker, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    with fake_upstream(expires_in=LIFE, rotate_refresh=True) as fake:
        async with replicas(fake, store_of, clock) as (proxies, bases):
            tokens, _ = await sign_in(proxies[0], bases[0], fake)
            clock.advance(LIFE + 1)
            refused = lease_refusals(monkeypatch, proxies)
            fake.token_mode = "slow"
            async with httpx2.AsyncClient() as http:
                # The client retries on both replicas at once, as after a lost answer behind a load balancer.
                calls = [asyncio.ensure_future(refresh(http, bases[n % 2], tokens["refresh_token"])) for n in range(10)]
                await first(refused)
                fake.release.set()
                answers = await asyncio.gather(*calls)
                assert [answer.status_code for answer in answers] == [200] * 10, answers[0].text
                assert len({answer.json()["refresh_token"] for answer in answers}) == 1
                assert fake.refreshes == 1
                # The successor works: the upstream session was renewed, not revoked.
                renewed = await refresh(http, bases[1], answers[0].json()["refresh_token"])
                assert renewed.status_code == 200, renewed.text
            assert fake.reuses == 0
            assert not fake.revoked


async def test_a_crashed_holder_is_replaced_once_its_lease_runs_out(
    store_of: StoreMaker, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    with fake_upstream(expires_in=LIFE, rotate_refresh=True) as fake:
        async with replicas(fake, store_of, clock) as (proxies, bases):
            _, access = await sign_in(proxies[0], bases[0], fake)
            clock.advance(LIFE)
            # A replica took the lease and died before refreshing: nobody will release it.
            lease = REFRESH_LEASE_PREFIX + access.claim("uref")
            assert await proxies[0].store.add(LEASE_NAMESPACE, lease, b"crashed-replica", ttl=30)
            refused = lease_refusals(monkeypatch, proxies)
            calls = [asyncio.ensure_future(proxies[n % 2].upstream_token(access)) for n in range(10)]
            await every(refused)  # both replicas wait for it
            assert fake.refreshes == 0
            clock.advance(30)
            tokens = await asyncio.gather(*calls)
            assert fake.refreshes == 1
            assert len(set(tokens)) == 1
            assert fake.reuses == 0


async def test_a_lease_held_past_the_deadline_is_a_provider_unavailable_not_a_sign_out(
    store_of: StoreMaker, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A short deadline to the provider makes the lease, and the replicas' wait for it, short.
    with fake_upstream(expires_in=LIFE, rotate_refresh=True) as fake:
        async with replicas(fake, store_of, clock, upstream_timeout=0.5) as (proxies, bases):
            tokens, access = await sign_in(proxies[0], bases[0], fake)
            clock.advance(LIFE + 1)
            lease = REFRESH_LEASE_PREFIX + access.claim("uref")
            # Held longer than any lease lasts, on a clock that does not move meanwhile.
            assert await proxies[0].store.add(LEASE_NAMESPACE, lease, b"stuck-replica", ttl=300)
            async with httpx2.AsyncClient() as http:
                # Both replicas wait at once: a tool's call on one, the client's refresh on the other.
                tool, unavailable = await asyncio.gather(
                    proxies[0].upstream_token(access),
                    refresh(http, bases[1], tokens["refresh_token"]),
                    return_exceptions=True,
                )
                assert isinstance(tool, UpstreamUnavailable)
                assert isinstance(unavailable, httpx2.Response)
                assert unavailable.status_code == 503
                assert oauth_error(unavailable) == "temporarily_unavailable"
                assert "retry-after" in unavailable.headers
                assert fake.refreshes == 0
                # Once the lease has run out, the same refresh token works: the user stayed signed in.
                clock.advance(300)
                renewed = await refresh(http, bases[0], tokens["refresh_token"])
                assert renewed.status_code == 200, renewed.text
            assert fake.refreshes == 1
            assert fake.reuses == 0
