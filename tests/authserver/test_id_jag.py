"""The JWT bearer grant with ID-JAG identity assertions (enterprise-managed authorization).

A ``KeyPair`` behind a ``JWKSServer`` plays the enterprise identity provider;
the client redeems its assertions at the real token endpoint.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from bastion.authserver import AuthorizationServer, Client
from bastion.authserver._grants.jwt_bearer import ID_JAG_TYP, JWT_BEARER
from bastion.authserver._models import hash_secret
from bastion.testing import JWKSServer, KeyPair

from support.authserver import (
    CONFIDENTIAL_CLIENT,
    CONFIDENTIAL_SECRET,
    PUBLIC_CLIENT,
    basic_auth,
    make_server,
    oauth_error,
)
from support.authserver import base_fixture as base_fixture
from support.authserver import http_fixture as http_fixture

IDP = "https://idp.example"
IDP_KEY = KeyPair.generate("ES256", kid="idp-1")
STRANGER_KEY = KeyPair.generate("ES256", kid="idp-1")
AGENT_SECRET = "agent-secret-0123456789-0123456789-abcdef"
AGENT = Client(
    client_id="agent",
    token_endpoint_auth_method="client_secret_basic",
    grant_types=(JWT_BEARER,),
    client_secret_hash=hash_secret(AGENT_SECRET),
)
AGENT_AUTH = basic_auth("agent", AGENT_SECRET)


@pytest.fixture
def idp() -> Iterator[JWKSServer]:
    with JWKSServer(IDP_KEY) as jwks:
        yield jwks


@pytest.fixture
def server(tmp_path: Path, idp: JWKSServer) -> AuthorizationServer:
    return make_server(
        tmp_path,
        clients=[PUBLIC_CLIENT, CONFIDENTIAL_CLIENT, AGENT],
        identity_assertion_issuers={IDP: idp.url},
    )


def id_jag(server: AuthorizationServer, key: KeyPair = IDP_KEY, typ: str = ID_JAG_TYP, **claims: Any) -> str:
    """An identity assertion from the IdP for the agent, acting for user U019488227."""
    now = int(time.time())
    payload: dict[str, Any] = {
        "jti": secrets.token_urlsafe(12),
        "iss": IDP,
        "sub": "U019488227",
        "aud": server.issuer,
        "client_id": "agent",
        "exp": now + 300,
        "iat": now,
        "resource": server.resources[0],
        "scope": "notes:read notes:write",
        "email": "user@acme.example",
    }
    payload.update(claims)
    return key.sign({k: v for k, v in payload.items() if v is not None}, headers={"typ": typ})


async def redeem(http: httpx2.AsyncClient, base: str, assertion: str, **extra: str) -> httpx2.Response:
    data = {"grant_type": JWT_BEARER, "assertion": assertion, **extra}
    return await http.post(base + "/token", data=data, headers=AGENT_AUTH)


async def test_an_identity_assertion_is_redeemed_for_an_access_token(
    server: AuthorizationServer, base: str, http: httpx2.AsyncClient
) -> None:
    response = await redeem(http, base, id_jag(server))
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["scope"] == "notes:read notes:write"
    assert "refresh_token" not in body
    access = await server.verifier.verify(body["access_token"])
    assert access.subject == "U019488227"
    assert access.client_id == "agent"
    assert access.resource == base + "/mcp"
    assert (access.claims or {})["email"] == "user@acme.example"


async def test_the_issuer_without_its_trailing_slash_and_a_narrowed_scope(
    server: AuthorizationServer, base: str, http: httpx2.AsyncClient
) -> None:
    assertion = id_jag(server, aud=base, resource=[base + "/mcp"])
    # The scopes issued are those both the request and the assertion name.
    response = await redeem(http, base, assertion, scope="notes:read offline_access")
    assert response.status_code == 200
    assert response.json()["scope"] == "notes:read"


async def test_an_assertion_is_single_use(server: AuthorizationServer, base: str, http: httpx2.AsyncClient) -> None:
    assertion = id_jag(server)
    assert (await redeem(http, base, assertion)).status_code == 200
    assert oauth_error(await redeem(http, base, assertion)) == "invalid_grant"


async def test_the_access_token_can_be_revoked(
    server: AuthorizationServer, base: str, http: httpx2.AsyncClient
) -> None:
    token = (await redeem(http, base, id_jag(server))).json()["access_token"]
    response = await http.post(base + "/revoke", data={"token": token}, headers=AGENT_AUTH)
    assert response.status_code == 200
    with pytest.raises(Exception, match="revoked"):
        await server.verifier.verify(token)


@pytest.mark.parametrize(
    "claims",
    [
        {"aud": "https://other-as.example/"},
        {"aud": None},
        {"client_id": "confidential-client"},
        {"client_id": None},
        {"iss": "https://untrusted.example"},
        {"iss": None},
        {"exp": int(time.time()) - 120},
        {"exp": None},
        {"iat": None},
        {"jti": None},
        {"jti": ""},
        {"sub": None},
        {"resource": 42},
    ],
)
async def test_assertion_claims_are_checked(
    server: AuthorizationServer, base: str, http: httpx2.AsyncClient, claims: dict[str, Any]
) -> None:
    assert oauth_error(await redeem(http, base, id_jag(server, **claims))) == "invalid_grant"


async def test_typ_and_signature_are_checked(server: AuthorizationServer, base: str, http: httpx2.AsyncClient) -> None:
    assert oauth_error(await redeem(http, base, id_jag(server, typ="JWT"))) == "invalid_grant"
    assert oauth_error(await redeem(http, base, id_jag(server, typ="at+jwt"))) == "invalid_grant"
    assert oauth_error(await redeem(http, base, id_jag(server, key=STRANGER_KEY))) == "invalid_grant"
    for garbage in ("not-a-jwt", "a.b.c", "é.é.é"):
        assert oauth_error(await redeem(http, base, garbage)) == "invalid_grant"


@pytest.mark.parametrize(
    ("claims", "extra", "error"),
    [
        ({"resource": "https://elsewhere.example/mcp"}, {}, "invalid_grant"),
        ({"resource": ["https://elsewhere.example/mcp"]}, {}, "invalid_grant"),
        ({"scope": "notes:read unknown:scope"}, {}, "invalid_grant"),
        ({"scope": "notes:read"}, {"scope": "notes:write"}, "invalid_scope"),
        ({}, {"resource": "https://elsewhere.example/mcp"}, "invalid_target"),
    ],
)
async def test_resource_and_scope_are_checked(
    server: AuthorizationServer,
    base: str,
    http: httpx2.AsyncClient,
    claims: dict[str, Any],
    extra: dict[str, str],
    error: str,
) -> None:
    assert oauth_error(await redeem(http, base, id_jag(server, **claims), **extra)) == error


async def test_request_errors(server: AuthorizationServer, base: str, http: httpx2.AsyncClient) -> None:
    response = await http.post(base + "/token", data={"grant_type": JWT_BEARER}, headers=AGENT_AUTH)
    assert oauth_error(response) == "invalid_request"
    data = {"grant_type": JWT_BEARER, "assertion": id_jag(server, client_id="confidential-client")}
    response = await http.post(
        base + "/token", data=data, headers=basic_auth("confidential-client", CONFIDENTIAL_SECRET)
    )
    assert oauth_error(response) == "unauthorized_client"


async def test_an_identity_provider_outage_is_temporarily_unavailable(
    server: AuthorizationServer, base: str, http: httpx2.AsyncClient, idp: JWKSServer
) -> None:
    idp.status = 500
    response = await redeem(http, base, id_jag(server))
    assert response.status_code == 503
    assert oauth_error(response) == "temporarily_unavailable"
