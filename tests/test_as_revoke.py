"""Revocation (RFC 7009) over real HTTP: refresh and access tokens revoke their grant; strangers get 200."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from bastion._errors import TokenInactive
from bastion.authserver import AuthorizationServer, Client
from bastion.authserver._codes import CodeGrant

from as_support import CONFIDENTIAL_CLIENT, CONFIDENTIAL_SECRET, PUBLIC_CLIENT, USERS, make_server, pkce_pair, serving

REDIRECT = "http://127.0.0.1:5173/callback"
OTHER_CLIENT = Client(client_id="other-public-client", redirect_uris=("http://127.0.0.1/callback",))


@pytest.fixture
def server(tmp_path: Path) -> AuthorizationServer:
    return make_server(tmp_path, clients=[PUBLIC_CLIENT, CONFIDENTIAL_CLIENT, OTHER_CLIENT])


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
        scopes=("notes:read",),
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


async def refresh_status(http: httpx2.AsyncClient, base: str, token: str) -> int:
    data = {"grant_type": "refresh_token", "refresh_token": token, "client_id": "public-client"}
    return (await http.post(base + "/token", data=data)).status_code


async def revoke(http: httpx2.AsyncClient, base: str, **data: str) -> httpx2.Response:
    data.setdefault("client_id", "public-client")
    return await http.post(base + "/revoke", data=data)


async def test_revoking_the_refresh_token_revokes_the_grant(
    server: AuthorizationServer, base: str, http: httpx2.AsyncClient
) -> None:
    tokens = await tokens_for(server, http, base)
    response = await revoke(http, base, token=tokens["refresh_token"], token_type_hint="refresh_token")
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["cache-control"] == "no-store"
    assert await refresh_status(http, base, tokens["refresh_token"]) == 400
    with pytest.raises(TokenInactive):
        await server.verifier.verify(tokens["access_token"])


async def test_revoking_the_access_token_revokes_the_grant(
    server: AuthorizationServer, base: str, http: httpx2.AsyncClient
) -> None:
    tokens = await tokens_for(server, http, base)
    await server.verifier.verify(tokens["access_token"])  # cached as valid first
    for hint in ("access_token", None):
        data = {"token": tokens["access_token"]}
        if hint:
            data["token_type_hint"] = hint
        assert (await revoke(http, base, **data)).status_code == 200
    with pytest.raises(TokenInactive):
        await server.verifier.verify(tokens["access_token"])
    assert await refresh_status(http, base, tokens["refresh_token"]) == 400


async def test_a_wrong_hint_still_finds_the_token(
    server: AuthorizationServer, base: str, http: httpx2.AsyncClient
) -> None:
    tokens = await tokens_for(server, http, base)
    assert (await revoke(http, base, token=tokens["refresh_token"], token_type_hint="access_token")).status_code == 200
    assert await refresh_status(http, base, tokens["refresh_token"]) == 400
    other = await tokens_for(server, http, base)
    assert (await revoke(http, base, token=other["access_token"], token_type_hint="bogus")).status_code == 200
    assert await refresh_status(http, base, other["refresh_token"]) == 400


async def test_another_clients_token_is_answered_200_and_left_alone(
    server: AuthorizationServer, base: str, http: httpx2.AsyncClient
) -> None:
    tokens = await tokens_for(server, http, base)
    for token in (tokens["refresh_token"], tokens["access_token"]):
        response = await revoke(http, base, token=token, client_id="other-public-client")
        assert response.status_code == 200
    basic = base64.b64encode(f"confidential-client:{CONFIDENTIAL_SECRET}".encode()).decode()
    response = await http.post(
        base + "/revoke", data={"token": tokens["refresh_token"]}, headers={"Authorization": f"Basic {basic}"}
    )
    assert response.status_code == 200
    assert await refresh_status(http, base, tokens["refresh_token"]) == 200


@pytest.mark.parametrize("token", ["unknown", "a.b.c", "x" * 8000, "eyJhbGciOiJub25lIn0.e30."])
async def test_unknown_tokens_are_answered_200(base: str, http: httpx2.AsyncClient, token: str) -> None:
    assert (await revoke(http, base, token=token)).status_code == 200


async def test_client_authentication_is_required(base: str, http: httpx2.AsyncClient) -> None:
    response = await http.post(base + "/revoke", data={"token": "x"})
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    response = await revoke(http, base, token="x", client_id="nobody")
    assert response.status_code == 401
    bad = base64.b64encode(b"confidential-client:wrong-secret").decode()
    response = await http.post(base + "/revoke", data={"token": "x"}, headers={"Authorization": f"Basic {bad}"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Basic")


async def test_bad_requests(base: str, http: httpx2.AsyncClient) -> None:
    assert (await revoke(http, base)).json()["error"] == "invalid_request"
    repeated = "token=a&token=b&client_id=public-client"
    response = await http.post(
        base + "/revoke", content=repeated, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert response.json()["error"] == "invalid_request"
    assert (await http.post(base + "/revoke", json={"token": "x"})).status_code == 400
    assert (await http.get(base + "/revoke")).status_code == 405
