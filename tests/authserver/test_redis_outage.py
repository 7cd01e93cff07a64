"""Redis goes away under two replicas and comes back: 503 with Retry-After meanwhile, then as before.

The replicas (``support/replica_server.py``, one process each) share a Redis of this test's
own, which keeps its data on disk (``persist=True``) as a production Redis does. While it is
stopped, whatever needs the store (a token request, a refresh, a registration) is answered
503 with ``Retry-After`` within the store's timeouts, never 500 and never a hang; an access
token a replica has already verified is served from its cache and still calls tools. One it
has not seen needs the store for the grant's revocation check: that is a 503 too, never an
acceptance. Once Redis is back, everything issued before works, the requests refused during
the outage left nothing half done, and revocations reach the other replica again.
"""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx2
import pytest

from support.authserver import pkce_pair, refresh
from support.redis import RedisServer
from support.replicas import (
    REDIRECT,
    Replica,
    authorize,
    call_tool,
    eventually,
    listening,
    redeem,
    register,
    replicas,
    sign_in_across,
)

#: Seconds a revocation may take to reach the other replica after Redis is back: its
#: subscription reconnects with a backoff of up to ``LISTEN_BACKOFF_MAX`` (5 s).
REACH = 20.0
#: Seconds an answer may take before the test calls it a hang: far beyond the store's
#: timeouts (2 s to connect, 2 s per command, two retries).
HANG = 30.0


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A Redis of this test's own, which keeps its data across a restart."""
    with RedisServer(persist=True) as server:
        yield server


@pytest.fixture
def pair(redis_server: RedisServer, tmp_path: Path) -> Iterator[tuple[Replica, Replica]]:
    with replicas(redis_server.url, tmp_path) as (a, b):
        yield a, b


@pytest.fixture
async def http() -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(timeout=HANG) as client:
        yield client


def unavailable(response: httpx2.Response, error: str | None = "temporarily_unavailable") -> None:
    """A 503 with ``Retry-After``; with an OAuth ``error`` for the endpoints that answer in JSON."""
    assert response.status_code == 503, f"{response.status_code} {response.text}"
    assert int(response.headers["retry-after"]) > 0
    if error is not None:
        assert response.json()["error"] == error


def called(response: httpx2.Response) -> str:
    """The subject ``whoami`` saw."""
    assert response.status_code == 200, f"{response.status_code} {response.text}"
    return str(response.json()["result"]["structuredContent"]["subject"])


async def refused(http: httpx2.AsyncClient, replica: Replica, token: str) -> bool:
    response = await call_tool(http, replica.base, token)
    assert response.status_code in (200, 401), f"{response.status_code} {response.text}"
    return response.status_code == 401


async def test_a_redis_outage_is_a_503_then_service_resumes_with_everything_intact(
    redis_server: RedisServer, pair: tuple[Replica, Replica], http: httpx2.AsyncClient
) -> None:
    a, b = pair
    await listening(http, pair, redis_server.url)
    registered = await register(http, a.base)
    seen = await sign_in_across(http, a.base, b.base, "public-client")
    for replica in pair:
        assert called(await call_tool(http, replica.base, seen["access_token"])) == "alice"  # now cached
    unseen = await sign_in_across(http, b.base, a.base, "public-client")  # never shown to an MCP endpoint
    verifier, challenge = pkce_pair()
    code = await authorize(http, b.base, a.base, b.base, "public-client", challenge)  # not redeemed yet

    redis_server.stop()
    for replica in pair:
        unavailable(await refresh(http, replica.base, seen["refresh_token"]))
        unavailable(await redeem(http, replica.base, "public-client", code, verifier))
        unavailable(await http.post(replica.base + "/register", json={"redirect_uris": [REDIRECT]}))
        # A token this replica has verified needs no store; one it has not needs the revocation check.
        assert called(await call_tool(http, replica.base, seen["access_token"])) == "alice"
        unavailable(await call_tool(http, replica.base, unseen["access_token"]))

    redis_server.start()
    for replica in pair:
        for token in (seen["access_token"], unseen["access_token"]):
            assert called(await call_tool(http, replica.base, token)) == "alice"
    # The code and the refresh token refused during the outage are still good, once.
    redeemed = await redeem(http, b.base, "public-client", code, verifier)
    assert redeemed.status_code == 200, redeemed.text
    refreshed = await refresh(http, a.base, seen["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text
    assert (await refresh(http, b.base, refreshed.json()["refresh_token"])).status_code == 200
    # The client registered before the outage is still known; registration is open again.
    _, challenge = pkce_pair()
    login = await http.get(
        b.base + "/authorize",
        params={
            "response_type": "code",
            "client_id": registered,
            "redirect_uri": REDIRECT,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        },
    )
    assert login.status_code == 200, login.text
    await register(http, b.base)
    # Revocations reach the other replica again, once its subscription is back.
    latest = redeemed.json()
    assert called(await call_tool(http, b.base, latest["access_token"])) == "alice"
    data = {"token": latest["refresh_token"], "client_id": "public-client"}
    assert (await http.post(a.base + "/revoke", data=data)).status_code == 200
    await eventually(lambda: refused(http, b, latest["access_token"]), REACH, "B refuses a token revoked on A")


async def test_a_redis_that_stops_answering_costs_a_request_the_store_timeouts_not_a_hang(
    redis_server: RedisServer, pair: tuple[Replica, Replica], http: httpx2.AsyncClient
) -> None:
    a, b = pair
    await listening(http, pair, redis_server.url)
    seen = await sign_in_across(http, a.base, b.base, "public-client")
    assert called(await call_tool(http, a.base, seen["access_token"])) == "alice"
    assert redis_server.process is not None
    # Frozen, not gone: connections are accepted by the kernel and nothing ever answers.
    redis_server.process.send_signal(signal.SIGSTOP)
    try:
        unavailable(await refresh(http, a.base, seen["refresh_token"]))
        unavailable(await http.post(b.base + "/register", json={"redirect_uris": [REDIRECT]}))
        assert called(await call_tool(http, a.base, seen["access_token"])) == "alice"
    finally:
        redis_server.process.send_signal(signal.SIGCONT)
    refreshed = await refresh(http, b.base, seen["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text
