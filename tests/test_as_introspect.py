"""Introspection (RFC 7662) over real HTTP, for authenticated resource servers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx2
import pytest

from bastion.authserver import AuthorizationServer

from as_support import CONFIDENTIAL_SECRET, Clock, basic_auth, clocked_server, code_tokens, refresh
from as_support import base_fixture as base_fixture
from as_support import clock_fixture as clock_fixture
from as_support import http_fixture as http_fixture

RS_AUTH = basic_auth("confidential-client", CONFIDENTIAL_SECRET)


@pytest.fixture
def server(tmp_path: Path, clock: Clock) -> AuthorizationServer:
    return clocked_server(tmp_path, clock)


async def introspect(http: httpx2.AsyncClient, base: str, token: str, **extra: str) -> dict[str, Any]:
    response = await http.post(base + "/introspect", data={"token": token, **extra}, headers=RS_AUTH)
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    body: dict[str, Any] = response.json()
    return body


async def test_an_access_token_is_active_with_its_claims(
    server: AuthorizationServer, base: str, http: httpx2.AsyncClient, clock: Clock
) -> None:
    tokens = await code_tokens(server, http, base)
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
    tokens = await code_tokens(server, http, base)
    answer = await introspect(http, base, tokens["refresh_token"], token_type_hint="refresh_token")
    assert answer["active"] is True
    assert answer["token_type"] == "refresh_token"
    assert answer["client_id"] == "public-client"
    assert answer["sub"] == "alice"
    assert answer["scope"] == "notes:read notes:write"
    assert (await refresh(http, base, tokens["refresh_token"])).status_code == 200
    assert await introspect(http, base, tokens["refresh_token"]) == {"active": False}


async def test_expired_and_revoked_tokens_are_inactive(
    server: AuthorizationServer, base: str, http: httpx2.AsyncClient, clock: Clock
) -> None:
    tokens = await code_tokens(server, http, base)
    revoked = await code_tokens(server, http, base)
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
    tokens = await code_tokens(server, http, base)
    for data, headers in (
        ({"token": tokens["access_token"]}, {}),
        ({"token": tokens["access_token"], "client_id": "public-client"}, {}),
        (
            {"token": tokens["access_token"]},
            basic_auth("confidential-client", "x"),
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
