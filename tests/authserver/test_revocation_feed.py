"""A revocation on one replica reaches the verified-token caches of the others through the store.

Two ``AuthorizationServer`` objects on one Redis, or on one SQLite file, stand for two
replicas or workers: each has its own caches and its own store handle, as two processes
would. (tests/authserver/test_replicas.py runs real processes.)
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bastion import AccessToken, ConfigurationError
from bastion._core.errors import TokenInactive
from bastion.authserver import AuthorizationServer, User
from bastion.storage import RedisStore, Store, open_store

from support.authserver import PUBLIC_CLIENT, SCOPES

ISSUER = "https://auth.example"
RESOURCE = "https://mcp.example/mcp"


def replica(store: Store) -> AuthorizationServer:
    return AuthorizationServer(ISSUER, store=store, scopes=SCOPES, clients=[PUBLIC_CLIENT], resources=[RESOURCE])


@pytest.fixture(params=["redis", "sqlite"])
async def stores(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[Store, Store]]:
    url = f"sqlite:///{tmp_path / 'auth.db'}"
    if request.param == "redis":
        url = str(request.getfixturevalue("redis_url"))
    one, two = open_store(url), open_store(url)
    yield one, two
    await one.aclose()
    await two.aclose()


async def _token(server: AuthorizationServer) -> tuple[str, str]:
    grant_id = await server.new_grant(User("alice"), PUBLIC_CLIENT.client_id)
    token, _ = await server.access_tokens.mint(
        client_id=PUBLIC_CLIENT.client_id, subject="alice", scopes=("notes:read",), resource=RESOURCE, grant_id=grant_id
    )
    return token, grant_id


async def _forgotten(server: AuthorizationServer) -> asyncio.Event:
    """An event set when ``server`` next clears its caches for a revocation it was told of."""
    event = asyncio.Event()
    original = server.revocations.forget

    def forget() -> None:
        original()
        event.set()

    server.revocations.forget = forget
    return event


async def test_a_revocation_clears_the_other_replicas_cache(stores: tuple[Store, Store]) -> None:
    first, second = replica(stores[0]), replica(stores[1])
    token, grant_id = await _token(first)
    told = await _forgotten(second)
    await second.revocations.watch()  # returns once subscribed
    assert not told.is_set()  # nothing was cached before: nothing to forget
    verifier = second.resource_verifier(RESOURCE)
    assert isinstance(await verifier.verify(token), AccessToken)  # now in the second replica's cache
    await first.revoke_grant(grant_id)
    await asyncio.wait_for(told.wait(), timeout=10)
    with pytest.raises(TokenInactive):
        await verifier.verify(token)


async def test_a_seen_token_is_verified_without_redis(stores: tuple[Store, Store]) -> None:
    server = replica(stores[0])
    token, _ = await _token(server)
    verifier = server.resource_verifier(RESOURCE)
    first = await verifier.verify(token)
    await stores[0].aclose()  # any call to the store would fail now
    assert await verifier.verify(token) is first


async def test_bastion_store_names_the_store_of_a_server_given_none(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BASTION_STORE", redis_url)
    server = AuthorizationServer(ISSUER)
    assert isinstance(server.store, RedisStore)
    assert server.store.prefix == redis_url.split("prefix=")[1]
    await server.store.aclose()
    monkeypatch.setenv("BASTION_STORE", "postgres://db/auth")
    with pytest.raises(ConfigurationError, match="BASTION_STORE"):
        AuthorizationServer(ISSUER)
