"""Two replicas on one Redis are one authorization server: whichever answers, the client sees the same.

Each replica is a process of its own (``support/replica_server.py``) on its own port, both
configured with the same public URL, and the tests call each one directly, as a load
balancer without sticky sessions would: a client registers on one, its user's browser
signs in on one and consents on the other, refresh tokens race over both, and a
revocation on one reaches the tokens the other has already verified and cached.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx2
import pytest
import redis.asyncio

from bastion.authserver import AuthorizationServer
from bastion.authserver._revocations import CHANNEL
from bastion.storage import RedisStore

from support.authserver import refresh
from support.redis import RedisServer
from support.replica_server import authorization_server
from support.replicas import (
    ISSUER,
    PUBLIC,
    Replica,
    call_tool,
    claims,
    eventually,
    listening,
    register,
    replicas,
    sign_in_across,
)

#: Seconds a revocation may take to reach another replica before the test gives up (it takes milliseconds).
REACH = 5.0


@pytest.fixture(scope="module")
def redis_url(redis_server: RedisServer) -> str:
    """The session's Redis with a key prefix of this module's own (its replicas live through it)."""
    return f"{redis_server.url}?prefix=replicas-{uuid.uuid4().hex}:"


@pytest.fixture(scope="module")
def pair(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Replica, Replica]]:
    """Replicas A and B of one deployment on ``redis_url``, each listening for the other's revocations."""
    with replicas(redis_url, tmp_path_factory.mktemp("replicas")) as (a, b):
        asyncio.run(_listening((a, b), redis_url))
        yield a, b


async def _listening(pair: tuple[Replica, Replica], redis_url: str) -> None:
    async with httpx2.AsyncClient(timeout=30) as http:
        await listening(http, pair, redis_url)


@pytest.fixture
async def http() -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(timeout=30) as client:
        yield client


@pytest.fixture
async def same_deployment(redis_url: str) -> AsyncIterator[AuthorizationServer]:
    """The deployment's authorization server in the test's own process, on the same Redis."""
    server = authorization_server(redis_url, PUBLIC)
    yield server
    await server.store.aclose()


async def whoami(http: httpx2.AsyncClient, replica: Replica, token: str) -> dict[str, Any]:
    """What the ``whoami`` tool of ``replica`` answers for ``token``."""
    response = await call_tool(http, replica.base, token)
    assert response.status_code == 200, f"replica {replica.name}: {response.status_code} {response.text}"
    content: dict[str, Any] = response.json()["result"]["structuredContent"]
    return content


async def refused(http: httpx2.AsyncClient, replica: Replica, token: str) -> bool:
    """Whether the MCP endpoint of ``replica`` refuses the access token as invalid (401)."""
    response = await call_tool(http, replica.base, token)
    assert response.status_code in (200, 401), f"replica {replica.name}: {response.status_code} {response.text}"
    return response.status_code == 401


def refresh_refused(response: httpx2.Response) -> None:
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_grant"


async def test_both_replicas_publish_one_issuer_and_one_key_set(
    pair: tuple[Replica, Replica], http: httpx2.AsyncClient
) -> None:
    a, b = pair
    metadata = [(await http.get(r.base + "/.well-known/oauth-authorization-server")).json() for r in pair]
    assert metadata[0] == metadata[1]
    assert metadata[0]["issuer"] == ISSUER
    assert metadata[0]["token_endpoint"] == PUBLIC + "/token"
    resource = [(await http.get(r.base + "/.well-known/oauth-protected-resource/mcp")).json() for r in pair]
    assert resource[0] == resource[1]
    assert resource[0]["resource"] == PUBLIC + "/mcp"
    jwks = [(await http.get(r.base + "/jwks")).json() for r in (a, b)]
    assert jwks[0] == jwks[1]
    assert len(jwks[0]["keys"]) == 1


async def test_a_client_registered_on_one_replica_signs_in_on_the_other_and_works_on_both(
    pair: tuple[Replica, Replica], http: httpx2.AsyncClient
) -> None:
    a, b = pair
    client_id = await register(http, a.base)
    # Authorized on B (the sign-in form posted to A), the code redeemed on A.
    tokens = await sign_in_across(http, a.base, b.base, client_id)
    for replica in pair:
        seen = await whoami(http, replica, tokens["access_token"])
        assert seen["subject"] == "alice"
        assert seen["client_id"] == client_id
        assert sorted(seen["scopes"]) == ["notes:read", "notes:write"]
    token = tokens["refresh_token"]
    for refreshing, calling in ((b, a), (a, b), (b, b), (a, a)):
        answer = await refresh(http, refreshing.base, token, client_id=client_id)
        assert answer.status_code == 200, answer.text
        token = answer.json()["refresh_token"]
        assert (await whoami(http, calling, answer.json()["access_token"]))["subject"] == "alice"


async def test_twenty_concurrent_refreshes_over_both_replicas_get_one_successor(
    pair: tuple[Replica, Replica], http: httpx2.AsyncClient
) -> None:
    a, b = pair
    tokens = await sign_in_across(http, a.base, b.base, "public-client")
    answers = await asyncio.gather(*(refresh(http, pair[n % 2].base, tokens["refresh_token"]) for n in range(20)))
    assert all(answer.status_code == 200 for answer in answers), [answer.text for answer in answers]
    bodies = [answer.json() for answer in answers]
    assert len({body["refresh_token"] for body in bodies}) == 1
    assert len({body["access_token"] for body in bodies}) == 1
    successor = bodies[0]
    assert successor["refresh_token"] != tokens["refresh_token"]
    for replica in pair:
        assert (await whoami(http, replica, successor["access_token"]))["subject"] == "alice"
    assert (await refresh(http, b.base, successor["refresh_token"])).status_code == 200


async def test_reusing_a_rotated_refresh_token_revokes_the_family_on_both_replicas(
    pair: tuple[Replica, Replica], http: httpx2.AsyncClient
) -> None:
    a, b = pair
    first = await sign_in_across(http, a.base, b.base, "public-client")
    second = (await refresh(http, a.base, first["refresh_token"])).json()
    third = (await refresh(http, b.base, second["refresh_token"])).json()  # the successor is used
    for replica in pair:
        await whoami(http, replica, third["access_token"])  # verified, and cached, on both
    # The first token, copied by an attacker, comes back on B.
    refresh_refused(await refresh(http, b.base, first["refresh_token"]))
    for replica in pair:
        for token in (second["refresh_token"], third["refresh_token"]):
            refresh_refused(await refresh(http, replica.base, token))
    await eventually(lambda: refused(http, b, third["access_token"]), REACH, "B refuses the revoked access token")
    await eventually(lambda: refused(http, a, third["access_token"]), REACH, "A refuses the revoked access token")


@pytest.mark.parametrize("kind", ["refresh_token", "access_token"])
async def test_a_revocation_on_one_replica_reaches_the_tokens_the_other_has_cached(
    pair: tuple[Replica, Replica], http: httpx2.AsyncClient, kind: str
) -> None:
    a, b = pair
    revoking, other = (a, b) if kind == "refresh_token" else (b, a)
    tokens = await sign_in_across(http, a.base, b.base, "public-client")
    for replica in pair:
        await whoami(http, replica, tokens["access_token"])  # verified, and cached, on both
    data = {"token": tokens[kind], "token_type_hint": kind, "client_id": "public-client"}
    assert (await http.post(revoking.base + "/revoke", data=data)).status_code == 200
    # The revoking replica refuses at once; the other as soon as the revocation reaches it.
    assert await refused(http, revoking, tokens["access_token"])
    await eventually(lambda: refused(http, other, tokens["access_token"]), REACH, "the other replica refuses it")
    for replica in pair:
        refresh_refused(await refresh(http, replica.base, tokens["refresh_token"]))


async def test_a_replica_whose_subscription_dropped_forgets_what_it_cached(
    pair: tuple[Replica, Replica],
    http: httpx2.AsyncClient,
    redis_server: RedisServer,
    redis_url: str,
    same_deployment: AuthorizationServer,
) -> None:
    a, b = pair
    tokens = await sign_in_across(http, a.base, b.base, "public-client")
    for replica in pair:
        await whoami(http, replica, tokens["access_token"])  # verified, and cached, on both
    grant_id = claims(tokens["access_token"])["gid"]
    assert isinstance(grant_id, str)
    # The grant is revoked while the replicas' subscriptions are down: the message reaches no one.
    await same_deployment.grants.revoke(grant_id)
    store = RedisStore(redis_url)
    raw = redis.asyncio.Redis.from_url(redis_server.url)
    try:
        async with raw.pipeline(transaction=True) as atomic:
            atomic.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
            atomic.publish(store._channel(CHANNEL), grant_id.encode())
            killed, listeners = await atomic.execute()
    finally:
        await raw.aclose()
    assert killed >= 2  # both replicas were listening
    assert listeners == 0
    # Each replica's Redis client subscribes again by itself; messages may have been missed meanwhile.
    for replica in pair:

        async def forgot(replica: Replica = replica) -> bool:
            return await refused(http, replica, tokens["access_token"])

        await eventually(forgot, REACH, f"replica {replica.name} forgets the token it had cached")
