"""Introspection (RFC 7662) over real HTTP, for authenticated resource servers.

Only a client the operator allowed (``Client.introspection``) learns about every client's
tokens; any other authenticated client learns only about its own (RFC 7662 section 4).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx2
import pytest

from bastion.authserver import AuthorizationServer, Client
from bastion.authserver._models import hash_secret

from support.authserver import (
    CONFIDENTIAL_CLIENT,
    CONFIDENTIAL_SECRET,
    PUBLIC_CLIENT,
    basic_auth,
    clocked_server,
    code_tokens,
    make_server,
    refresh,
    serving,
)
from support.authserver import base_fixture as base_fixture
from support.authserver import clock_fixture as clock_fixture
from support.authserver import http_fixture as http_fixture
from support.clock import FakeClock

RS_SECRET = "resource-server-secret-0123456789abcdef"
#: A pre-registered resource server the operator allowed to introspect every client's tokens.
RESOURCE_SERVER = Client(
    client_id="resource-server",
    token_endpoint_auth_method="client_secret_basic",
    grant_types=("client_credentials",),
    client_secret_hash=hash_secret(RS_SECRET),
    introspection=True,
)
RS_AUTH = basic_auth("resource-server", RS_SECRET)


@pytest.fixture
def server(tmp_path: Path, clock: FakeClock) -> AuthorizationServer:
    return clocked_server(tmp_path, clock, clients=[PUBLIC_CLIENT, CONFIDENTIAL_CLIENT, RESOURCE_SERVER])


async def introspect(
    http: httpx2.AsyncClient, base: str, token: str, auth: dict[str, str] = RS_AUTH, **extra: str
) -> dict[str, Any]:
    response = await http.post(base + "/introspect", data={"token": token, **extra}, headers=auth)
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    body: dict[str, Any] = response.json()
    return body


async def test_an_access_token_is_active_with_its_claims(
    server: AuthorizationServer, base: str, http: httpx2.AsyncClient, clock: FakeClock
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
    server: AuthorizationServer, base: str, http: httpx2.AsyncClient, clock: FakeClock
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


# -- who may introspect what ----------------------------------------------------------------------


async def register_confidential(http: httpx2.AsyncClient, base: str) -> tuple[str, dict[str, str]]:
    """A confidential client registered through /register, asking for the introspection flag too."""
    metadata = {
        "client_name": "Curious",
        "grant_types": ["client_credentials"],
        "token_endpoint_auth_method": "client_secret_basic",
        "introspection": True,
    }
    response = await http.post(base + "/register", json=metadata)
    assert response.status_code == 201, response.text
    body = response.json()
    assert "introspection" not in body
    return body["client_id"], basic_auth(body["client_id"], body["client_secret"])


async def own_token(http: httpx2.AsyncClient, base: str, auth: dict[str, str]) -> str:
    data = {"grant_type": "client_credentials", "scope": "notes:read"}
    response = await http.post(base + "/token", data=data, headers=auth)
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


async def test_a_registered_client_learns_nothing_of_another_clients_tokens(
    server: AuthorizationServer, base: str, http: httpx2.AsyncClient
) -> None:
    tokens = await code_tokens(server, http, base)
    _, curious = await register_confidential(http, base)
    confidential = basic_auth("confidential-client", CONFIDENTIAL_SECRET)
    for auth in (curious, confidential):  # registered, or pre-registered without the flag
        for token in (tokens["access_token"], tokens["refresh_token"]):
            for hint in ("access_token", "refresh_token"):
                assert await introspect(http, base, token, auth, token_type_hint=hint) == {"active": False}
    # The allowed resource server still gets the whole answer for the same live tokens.
    assert (await introspect(http, base, tokens["access_token"]))["sub"] == "alice"
    assert (await introspect(http, base, tokens["refresh_token"]))["client_id"] == "public-client"


async def test_a_client_introspecting_its_own_token_gets_its_answer(
    server: AuthorizationServer, base: str, http: httpx2.AsyncClient
) -> None:
    client_id, curious = await register_confidential(http, base)
    answer = await introspect(http, base, await own_token(http, base, curious), curious)
    assert answer["active"] is True
    assert answer["client_id"] == answer["sub"] == client_id
    assert answer["scope"] == "notes:read"
    # Its token is its own: another unflagged client learns nothing of it.
    other = basic_auth("confidential-client", CONFIDENTIAL_SECRET)
    assert await introspect(http, base, await own_token(http, base, curious), other) == {"active": False}


async def test_a_resource_server_of_the_clients_file_may_introspect(tmp_path: Path, http: httpx2.AsyncClient) -> None:
    entries = [
        {"client_id": "public-client", "redirect_uris": ["http://127.0.0.1/callback"], "application_type": "native"},
        {
            "client_id": "resource-server",
            "client_secret": RS_SECRET,
            "grant_types": ["client_credentials"],
            "introspection": True,
        },
        {"client_id": "worker", "client_secret": CONFIDENTIAL_SECRET, "grant_types": ["client_credentials"]},
    ]
    path = tmp_path / "clients.json"
    path.write_text(json.dumps(entries))
    server = make_server(tmp_path, clients=path)
    with serving(server) as base:
        tokens = await code_tokens(server, http, base)
        assert (await introspect(http, base, tokens["access_token"]))["sub"] == "alice"
        worker = basic_auth("worker", CONFIDENTIAL_SECRET)
        assert await introspect(http, base, tokens["access_token"], worker) == {"active": False}
