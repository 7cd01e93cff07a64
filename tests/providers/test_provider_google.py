"""The Google provider, without Google: the endpoints and parameters it uses, and its id_token checks.

The id_tokens are signed with a test key and served from a local JWK Set: the provider's
description is copied with only its ``jwks_uri`` pointing there.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest

from bastion._core.errors import ConfigurationError
from bastion.providers.google import Google, google_upstream
from bastion.proxy import Upstream, UpstreamError, UpstreamTokens
from bastion.proxy._upstream_client import UpstreamClient
from bastion.storage import MemoryStore
from bastion.testing import JWKSServer, KeyPair, serve

from support.authserver import PUBLIC_CLIENT
from support.proxy import approve, free_port

CLIENT_ID = "1234567890-abc.apps.googleusercontent.com"
SUBJECT = "110169484474386276334"


@pytest.fixture(scope="module")
def key() -> KeyPair:
    return KeyPair.generate()


@pytest.fixture(scope="module")
def jwks(key: KeyPair) -> Iterator[JWKSServer]:
    with JWKSServer(key) as server:
        yield server


def local(upstream: Upstream, jwks: JWKSServer) -> UpstreamClient:
    """A client for Google's description, with the keys read from the local JWK Set."""
    return UpstreamClient(dataclasses.replace(upstream, jwks_uri=jwks.url))


def id_token(key: KeyPair, **claims: Any) -> UpstreamTokens:
    """Google's tokens with an id_token like Google's; ``claims`` change or add (``None`` removes) claims."""
    body: dict[str, Any] = {
        "iss": "https://accounts.google.com",
        "azp": CLIENT_ID,
        "at_hash": "HK6E_P6Dh8Y93mRNtsDB1Q",
        "email": "ada@example.com",
        "email_verified": True,
        "name": "Ada Lovelace",
        "picture": "https://lh3.googleusercontent.com/a/photo",
        "given_name": "Ada",
        "family_name": "Lovelace",
        "nonce": "n-0S6_WzA2Mj",
    }
    body.update(claims)
    iss = body.pop("iss")
    extra = {name: value for name, value in body.items() if value is not None}
    signed = key.create_token(subject=SUBJECT, issuer=iss, audience=CLIENT_ID, additional_claims=extra)
    return UpstreamTokens(access_token="ya29.a0Af", refresh_token="1//0g", id_token=signed)


def test_the_upstream_description() -> None:
    upstream = google_upstream(client_id=CLIENT_ID, client_secret="GOCSPX-secret")
    assert upstream.name == "Google"
    assert upstream.authorization_endpoint == "https://accounts.google.com/o/oauth2/v2/auth"
    assert upstream.token_endpoint == "https://oauth2.googleapis.com/token"
    assert upstream.userinfo_endpoint == "https://openidconnect.googleapis.com/v1/userinfo"
    assert upstream.jwks_uri == "https://www.googleapis.com/oauth2/v3/certs"
    assert upstream.revocation_endpoint == "https://oauth2.googleapis.com/revoke"
    assert upstream.issuer == "https://accounts.google.com"
    assert upstream.extra_issuers == ("accounts.google.com",)
    assert (upstream.identity, upstream.subject_claim, upstream.pkce) == ("id_token", "sub", True)
    assert upstream.scopes == ("openid", "email", "profile")
    assert dict(upstream.authorize_params) == {"access_type": "offline", "prompt": "consent"}
    assert dict(upstream.required_claims) == {}
    assert "GOCSPX-secret" not in repr(upstream)


def test_a_hosted_domain_is_asked_for_and_required() -> None:
    upstream = google_upstream(client_id=CLIENT_ID, client_secret="s", hosted_domain="example.com")
    assert dict(upstream.authorize_params) == {"access_type": "offline", "prompt": "consent", "hd": "example.com"}
    assert dict(upstream.required_claims) == {"hd": "example.com"}


def test_openid_is_required() -> None:
    with pytest.raises(ConfigurationError, match="openid"):
        Google(client_id=CLIENT_ID, client_secret="s", base_url="https://mcp.example.com", scopes=["email"])


async def test_the_authorization_url_sent_to_google() -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    auth = Google(
        client_id=CLIENT_ID,
        client_secret="GOCSPX-secret",
        base_url=base,
        scopes=["openid", "email", "https://www.googleapis.com/auth/calendar.readonly"],
        hosted_domain="example.com",
        store=MemoryStore(),
        clients=[PUBLIC_CLIENT],
    )
    assert auth.upstream.name == "Google"
    auth.add_resource(base + "/mcp")
    with serve(auth.app(), port=port):
        async with httpx2.AsyncClient() as http:
            location = await approve(http, base)
    parts = urlsplit(location)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == "https://accounts.google.com/o/oauth2/v2/auth"
    query = {name: values[0] for name, values in parse_qs(parts.query).items()}
    assert query["client_id"] == CLIENT_ID
    assert query["redirect_uri"] == base + "/auth/callback"
    assert query["response_type"] == "code"
    assert query["scope"] == "openid email https://www.googleapis.com/auth/calendar.readonly"
    assert (query["access_type"], query["prompt"], query["hd"]) == ("offline", "consent", "example.com")
    assert query["code_challenge_method"] == "S256"
    assert query["code_challenge"]
    assert query["nonce"]
    assert query["state"]
    assert "GOCSPX-secret" not in location


async def test_the_claims_of_a_verified_id_token(key: KeyPair, jwks: JWKSServer) -> None:
    client = local(google_upstream(client_id=CLIENT_ID, client_secret="s"), jwks)
    identity = await client.identity(id_token(key), "n-0S6_WzA2Mj")
    assert identity.subject == SUBJECT
    assert identity.email == "ada@example.com"
    assert identity.name == "Ada Lovelace"
    assert identity.claims["picture"] == "https://lh3.googleusercontent.com/a/photo"
    assert identity.claims["email_verified"] is True
    await client.aclose()


async def test_both_spellings_of_googles_issuer_are_accepted(key: KeyPair, jwks: JWKSServer) -> None:
    client = local(google_upstream(client_id=CLIENT_ID, client_secret="s"), jwks)
    identity = await client.identity(id_token(key, iss="accounts.google.com"), "n-0S6_WzA2Mj")
    assert identity.subject == SUBJECT
    await client.aclose()


@pytest.mark.parametrize(
    ("claims", "nonce", "message"),
    [
        ({"iss": "https://evil.example"}, "n-0S6_WzA2Mj", "not trusted"),
        ({"iss": "http://accounts.google.com"}, "n-0S6_WzA2Mj", "not trusted"),
        ({}, "another-nonce", "nonce"),
    ],
)
async def test_a_foreign_id_token_is_refused(
    key: KeyPair, jwks: JWKSServer, claims: dict[str, Any], nonce: str, message: str
) -> None:
    client = local(google_upstream(client_id=CLIENT_ID, client_secret="s"), jwks)
    with pytest.raises(UpstreamError, match=message):
        await client.identity(id_token(key, **claims), nonce)
    await client.aclose()


async def test_an_id_token_signed_by_another_key_is_refused(jwks: JWKSServer) -> None:
    client = local(google_upstream(client_id=CLIENT_ID, client_secret="s"), jwks)
    with pytest.raises(UpstreamError, match="id_token was refused"):
        await client.identity(id_token(KeyPair.generate()), "n-0S6_WzA2Mj")
    await client.aclose()


@pytest.mark.parametrize("hd", ["example.com", "other.example", None])
async def test_the_hosted_domain_is_checked_in_the_id_token(key: KeyPair, jwks: JWKSServer, hd: str | None) -> None:
    client = local(google_upstream(client_id=CLIENT_ID, client_secret="s", hosted_domain="example.com"), jwks)
    tokens = id_token(key, hd=hd)
    if hd == "example.com":
        identity = await client.identity(tokens, "n-0S6_WzA2Mj")
        assert identity.claims["hd"] == "example.com"
    else:
        # Another Workspace domain, or a consumer account (no hd): the hint in the URL is not enough.
        with pytest.raises(UpstreamError, match="outside the allowed hd"):
            await client.identity(tokens, "n-0S6_WzA2Mj")
    await client.aclose()
