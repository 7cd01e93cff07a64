"""Refresh tokens: rotation, retries until the successor is used, reuse detection, client binding, and races.

Time moves with a fake clock given to the server and its SQLite store; the
races are real: concurrent HTTP requests to one uvicorn server, and four
processes rotating the same token on one SQLite file.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from bastion.authserver import AuthorizationServer, Client, InvalidGrant, InvalidScope, InvalidTarget, TokenLifetimes
from bastion.authserver._grants.refresh_token import REFRESH_NAMESPACE, RefreshTokens
from bastion.authserver._models import hash_secret
from bastion.storage import SQLiteStore

from support.authserver import (
    CONFIDENTIAL_CLIENT,
    PUBLIC_CLIENT,
    SCOPES,
    USERS,
    clocked_server,
    code_tokens,
    make_server,
    refresh,
    serving,
)
from support.authserver import clock_fixture as clock_fixture
from support.authserver import http_fixture as http_fixture
from support.clock import FakeClock

OTHER_CLIENT = Client(client_id="other-public-client", redirect_uris=("http://127.0.0.1/callback",))


@pytest.fixture
def server(tmp_path: Path, clock: FakeClock) -> AuthorizationServer:
    return clocked_server(
        tmp_path,
        clock,
        clients=[PUBLIC_CLIENT, CONFIDENTIAL_CLIENT, OTHER_CLIENT],
    )


@pytest.fixture
def base(server: AuthorizationServer) -> Iterator[str]:
    with serving(server) as url:
        server.add_resource(url + "/other")
        yield url


async def family(server: AuthorizationServer, access_token: str) -> list[tuple[str, bytes]]:
    """The refresh token records of the grant an access token belongs to."""
    claims = (await server.verifier.verify(access_token)).claims or {}
    return await server.store.scan(REFRESH_NAMESPACE, claims["gid"])


# -- rotation --------------------------------------------------------------------------------------


async def test_every_refresh_rotates_the_token(
    server: AuthorizationServer, base: str, http: httpx2.AsyncClient
) -> None:
    first = await code_tokens(server, http, base)
    second = (await refresh(http, base, first["refresh_token"])).json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert second["scope"] == "notes:read notes:write"
    third = await refresh(http, base, second["refresh_token"])
    assert third.status_code == 200
    assert third.headers["cache-control"] == "no-store"
    access = await server.verifier.verify(third.json()["access_token"])
    assert access.subject == "alice"
    assert access.resource == base + "/mcp"


async def test_the_store_keeps_hashes_and_no_successor_in_the_clear(
    server: AuthorizationServer, base: str, http: httpx2.AsyncClient
) -> None:
    first = await code_tokens(server, http, base)
    second = (await refresh(http, base, first["refresh_token"])).json()
    records = await family(server, second["access_token"])
    assert sorted(key for key, _ in records) == sorted(
        hash_secret(token) for token in (first["refresh_token"], second["refresh_token"])
    )
    everything = b"".join(value for _, value in records)
    for token in (first["refresh_token"], second["refresh_token"], second["access_token"], first["access_token"]):
        assert token.encode() not in everything


async def test_scope_may_narrow_and_the_successor_keeps_the_grant(
    server: AuthorizationServer, base: str, http: httpx2.AsyncClient
) -> None:
    first = await code_tokens(server, http, base)
    narrowed = (await refresh(http, base, first["refresh_token"], scope="notes:read")).json()
    assert narrowed["scope"] == "notes:read"
    assert (await server.verifier.verify(narrowed["access_token"])).scopes == ["notes:read"]
    full = (await refresh(http, base, narrowed["refresh_token"])).json()
    assert full["scope"] == "notes:read notes:write"


@pytest.mark.parametrize("scope", ["offline_access", "notes:read admin", "unknown"])
async def test_scope_may_not_widen(
    server: AuthorizationServer, base: str, http: httpx2.AsyncClient, scope: str
) -> None:
    first = await code_tokens(server, http, base)
    response = await refresh(http, base, first["refresh_token"], scope=scope)
    assert response.json()["error"] == "invalid_scope"
    assert (await refresh(http, base, first["refresh_token"])).status_code == 200


async def test_resource_must_be_one_of_the_grant(
    server: AuthorizationServer, base: str, http: httpx2.AsyncClient
) -> None:
    first = await code_tokens(server, http, base)
    for resource in (base + "/other", "https://elsewhere.example/mcp", "relative"):
        response = await refresh(http, base, first["refresh_token"], resource=resource)
        assert response.json()["error"] == "invalid_target"
    same = await refresh(http, base, first["refresh_token"], resource=base + "/mcp")
    assert (await server.verifier.verify(same.json()["access_token"])).resource == base + "/mcp"


async def test_a_refresh_token_is_bound_to_its_client(
    server: AuthorizationServer, base: str, http: httpx2.AsyncClient
) -> None:
    first = await code_tokens(server, http, base)
    stolen = await refresh(http, base, first["refresh_token"], client_id="other-public-client")
    assert stolen.status_code == 400
    assert stolen.json()["error"] == "invalid_grant"
    # The owner is not harmed by a foreign client presenting its token.
    assert (await refresh(http, base, first["refresh_token"])).status_code == 200


async def test_unknown_and_expired_refresh_tokens(
    server: AuthorizationServer, base: str, http: httpx2.AsyncClient, clock: FakeClock
) -> None:
    assert (await refresh(http, base, "unknown-token")).json()["error"] == "invalid_grant"
    first = await code_tokens(server, http, base)
    clock.now += server.lifetimes.refresh_token + 1
    assert (await refresh(http, base, first["refresh_token"])).json()["error"] == "invalid_grant"


async def test_missing_refresh_token_parameter(base: str, http: httpx2.AsyncClient) -> None:
    data = {"grant_type": "refresh_token", "client_id": "public-client"}
    assert (await http.post(base + "/token", data=data)).json()["error"] == "invalid_request"


# -- retries until the successor is used, and reuse detection -------------------------------------------


async def assert_family_revoked(http: httpx2.AsyncClient, base: str, server: AuthorizationServer, tokens: Any) -> None:
    """The newest tokens of a family no longer work: the refresh token is refused, the access token too."""
    assert (await refresh(http, base, tokens["refresh_token"])).json()["error"] == "invalid_grant"
    with pytest.raises(Exception, match="revoked"):
        await server.verifier.verify(tokens["access_token"])


async def test_until_its_successor_is_used_the_old_token_returns_the_same_pair(
    server: AuthorizationServer, base: str, http: httpx2.AsyncClient, clock: FakeClock
) -> None:
    first = await code_tokens(server, http, base)
    second = (await refresh(http, base, first["refresh_token"])).json()
    clock.now += 10
    again = (await refresh(http, base, first["refresh_token"])).json()
    assert again["access_token"] == second["access_token"]
    assert again["refresh_token"] == second["refresh_token"]
    assert again["expires_in"] == second["expires_in"] - 10
    # Long after a 30 s window, within the access token's hour: the answer was lost, the client retries.
    clock.now += 1800
    later = (await refresh(http, base, first["refresh_token"])).json()
    assert (later["access_token"], later["refresh_token"]) == (second["access_token"], second["refresh_token"])
    assert later["expires_in"] == second["expires_in"] - 1810
    assert (await server.verifier.verify(later["access_token"])).subject == "alice"
    # The successor still works, exactly once more.
    assert (await refresh(http, base, second["refresh_token"])).status_code == 200


async def test_a_retry_after_the_access_token_expired_gets_it_counted_down_to_zero_and_a_working_successor(
    server: AuthorizationServer, base: str, http: httpx2.AsyncClient, clock: FakeClock
) -> None:
    first = await code_tokens(server, http, base)
    second = (await refresh(http, base, first["refresh_token"])).json()
    clock.now += 2 * 86400
    again = (await refresh(http, base, first["refresh_token"])).json()
    assert again["refresh_token"] == second["refresh_token"]
    assert again["expires_in"] == 0
    renewed = (await refresh(http, base, second["refresh_token"])).json()
    assert renewed["expires_in"] == server.lifetimes.access_token
    assert (await server.verifier.verify(renewed["access_token"])).subject == "alice"


async def test_the_old_token_after_its_successor_was_used_revokes_the_family(
    server: AuthorizationServer, base: str, http: httpx2.AsyncClient, clock: FakeClock
) -> None:
    first = await code_tokens(server, http, base)
    second = (await refresh(http, base, first["refresh_token"])).json()
    third = (await refresh(http, base, second["refresh_token"])).json()
    clock.now += 5
    reuse = await refresh(http, base, first["refresh_token"])
    assert reuse.status_code == 400
    assert reuse.json()["error"] == "invalid_grant"
    await assert_family_revoked(http, base, server, third)


async def test_a_retried_successor_returns_its_own_successor_and_the_first_token_revokes(
    server: AuthorizationServer, base: str, http: httpx2.AsyncClient, clock: FakeClock
) -> None:
    first = await code_tokens(server, http, base)
    second = (await refresh(http, base, first["refresh_token"])).json()
    third = (await refresh(http, base, second["refresh_token"])).json()
    clock.now += 600
    # The answer of the second rotation was lost: the second token gets the third pair again.
    again = (await refresh(http, base, second["refresh_token"])).json()
    assert (again["access_token"], again["refresh_token"]) == (third["access_token"], third["refresh_token"])
    # The first token's successor (the second) was used: the first one presented again was copied.
    assert (await refresh(http, base, first["refresh_token"])).json()["error"] == "invalid_grant"
    await assert_family_revoked(http, base, server, third)


async def test_past_refresh_grace_a_rotated_token_revokes_the_family(
    server: AuthorizationServer, base: str, http: httpx2.AsyncClient, clock: FakeClock
) -> None:
    first = await code_tokens(server, http, base)
    second = (await refresh(http, base, first["refresh_token"])).json()
    rotated_at = clock.now
    clock.now += 86400
    assert (await refresh(http, base, first["refresh_token"])).json()["refresh_token"] == second["refresh_token"]
    clock.now = rotated_at + server.lifetimes.refresh_grace + 1
    reuse = await refresh(http, base, first["refresh_token"])
    assert reuse.status_code == 400
    assert reuse.json()["error"] == "invalid_grant"
    assert (await refresh(http, base, second["refresh_token"])).json()["error"] == "invalid_grant"


async def test_another_client_presenting_a_rotated_token_is_refused(
    server: AuthorizationServer, base: str, http: httpx2.AsyncClient, clock: FakeClock
) -> None:
    first = await code_tokens(server, http, base)
    second = (await refresh(http, base, first["refresh_token"])).json()
    clock.now += 600
    stolen = await refresh(http, base, first["refresh_token"], client_id="other-public-client")
    assert stolen.status_code == 400
    assert stolen.json()["error"] == "invalid_grant"
    assert "refresh_token" not in stolen.json()
    assert (await refresh(http, base, first["refresh_token"])).json()["refresh_token"] == second["refresh_token"]


async def test_a_zero_grace_window_revokes_on_any_later_reuse(tmp_path: Path, clock: FakeClock) -> None:
    store = SQLiteStore(tmp_path / "zero.db", clock=clock)
    server = make_server(tmp_path, lifetimes=TokenLifetimes(refresh_grace=0), clock=clock, store=store)
    with serving(server) as base:
        async with httpx2.AsyncClient() as http:
            first = await code_tokens(server, http, base)
            second = (await refresh(http, base, first["refresh_token"])).json()
            clock.now += 1
            assert (await refresh(http, base, first["refresh_token"])).json()["error"] == "invalid_grant"
            assert (await refresh(http, base, second["refresh_token"])).json()["error"] == "invalid_grant"


async def test_the_sealed_pair_is_dropped_at_the_successors_first_use(
    server: AuthorizationServer, base: str, http: httpx2.AsyncClient
) -> None:
    first = await code_tokens(server, http, base)
    second = (await refresh(http, base, first["refresh_token"])).json()
    old_key = hash_secret(first["refresh_token"])
    assert "sealed" in json.loads(await server.store.get(REFRESH_NAMESPACE, old_key) or b"{}")
    assert (await refresh(http, base, second["refresh_token"])).status_code == 200
    record = json.loads(await server.store.get(REFRESH_NAMESPACE, old_key) or b"{}")
    assert record["state"] == "rotated"
    assert "sealed" not in record


async def test_a_used_successor_revokes_even_when_the_sealed_pair_was_not_dropped(
    server: AuthorizationServer, base: str, http: httpx2.AsyncClient
) -> None:
    first = await code_tokens(server, http, base)
    second = (await refresh(http, base, first["refresh_token"])).json()
    old_key = hash_secret(first["refresh_token"])
    kept = await server.store.get(REFRESH_NAMESPACE, old_key)
    assert kept is not None
    third = (await refresh(http, base, second["refresh_token"])).json()
    # As if the server had stopped between the successor's rotation and dropping the pair.
    claims = (await server.verifier.verify(third["access_token"])).claims or {}
    await server.store.put(REFRESH_NAMESPACE, old_key, kept, 3600, index=claims["gid"])
    assert (await refresh(http, base, first["refresh_token"])).json()["error"] == "invalid_grant"
    await assert_family_revoked(http, base, server, third)


# -- races ---------------------------------------------------------------------------------------


async def test_twenty_concurrent_refreshes_rotate_once_and_agree(
    server: AuthorizationServer, base: str, http: httpx2.AsyncClient
) -> None:
    first = await code_tokens(server, http, base)
    responses = await asyncio.gather(*(refresh(http, base, first["refresh_token"]) for _ in range(20)))
    assert {response.status_code for response in responses} == {200}
    bodies = [response.json() for response in responses]
    assert len({body["refresh_token"] for body in bodies}) == 1
    assert len({body["access_token"] for body in bodies}) == 1
    records = await family(server, bodies[0]["access_token"])
    assert len(records) == 2
    assert (await refresh(http, base, bodies[0]["refresh_token"])).status_code == 200


async def test_twenty_concurrent_retries_long_after_the_rotation_get_the_same_successor(
    server: AuthorizationServer, base: str, http: httpx2.AsyncClient, clock: FakeClock
) -> None:
    first = await code_tokens(server, http, base)
    second = (await refresh(http, base, first["refresh_token"])).json()
    clock.now += 2700
    responses = await asyncio.gather(*(refresh(http, base, first["refresh_token"]) for _ in range(20)))
    assert {response.status_code for response in responses} == {200}
    assert {response.json()["refresh_token"] for response in responses} == {second["refresh_token"]}
    assert {response.json()["access_token"] for response in responses} == {second["access_token"]}
    assert len(await family(server, second["access_token"])) == 2
    assert (await refresh(http, base, second["refresh_token"])).status_code == 200


async def bobs_refresh_token(server: AuthorizationServer) -> tuple[RefreshTokens, str, str]:
    """Without HTTP: a refresh token of bob's for the public client (notes:read); the issuer, token and grant id."""
    server.set_issuer("http://127.0.0.1:1")
    server.add_resource("http://127.0.0.1:1/mcp")
    grant_id = await server.new_grant(USERS["bob"], "public-client")
    tokens = RefreshTokens(server)
    token = await tokens.issue(
        client_id="public-client",
        user=USERS["bob"],
        scopes=("notes:read",),
        resources=("http://127.0.0.1:1/mcp",),
        grant_id=grant_id,
    )
    return tokens, token, grant_id


async def test_concurrent_rotations_in_one_process_without_http(server: AuthorizationServer) -> None:
    tokens, token, grant_id = await bobs_refresh_token(server)
    results = await asyncio.gather(*(tokens.rotate(token, PUBLIC_CLIENT) for _ in range(20)))
    assert len({result.refresh_token for result in results}) == 1
    assert len(await server.store.scan(REFRESH_NAMESPACE, grant_id)) == 2


async def test_rotate_refusals_raise_oauth_errors(server: AuthorizationServer) -> None:
    tokens, token, grant_id = await bobs_refresh_token(server)
    with pytest.raises(InvalidScope):
        await tokens.rotate(token, PUBLIC_CLIENT, "notes:write")
    with pytest.raises(InvalidTarget):
        await tokens.rotate(token, PUBLIC_CLIENT, None, "https://elsewhere.example/")
    with pytest.raises(InvalidGrant):
        await tokens.rotate(token, OTHER_CLIENT)
    await server.revoke_grant(grant_id)
    with pytest.raises(InvalidGrant):
        await tokens.rotate(token, PUBLIC_CLIENT)


ISSUER = "http://127.0.0.1:9"
RESOURCE = ISSUER + "/mcp"


def _rotate_in_process(path: str, token: str, barrier: Any, results: Any) -> None:
    """One worker process: its own store on the shared file, its own server, one rotation."""

    async def run() -> tuple[str | None, str]:
        async with SQLiteStore(path) as store:
            server = AuthorizationServer(
                ISSUER, store=store, scopes=SCOPES, clients=[PUBLIC_CLIENT], resources=[RESOURCE]
            )
            barrier.wait()
            rotated = await RefreshTokens(server).rotate(token, PUBLIC_CLIENT)
            return rotated.refresh_token, rotated.access_token

    try:
        results.put(asyncio.run(run()))
    except Exception as exc:  # reported to the test, which fails with it
        results.put(("error", repr(exc)))


async def test_four_processes_rotating_one_token_rotate_it_once(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    async with SQLiteStore(path) as store:
        server = AuthorizationServer(ISSUER, store=store, scopes=SCOPES, clients=[PUBLIC_CLIENT], resources=[RESOURCE])
        # Mint once here so the signing key exists before the workers start.
        await server.access_tokens.mint(
            client_id="public-client", subject="bob", scopes=(), resource=RESOURCE, grant_id=None
        )
        grant_id = await server.new_grant(USERS["bob"], "public-client")
        token = await RefreshTokens(server).issue(
            client_id="public-client",
            user=USERS["bob"],
            scopes=("notes:read",),
            resources=(RESOURCE,),
            grant_id=grant_id,
        )
        context = multiprocessing.get_context("spawn")
        barrier = context.Barrier(4)
        results = context.Queue()
        workers = [
            context.Process(target=_rotate_in_process, args=(str(path), token, barrier, results)) for _ in range(4)
        ]
        for worker in workers:
            worker.start()
        outcomes = [await asyncio.to_thread(results.get, True, 60) for _ in workers]
        for worker in workers:
            worker.join(30)
        assert all(outcome[0] != "error" for outcome in outcomes), outcomes
        assert len({outcome for outcome in outcomes}) == 1
        assert len(await store.scan(REFRESH_NAMESPACE, grant_id)) == 2
