"""Revocation (RFC 7009) over real HTTP: refresh and access tokens revoke their grant; strangers get 200."""

from __future__ import annotations

from pathlib import Path

import httpx2
import pytest

from bastion._core.errors import TokenInactive
from bastion.authserver import AuthorizationServer, Client

from support.authserver import (
    CONFIDENTIAL_CLIENT,
    CONFIDENTIAL_SECRET,
    PUBLIC_CLIENT,
    basic_auth,
    code_tokens,
    make_server,
    refresh,
)
from support.authserver import base_fixture as base_fixture
from support.authserver import http_fixture as http_fixture

OTHER_CLIENT = Client(client_id="other-public-client", redirect_uris=("http://127.0.0.1/callback",))


@pytest.fixture
def server(tmp_path: Path) -> AuthorizationServer:
    return make_server(tmp_path, clients=[PUBLIC_CLIENT, CONFIDENTIAL_CLIENT, OTHER_CLIENT])


async def revoke(http: httpx2.AsyncClient, base: str, **data: str) -> httpx2.Response:
    data.setdefault("client_id", "public-client")
    return await http.post(base + "/revoke", data=data)


async def test_revoking_the_refresh_token_revokes_the_grant(
    server: AuthorizationServer, base: str, http: httpx2.AsyncClient
) -> None:
    tokens = await code_tokens(server, http, base, scopes=("notes:read",))
    response = await revoke(http, base, token=tokens["refresh_token"], token_type_hint="refresh_token")
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["cache-control"] == "no-store"
    assert (await refresh(http, base, tokens["refresh_token"])).status_code == 400
    with pytest.raises(TokenInactive):
        await server.verifier.verify(tokens["access_token"])


async def test_revoking_the_access_token_revokes_the_grant(
    server: AuthorizationServer, base: str, http: httpx2.AsyncClient
) -> None:
    tokens = await code_tokens(server, http, base, scopes=("notes:read",))
    await server.verifier.verify(tokens["access_token"])  # cached as valid first
    for hint in ("access_token", None):
        data = {"token": tokens["access_token"]}
        if hint:
            data["token_type_hint"] = hint
        assert (await revoke(http, base, **data)).status_code == 200
    with pytest.raises(TokenInactive):
        await server.verifier.verify(tokens["access_token"])
    assert (await refresh(http, base, tokens["refresh_token"])).status_code == 400


async def test_a_wrong_hint_still_finds_the_token(
    server: AuthorizationServer, base: str, http: httpx2.AsyncClient
) -> None:
    tokens = await code_tokens(server, http, base, scopes=("notes:read",))
    assert (await revoke(http, base, token=tokens["refresh_token"], token_type_hint="access_token")).status_code == 200
    assert (await refresh(http, base, tokens["refresh_token"])).status_code == 400
    other = await code_tokens(server, http, base, scopes=("notes:read",))
    assert (await revoke(http, base, token=other["access_token"], token_type_hint="bogus")).status_code == 200
    assert (await refresh(http, base, other["refresh_token"])).status_code == 400


async def test_another_clients_token_is_answered_200_and_left_alone(
    server: AuthorizationServer, base: str, http: httpx2.AsyncClient
) -> None:
    tokens = await code_tokens(server, http, base, scopes=("notes:read",))
    for token in (tokens["refresh_token"], tokens["access_token"]):
        response = await revoke(http, base, token=token, client_id="other-public-client")
        assert response.status_code == 200
    response = await http.post(
        base + "/revoke",
        data={"token": tokens["refresh_token"]},
        headers=basic_auth("confidential-client", CONFIDENTIAL_SECRET),
    )
    assert response.status_code == 200
    assert (await refresh(http, base, tokens["refresh_token"])).status_code == 200


@pytest.mark.parametrize("token", ["unknown", "a.b.c", "x" * 8000, "eyJhbGciOiJub25lIn0.e30."])
async def test_unknown_tokens_are_answered_200(base: str, http: httpx2.AsyncClient, token: str) -> None:
    assert (await revoke(http, base, token=token)).status_code == 200


async def test_client_authentication_is_required(base: str, http: httpx2.AsyncClient) -> None:
    response = await http.post(base + "/revoke", data={"token": "x"})
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    response = await revoke(http, base, token="x", client_id="nobody")
    assert response.status_code == 401
    bad = basic_auth("confidential-client", "wrong-secret")
    response = await http.post(base + "/revoke", data={"token": "x"}, headers=bad)
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


async def test_a_client_credentials_token_can_be_revoked(
    server: AuthorizationServer, base: str, http: httpx2.AsyncClient
) -> None:
    auth = basic_auth(CONFIDENTIAL_CLIENT.client_id, CONFIDENTIAL_SECRET)
    issued = await http.post(
        base + "/token", data={"grant_type": "client_credentials", "scope": "notes:read"}, headers=auth
    )
    assert issued.status_code == 200, issued.text
    token = issued.json()["access_token"]
    assert (await server.verifier.verify(token)).subject == CONFIDENTIAL_CLIENT.client_id
    answer = await http.post(base + "/revoke", data={"token": token}, headers=auth)
    assert answer.status_code == 200
    with pytest.raises(TokenInactive):
        await server.verifier.verify(token)
