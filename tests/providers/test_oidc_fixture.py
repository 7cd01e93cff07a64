"""The test OpenID provider behaves as the upstream the OAuth proxy's tests rely on: discovery, the code flow
with PKCE through its login and consent pages, ID tokens bastion verifies, rotating refresh tokens, userinfo,
revocation and the access token lifetime a test sets."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest

from bastion import JWTVerifier

from support.authserver import pkce_pair
from support.oidc import LOOPBACK_CALLBACK, OIDCProvider, SignInError, sign_in, skip_without_node
from support.oidc import oidc_provider_fixture as oidc_provider_fixture

CALLBACK = "http://127.0.0.1:8123/auth/callback"
#: ``LOOPBACK_CALLBACK`` on a port: the fixture's client, registered without one, accepts it.
PORTED_CALLBACK = "http://127.0.0.1:39001/auth/callback"


@pytest.fixture(name="http")
async def http_fixture() -> AsyncIterator[httpx2.AsyncClient]:
    """Fixture ``http``: one browser's cookie jar and the client's back channel."""
    async with httpx2.AsyncClient(timeout=10) as client:
        yield client


@pytest.fixture(name="short_lived")
def short_lived_fixture() -> Iterator[OIDCProvider]:
    """Fixture ``short_lived``: access tokens of 5 s."""
    skip_without_node()
    with OIDCProvider(redirect_uris=[CALLBACK], access_token_ttl=5) as provider:
        yield provider


async def discover(http: httpx2.AsyncClient, provider: OIDCProvider) -> dict[str, Any]:
    """The provider's discovery document."""
    response = await http.get(provider.config_url)
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


async def signed_in(
    http: httpx2.AsyncClient, provider: OIDCProvider, login: str = "alice", callback: str = CALLBACK
) -> dict[str, Any]:
    """The code flow with PKCE for ``login``: the token response (client_secret_basic)."""
    verifier, challenge = pkce_pair()
    state = secrets.token_urlsafe(16)
    authorize = provider.authorization_url(
        redirect_uri=callback,
        scope="openid email profile",
        state=state,
        code_challenge=challenge,
        code_challenge_method="S256",
    )
    redirect = await sign_in(http, authorize, login)
    assert redirect.startswith(callback + "?")
    query = parse_qs(urlsplit(redirect).query)
    assert query["state"] == [state]
    assert query["iss"] == [provider.issuer]
    return await redeem(http, provider, query["code"][0], callback, verifier)


async def redeem(
    http: httpx2.AsyncClient, provider: OIDCProvider, code: str, callback: str, verifier: str
) -> dict[str, Any]:
    """The token response to ``code`` (client_secret_basic)."""
    response = await http.post(
        f"{provider.issuer}/token",
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": callback, "code_verifier": verifier},
        auth=(provider.client_id, provider.client_secret),
    )
    assert response.status_code == 200, response.text
    tokens: dict[str, Any] = response.json()
    return tokens


async def test_discovery_names_the_issuer_endpoints_and_s256(
    http: httpx2.AsyncClient, oidc_provider: OIDCProvider
) -> None:
    document = await discover(http, oidc_provider)
    issuer = oidc_provider.issuer
    assert issuer.startswith("http://127.0.0.1:")
    assert document["issuer"] == issuer
    assert document["authorization_endpoint"] == oidc_provider.authorization_url().split("?")[0]
    assert document["token_endpoint"] == f"{issuer}/token"
    assert document["jwks_uri"] == f"{issuer}/jwks"
    assert document["userinfo_endpoint"] == f"{issuer}/me"
    assert document["revocation_endpoint"] == f"{issuer}/token/revocation"
    assert document["introspection_endpoint"] == f"{issuer}/token/introspection"
    assert document["code_challenge_methods_supported"] == ["S256"]
    assert {"openid", "email", "profile"} <= set(document["scopes_supported"])


async def test_code_flow_gives_tokens_and_an_id_token_bastion_verifies(
    http: httpx2.AsyncClient, oidc_provider: OIDCProvider
) -> None:
    tokens = await signed_in(http, oidc_provider, "carol", callback=PORTED_CALLBACK)
    assert tokens["token_type"].lower() == "bearer"
    assert tokens["access_token"]
    assert tokens["refresh_token"]
    assert tokens["expires_in"] == 3600
    assert set(tokens["scope"].split()) == {"openid", "email", "profile"}
    verifier = JWTVerifier(
        jwks_uri=f"{oidc_provider.issuer}/jwks", issuer=oidc_provider.issuer, audience=oidc_provider.client_id
    )
    identity = await verifier.check(tokens["id_token"])
    assert identity.subject == "carol"
    assert identity.claim("email") == "carol@example.com"
    assert identity.claim("email_verified") is True
    assert identity.claim("name") == "Carol"


async def test_the_code_needs_the_pkce_verifier(http: httpx2.AsyncClient, oidc_provider: OIDCProvider) -> None:
    callback = PORTED_CALLBACK
    authorize = oidc_provider.authorization_url(redirect_uri=callback, scope="openid")
    refused = parse_qs(urlsplit(await sign_in(http, authorize)).query)
    assert refused["error"] == ["invalid_request"]  # no code_challenge

    _, challenge = pkce_pair()
    authorize = oidc_provider.authorization_url(
        redirect_uri=callback, scope="openid", code_challenge=challenge, code_challenge_method="S256"
    )
    code = parse_qs(urlsplit(await sign_in(http, authorize)).query)["code"][0]
    response = await http.post(
        f"{oidc_provider.issuer}/token",
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": callback, "code_verifier": "x" * 43},
        auth=(oidc_provider.client_id, oidc_provider.client_secret),
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


async def test_refresh_rotates_the_refresh_token(http: httpx2.AsyncClient, short_lived: OIDCProvider) -> None:
    tokens = await signed_in(http, short_lived)
    refresh = {"client_id": short_lived.client_id, "client_secret": short_lived.client_secret}
    response = await http.post(
        f"{short_lived.issuer}/token",
        data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], **refresh},
    )
    assert response.status_code == 200, response.text
    renewed = response.json()
    assert renewed["access_token"] != tokens["access_token"]
    assert renewed["refresh_token"] != tokens["refresh_token"]
    assert renewed["id_token"]

    replayed = await http.post(
        f"{short_lived.issuer}/token",
        data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], **refresh},
    )
    assert replayed.status_code == 400
    assert replayed.json()["error"] == "invalid_grant"


async def test_the_access_token_lifetime_is_the_one_set(http: httpx2.AsyncClient, short_lived: OIDCProvider) -> None:
    tokens = await signed_in(http, short_lived)
    assert tokens["expires_in"] == 5
    introspected = await http.post(
        f"{short_lived.issuer}/token/introspection",
        data={
            "token": tokens["access_token"],
            "client_id": short_lived.client_id,
            "client_secret": short_lived.client_secret,
        },
    )
    details = introspected.json()
    assert details["active"] is True
    assert details["exp"] - details["iat"] == 5
    assert details["sub"] == "alice"


async def test_userinfo_gives_email_and_name(http: httpx2.AsyncClient, oidc_provider: OIDCProvider) -> None:
    tokens = await signed_in(http, oidc_provider, "dave", callback=LOOPBACK_CALLBACK)
    response = await http.get(
        f"{oidc_provider.issuer}/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert response.status_code == 200
    assert response.json() == {"sub": "dave", "email": "dave@example.com", "email_verified": True, "name": "Dave"}


async def test_revoked_tokens_stop_working(http: httpx2.AsyncClient, oidc_provider: OIDCProvider) -> None:
    tokens = await signed_in(http, oidc_provider, callback=LOOPBACK_CALLBACK)
    client = (oidc_provider.client_id, oidc_provider.client_secret)
    for kind in ("access_token", "refresh_token"):
        revoked = await http.post(f"{oidc_provider.issuer}/token/revocation", data={"token": tokens[kind]}, auth=client)
        assert revoked.status_code == 200
    userinfo = await http.get(
        f"{oidc_provider.issuer}/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert userinfo.status_code == 401
    refreshed = await http.post(
        f"{oidc_provider.issuer}/token",
        data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        auth=client,
    )
    assert refreshed.json()["error"] == "invalid_grant"


async def test_a_second_sign_in_reuses_the_session(http: httpx2.AsyncClient, oidc_provider: OIDCProvider) -> None:
    first = await signed_in(http, oidc_provider, "erin", callback=LOOPBACK_CALLBACK)
    again = await signed_in(http, oidc_provider, "someone-else", callback=LOOPBACK_CALLBACK)
    assert first["refresh_token"] != again["refresh_token"]
    info = await http.get(f"{oidc_provider.issuer}/me", headers={"Authorization": f"Bearer {again['access_token']}"})
    assert info.json()["sub"] == "erin"


async def test_sign_in_stops_at_an_unregistered_redirect(http: httpx2.AsyncClient, oidc_provider: OIDCProvider) -> None:
    authorize = oidc_provider.authorization_url(redirect_uri="https://elsewhere.example/cb", scope="openid")
    with pytest.raises(SignInError, match="answered 400"):
        await sign_in(http, authorize)


@pytest.mark.parametrize(("prompt", "scope"), [({}, "openid"), ({"prompt": "consent"}, "openid offline_access")])
async def test_a_refresh_token_comes_with_or_without_offline_access(
    http: httpx2.AsyncClient, oidc_provider: OIDCProvider, prompt: dict[str, str], scope: str
) -> None:
    # The provider keeps offline_access only with prompt=consent, and issues a refresh token either way.
    verifier, challenge = pkce_pair()
    authorize = oidc_provider.authorization_url(
        redirect_uri=PORTED_CALLBACK,
        scope="openid offline_access",
        code_challenge=challenge,
        code_challenge_method="S256",
        **prompt,
    )
    code = parse_qs(urlsplit(await sign_in(http, authorize)).query)["code"][0]
    tokens = await redeem(http, oidc_provider, code, PORTED_CALLBACK, verifier)
    assert tokens["scope"] == scope
    assert tokens["refresh_token"]


async def test_a_replayed_refresh_token_ends_the_grant(http: httpx2.AsyncClient, oidc_provider: OIDCProvider) -> None:
    tokens = await signed_in(http, oidc_provider, callback=PORTED_CALLBACK)
    client = (oidc_provider.client_id, oidc_provider.client_secret)
    token_url = f"{oidc_provider.issuer}/token"
    replay = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    rotated = (await http.post(token_url, data=replay, auth=client)).json()
    assert (await http.post(token_url, data=replay, auth=client)).status_code == 400

    after = await http.post(
        token_url, data={"grant_type": "refresh_token", "refresh_token": rotated["refresh_token"]}, auth=client
    )
    assert after.json()["error"] == "invalid_grant"
    userinfo = await http.get(
        f"{oidc_provider.issuer}/me", headers={"Authorization": f"Bearer {rotated['access_token']}"}
    )
    assert userinfo.status_code == 401
