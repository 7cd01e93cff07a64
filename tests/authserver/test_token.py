"""The token endpoint over real HTTP: the authorization code grant, client credentials, and bad input.

Codes are issued directly through the server's code store (the browser pages
are tested elsewhere); every request goes through a real uvicorn server to a
real SQLite file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx2
import pytest

from bastion.authserver import AuthorizationServer, Client, InvalidGrant
from bastion.authserver._grants.refresh_token import REFRESH_NAMESPACE
from bastion.authserver._models import hash_secret

from support.authserver import (
    CONFIDENTIAL_CLIENT,
    CONFIDENTIAL_SECRET,
    PUBLIC_CLIENT,
    REDIRECT,
    basic_auth,
    clocked_server,
    code_request,
    issue_code,
    oauth_error,
    pkce_pair,
)
from support.authserver import base_fixture as base_fixture
from support.authserver import clock_fixture as clock_fixture
from support.authserver import http_fixture as http_fixture
from support.clock import FakeClock

SECRET_POST = "post-client-secret-value-0123456789abcdef"
POST_CLIENT = Client(
    client_id="post-client",
    redirect_uris=("https://post.example.com/cb",),
    token_endpoint_auth_method="client_secret_post",
    grant_types=("authorization_code", "client_credentials"),
    client_secret_hash=hash_secret(SECRET_POST),
    scope="notes:read",
)
NO_REFRESH_CLIENT = Client(
    client_id="no-refresh-client",
    redirect_uris=("http://127.0.0.1/callback",),
    grant_types=("authorization_code",),
)


@pytest.fixture
def server(tmp_path: Path, clock: FakeClock) -> AuthorizationServer:
    return clocked_server(
        tmp_path,
        clock,
        clients=[PUBLIC_CLIENT, CONFIDENTIAL_CLIENT, POST_CLIENT, NO_REFRESH_CLIENT],
    )


# -- authorization_code: the happy path ----------------------------------------------------------


async def test_code_grant_issues_an_audience_bound_token_and_a_refresh_token(
    server: AuthorizationServer, base: str, http: httpx2.AsyncClient
) -> None:
    response = await http.post(base + "/token", data=await code_request(server))
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert body["scope"] == "notes:read"
    assert body["refresh_token"]
    access = await server.verifier.verify(body["access_token"])
    assert access.subject == "alice"
    assert access.client_id == "public-client"
    assert access.resource == base + "/mcp"
    assert access.scopes == ["notes:read"]


async def test_no_refresh_token_for_a_client_without_the_refresh_grant(
    server: AuthorizationServer, base: str, http: httpx2.AsyncClient
) -> None:
    verifier, challenge = pkce_pair()
    code = await issue_code(server, client_id="no-refresh-client", challenge=challenge)
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "code_verifier": verifier,
        "redirect_uri": REDIRECT,
        "client_id": "no-refresh-client",
    }
    response = await http.post(base + "/token", data=data)
    assert response.status_code == 200
    assert "refresh_token" not in response.json()


async def test_redirect_uri_may_be_omitted_when_the_authorization_request_had_none(
    server: AuthorizationServer, base: str, http: httpx2.AsyncClient
) -> None:
    verifier, challenge = pkce_pair()
    code = await issue_code(server, challenge=challenge, sent=False)
    data = {"grant_type": "authorization_code", "code": code, "code_verifier": verifier, "client_id": "public-client"}
    assert (await http.post(base + "/token", data=data)).status_code == 200


async def test_resource_parameter_naming_the_authorized_resource_is_accepted(
    server: AuthorizationServer, base: str, http: httpx2.AsyncClient
) -> None:
    response = await http.post(base + "/token", data=await code_request(server, resource=base + "/mcp"))
    assert response.status_code == 200


# -- authorization_code: refusals ----------------------------------------------------------------


async def test_code_replay_is_refused_and_revokes_what_the_first_redemption_issued(
    server: AuthorizationServer, base: str, http: httpx2.AsyncClient
) -> None:
    data = await code_request(server)
    first = (await http.post(base + "/token", data=data)).json()
    replay = await http.post(base + "/token", data=data)
    assert replay.status_code == 400
    assert oauth_error(replay) == "invalid_grant"
    refresh = {"grant_type": "refresh_token", "refresh_token": first["refresh_token"], "client_id": "public-client"}
    refused = await http.post(base + "/token", data=refresh)
    assert oauth_error(refused) == "invalid_grant"
    server.on_revocation()
    with pytest.raises(Exception, match="revoked"):
        await server.verifier.verify(first["access_token"])


@pytest.mark.parametrize(
    "redirect_uri",
    [
        None,
        "http://127.0.0.1:5173/callback/",
        "http://127.0.0.1:5173/Callback",
        "http://127.0.0.1:5173/callback?x=1",
        "http://127.0.0.1:5174/callback",
        "http://localhost:5173/callback",
    ],
)
async def test_redirect_uri_must_repeat_the_authorization_requests_exactly(
    server: AuthorizationServer, base: str, http: httpx2.AsyncClient, redirect_uri: str | None
) -> None:
    response = await http.post(base + "/token", data=await code_request(server, redirect_uri=redirect_uri))
    assert response.status_code == 400
    assert oauth_error(response) == "invalid_grant"


async def test_wrong_code_verifier_is_refused(server: AuthorizationServer, base: str, http: httpx2.AsyncClient) -> None:
    other, _ = pkce_pair()
    response = await http.post(base + "/token", data=await code_request(server, code_verifier=other))
    assert oauth_error(response) == "invalid_grant"


async def test_plain_pkce_downgrade_is_refused(
    server: AuthorizationServer, base: str, http: httpx2.AsyncClient
) -> None:
    """A verifier equal to the challenge (what "plain" would accept) does not pass S256."""
    verifier, challenge = pkce_pair()
    code = await issue_code(server, challenge=challenge)
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "code_verifier": challenge,
        "code_challenge_method": "plain",
        "redirect_uri": REDIRECT,
        "client_id": "public-client",
    }
    response = await http.post(base + "/token", data=data)
    assert oauth_error(response) == "invalid_grant"
    # The code is spent: the right verifier does not bring it back.
    data["code_verifier"] = verifier
    assert oauth_error(await http.post(base + "/token", data=data)) == "invalid_grant"


@pytest.mark.parametrize("verifier", [None, "short", "x" * 129, "a" * 42 + "!", "é" * 43])
async def test_missing_or_malformed_code_verifier_is_invalid_request_and_leaves_the_code(
    server: AuthorizationServer, base: str, http: httpx2.AsyncClient, verifier: str | None
) -> None:
    good, challenge = pkce_pair()
    data = {"grant_type": "authorization_code", "code": await issue_code(server, challenge=challenge)}
    data.update({"redirect_uri": REDIRECT, "client_id": "public-client"})
    if verifier is not None:
        data["code_verifier"] = verifier
    response = await http.post(base + "/token", data=data)
    assert response.status_code == 400
    assert oauth_error(response) == "invalid_request"
    data["code_verifier"] = good
    assert (await http.post(base + "/token", data=data)).status_code == 200


async def test_code_of_another_client_is_refused(
    server: AuthorizationServer, base: str, http: httpx2.AsyncClient
) -> None:
    data = await code_request(server, client_id="no-refresh-client")
    response = await http.post(base + "/token", data=data)
    assert oauth_error(response) == "invalid_grant"


async def test_unknown_and_expired_codes_are_refused(
    server: AuthorizationServer, base: str, http: httpx2.AsyncClient, clock: FakeClock
) -> None:
    assert (
        oauth_error(await http.post(base + "/token", data=await code_request(server, code="nope"))) == "invalid_grant"
    )
    data = await code_request(server)
    clock.now += 61
    assert oauth_error(await http.post(base + "/token", data=data)) == "invalid_grant"


@pytest.mark.parametrize("resource", ["https://elsewhere.example/mcp", "not a url", "https://x.example/#frag"])
async def test_resource_other_than_the_authorized_one_is_invalid_target(
    server: AuthorizationServer, base: str, http: httpx2.AsyncClient, resource: str
) -> None:
    response = await http.post(base + "/token", data=await code_request(server, resource=resource))
    assert oauth_error(response) == "invalid_target"


# -- parameters ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["grant_type", "code", "client_id"])
async def test_missing_parameter(server: AuthorizationServer, base: str, http: httpx2.AsyncClient, name: str) -> None:
    data = await code_request(server, **{name: None})
    response = await http.post(base + "/token", data=data)
    assert response.status_code in (400, 401)
    assert oauth_error(response) in ("invalid_request", "invalid_client")
    if name != "client_id":
        assert oauth_error(response) == "invalid_request"


@pytest.mark.parametrize("name", ["grant_type", "code", "code_verifier", "redirect_uri", "client_id", "resource"])
async def test_duplicated_parameter_is_invalid_request(
    server: AuthorizationServer, base: str, http: httpx2.AsyncClient, name: str
) -> None:
    data = await code_request(server, resource=base + "/mcp")
    body = httpx2.QueryParams(data).add(name, data[name])
    response = await http.post(
        base + "/token", content=str(body), headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert response.status_code == 400
    assert oauth_error(response) == "invalid_request"


@pytest.mark.parametrize("name", ["grant_type", "code", "code_verifier", "redirect_uri", "client_id", "resource"])
async def test_oversized_parameter_is_invalid_request(
    server: AuthorizationServer, base: str, http: httpx2.AsyncClient, name: str
) -> None:
    data = await code_request(server, **{name: "a" * 9000})
    response = await http.post(base + "/token", data=data)
    assert response.status_code == 400
    assert oauth_error(response) == "invalid_request"


async def test_oversized_body_is_invalid_request(
    server: AuthorizationServer, base: str, http: httpx2.AsyncClient
) -> None:
    data = await code_request(server)
    data["padding"] = "a" * 70_000
    response = await http.post(base + "/token", data=data)
    assert oauth_error(response) == "invalid_request"


async def test_unknown_grant_type(server: AuthorizationServer, base: str, http: httpx2.AsyncClient) -> None:
    for grant_type in ("password", "implicit", "urn:ietf:params:oauth:grant-type:device_code", "x" * 100):
        data = await code_request(server, grant_type=grant_type)
        response = await http.post(base + "/token", data=data)
        assert response.status_code == 400
        assert oauth_error(response) == "unsupported_grant_type"
    # The ID-JAG grant is only offered when identity providers are configured.
    data = {"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": "a.b.c", "client_id": "x"}
    assert oauth_error(await http.post(base + "/token", data=data)) == "unsupported_grant_type"


async def test_grant_type_the_client_did_not_register_is_unauthorized_client(
    base: str, http: httpx2.AsyncClient
) -> None:
    data = {"grant_type": "client_credentials", "client_id": "public-client"}
    response = await http.post(base + "/token", data=data)
    assert oauth_error(response) == "unauthorized_client"


async def test_parameters_in_the_query_string_or_as_json_are_refused(
    server: AuthorizationServer, base: str, http: httpx2.AsyncClient
) -> None:
    data = await code_request(server)
    response = await http.post(base + "/token", params=data)
    assert oauth_error(response) == "invalid_request"
    response = await http.post(base + "/token", json=data)
    assert oauth_error(response) == "invalid_request"
    response = await http.post(base + "/token?grant_type=authorization_code", data=data)
    assert oauth_error(response) == "invalid_request"


async def test_non_utf8_body_and_get_are_refused_without_a_server_error(base: str, http: httpx2.AsyncClient) -> None:
    response = await http.post(
        base + "/token", content=b"grant_type=\xff\xfe", headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert oauth_error(response) == "invalid_request"
    assert (await http.get(base + "/token")).status_code == 405


async def test_a_store_outage_is_temporarily_unavailable(
    server: AuthorizationServer, base: str, http: httpx2.AsyncClient
) -> None:
    data = await code_request(server)
    await server.store.aclose()
    response = await http.post(base + "/token", data=data)
    assert response.status_code == 503
    assert response.json() == {
        "error": "temporarily_unavailable",
        "error_description": "the server cannot answer now, try again later",
    }
    assert data["code"] not in response.text


# -- client_credentials --------------------------------------------------------------------------


async def test_client_credentials_issue_a_token_for_the_client_itself(
    server: AuthorizationServer, base: str, http: httpx2.AsyncClient
) -> None:
    data = {"grant_type": "client_credentials", "scope": "notes:read notes:write", "resource": base + "/mcp"}
    response = await http.post(
        base + "/token", data=data, headers=basic_auth("confidential-client", CONFIDENTIAL_SECRET)
    )
    assert response.status_code == 200
    body = response.json()
    assert "refresh_token" not in body
    assert body["scope"] == "notes:read notes:write"
    access = await server.verifier.verify(body["access_token"])
    assert access.subject == "confidential-client"
    assert access.client_id == "confidential-client"
    assert access.resource == base + "/mcp"


async def test_client_credentials_with_client_secret_post_and_registered_scopes(
    base: str, http: httpx2.AsyncClient
) -> None:
    data = {"grant_type": "client_credentials", "client_id": "post-client", "client_secret": SECRET_POST}
    response = await http.post(base + "/token", data=data)
    assert response.status_code == 200
    assert "scope" not in response.json()
    data["scope"] = "notes:write"
    assert oauth_error(await http.post(base + "/token", data=data)) == "invalid_scope"
    data["scope"] = "notes:read"
    assert (await http.post(base + "/token", data=data)).json()["scope"] == "notes:read"


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("scope", "unknown:scope", "invalid_scope"),
        ("resource", "https://elsewhere.example/mcp", "invalid_target"),
    ],
)
async def test_client_credentials_refusals(
    base: str, http: httpx2.AsyncClient, field: str, value: str, error: str
) -> None:
    data = {"grant_type": "client_credentials", field: value}
    response = await http.post(
        base + "/token", data=data, headers=basic_auth("confidential-client", CONFIDENTIAL_SECRET)
    )
    assert oauth_error(response) == error


async def test_client_credentials_refuse_a_public_client(
    server: AuthorizationServer, base: str, http: httpx2.AsyncClient
) -> None:
    # Registration refuses such a client; one stored by other means is refused here all the same.
    await server.clients.save(Client(client_id="public-cc", grant_types=("client_credentials",)))
    response = await http.post(base + "/token", data={"grant_type": "client_credentials", "client_id": "public-cc"})
    assert oauth_error(response) == "unauthorized_client"


async def test_a_replay_racing_the_first_redemption_leaves_no_refresh_token(
    server: AuthorizationServer, base: str, http: httpx2.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The replay revokes the grant while the first redemption is still minting: it must not hand out tokens."""
    data = await code_request(server)
    mint = server.access_tokens.mint
    grants: list[str] = []

    async def mint_while_replayed(**claims: Any) -> tuple[str, int]:
        with pytest.raises(InvalidGrant):
            await server.codes.redeem(data["code"], "public-client")
        grants.append(claims["grant_id"])
        return await mint(**claims)

    monkeypatch.setattr(server.access_tokens, "mint", mint_while_replayed)
    response = await http.post(base + "/token", data=data)
    assert oauth_error(response) == "invalid_grant"
    assert await server.store.scan(REFRESH_NAMESPACE, grants[0]) == []
