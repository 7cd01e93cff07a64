"""Introspection (RFC 7662) over real HTTP, for authenticated resource servers."""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from bastion.authserver import AuthorizationServer
from bastion.authserver._codes import CodeGrant
from bastion.storage import SQLiteStore

from as_support import CONFIDENTIAL_SECRET, USERS, make_server, pkce_pair, serving

REDIRECT = "http://127.0.0.1:5173/callback"
RS_AUTH = {"Authorization": "Basic " + base64.b64encode(f"confidential-client:{CONFIDENTIAL_SECRET}".encode()).decode()}


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def server(tmp_path: Path, clock: Clock) -> AuthorizationServer:
    return make_server(tmp_path, clock=clock, store=SQLiteStore(tmp_path / "auth.db", clock=clock))


@pytest.fixture
def base(server: AuthorizationServer) -> Iterator[str]:
    with serving(server) as url:
        yield url


@pytest.fixture
async def http() -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient() as client:
        yield client


async def tokens_for(server: AuthorizationServer, http: httpx2.AsyncClient, base: str) -> dict[str, Any]:
    """Alice's tokens for the public client, through the authorization code grant."""
    verifier, challenge = pkce_pair()
    grant_id = await server.new_grant(USERS["alice"], "public-client")
    grant = CodeGrant(
        client_id="public-client",
        redirect_uri=REDIRECT,
        redirect_uri_sent=True,
        code_challenge=challenge,
        scopes=("notes:read", "notes:write"),
        resource=base + "/mcp",
        user=USERS["alice"],
        grant_id=grant_id,
        auth_time=int(server.clock()),
    )
    data = {
        "grant_type": "authorization_code",
        "code": await server.codes.issue(grant),
        "code_verifier": verifier,
        "redirect_uri": REDIRECT,
        "client_id": "public-client",
    }
    body: dict[str, Any] = (await http.post(base + "/token", data=data)).json()
    return body


async def introspect(http: httpx2.AsyncClient, base: str, token: str, **extra: str) -> dict[str, Any]:
    response = await http.post(base + "/introspect", data={"token": token, **extra}, headers=RS_AUTH)
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    body: dict[str, Any] = response.json()
    return body


async def test_an_access_token_is_active_with_its_claims(
    server: AuthorizationServer, base: str, http: httpx2.AsyncClient, clock: Clock
) -> None:
    tokens = await tokens_for(server, http, base)
    answer = await introspect(http, base, tokens["access_token"])
    assert answer["active"] is True
    assert answer["token_type"] == "Bearer"
    assert answer["scope"] == "notes:read notes:write"
    assert answer["client_id"] == "public-client"
    assert answer["sub"] == "alice"
    assert answer["aud"] == base + "/mcp"
    assert answer["iss"] == server.issuer
    assert answer["exp"] == answer["iat"] + 3600
    assert abs(answer["iat"] - clock.now) <= 1


async def test_a_refresh_token_is_active_until_rotated(
    server: AuthorizationServer, base: str, http: httpx2.AsyncClient
) -> None:
    tokens = await tokens_for(server, http, base)
    answer = await introspect(http, base, tokens["refresh_token"], token_type_hint="refresh_token")
    assert answer["active"] is True
    assert answer["token_type"] == "refresh_token"
    assert answer["client_id"] == "public-client"
    assert answer["sub"] == "alice"
    assert answer["scope"] == "notes:read notes:write"
    data = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], "client_id": "public-client"}
    assert (await http.post(base + "/token", data=data)).status_code == 200
    assert await introspect(http, base, tokens["refresh_token"]) == {"active": False}


async def test_expired_and_revoked_tokens_are_inactive(
    server: AuthorizationServer, base: str, http: httpx2.AsyncClient, clock: Clock
) -> None:
    tokens = await tokens_for(server, http, base)
    revoked = await tokens_for(server, http, base)
    await http.post(base + "/revoke", data={"token": revoked["refresh_token"], "client_id": "public-client"})
    assert await introspect(http, base, revoked["access_token"]) == {"active": False}
    assert await introspect(http, base, revoked["refresh_token"]) == {"active": False}
    clock.now += 3600 + 60
    assert await introspect(http, base, tokens["access_token"]) == {"active": False}
    assert (await introspect(http, base, tokens["refresh_token"]))["active"] is True


@pytest.mark.parametrize("token", ["unknown", "a.b.c", "x" * 8000, "eyJhbGciOiJub25lIn0.e30."])
async def test_anything_else_is_inactive_and_nothing_more(base: str, http: httpx2.AsyncClient, token: str) -> None:
    assert await introspect(http, base, token) == {"active": False}


async def test_only_authenticated_confidential_clients_may_introspect(
    server: AuthorizationServer, base: str, http: httpx2.AsyncClient
) -> None:
    tokens = await tokens_for(server, http, base)
    for data, headers in (
        ({"token": tokens["access_token"]}, {}),
        ({"token": tokens["access_token"], "client_id": "public-client"}, {}),
        (
            {"token": tokens["access_token"]},
            {"Authorization": "Basic " + base64.b64encode(b"confidential-client:x").decode()},
        ),
    ):
        response = await http.post(base + "/introspect", data=data, headers=headers)
        assert response.status_code == 401
        assert response.json()["error"] == "invalid_client"
        assert "active" not in response.json()


async def test_bad_requests(base: str, http: httpx2.AsyncClient) -> None:
    response = await http.post(base + "/introspect", data={}, headers=RS_AUTH)
    assert response.json()["error"] == "invalid_request"
    response = await http.post(
        base + "/introspect",
        content="token=a&token=b",
        headers={**RS_AUTH, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.json()["error"] == "invalid_request"
    assert (await http.get(base + "/introspect")).status_code == 405
