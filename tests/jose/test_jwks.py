"""JWTVerifier with a JWKS URL: caching, refetching, coalescing and outages, over real HTTP.

The key set is served by JWKSServer on a real uvicorn; time is a fake clock, so
lifetimes and refetch intervals are crossed without waiting.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest

from bastion import (
    ConfigurationError,
    InvalidSignature,
    JWKSOptions,
    JWTVerifier,
    KeysUnavailable,
    MCPServer,
    UnsupportedAlgorithm,
    get_access_token,
)
from bastion._jose.jwks import JWKSCache, shared_cache
from bastion._jose.keys import parse_key_set
from bastion.testing import JWKSServer, KeyPair

from support.clock import FakeClock
from support.notes import MCP_HEADERS, mcp_client, rpc, served

AUDIENCE = "https://mcp.example.com/mcp"


@pytest.fixture(scope="module")
def key() -> KeyPair:
    return KeyPair.generate("RS256", kid="key-1")


@pytest.fixture(scope="module")
def new_key() -> KeyPair:
    return KeyPair.generate("RS256", kid="key-2")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def server(key: KeyPair) -> Iterator[JWKSServer]:
    with JWKSServer(key) as running:
        yield running


def make_verifier(server: JWKSServer, clock: FakeClock, **options: Any) -> JWTVerifier:
    return JWTVerifier(jwks_uri=server.url, audience=AUDIENCE, clock=clock, **options)


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/jwks.json"


# -- the usual case ----------------------------------------------------------------------


async def test_keys_are_fetched_once_and_cached(server: JWKSServer, key: KeyPair, clock: FakeClock) -> None:
    verifier = make_verifier(server, clock)
    for subject in ("ann", "bob", "cy"):
        assert (await verifier.check(key.create_token(subject=subject, audience=AUDIENCE))).subject == subject
    assert server.requests == 1


@pytest.mark.parametrize("alg", ["ES256", "EdDSA", "PS256", "ES384"])
async def test_every_asymmetric_algorithm_from_a_key_set(clock: FakeClock, alg: str) -> None:
    keys = KeyPair.generate(alg)
    with JWKSServer(keys) as server:
        verifier = make_verifier(server, clock)
        assert (await verifier.check(keys.create_token(audience=AUDIENCE))).subject == "user"


async def test_verifiers_of_one_uri_share_one_cache(server: JWKSServer, key: KeyPair, clock: FakeClock) -> None:
    first, second = make_verifier(server, clock), make_verifier(server, clock, issuer="https://issuer.example")
    await first.check(key.create_token(audience=AUDIENCE))
    await second.check(key.create_token(audience=AUDIENCE))
    assert server.requests == 1
    assert shared_cache(server.url, clock=clock) is not shared_cache(server.url, clock=time.time)


# -- lifetimes ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cache_control", "ttl"),
    [
        (None, 300),  # the default
        ("max-age=120", 120),
        ("public, max-age=600, must-revalidate", 600),
        ('max-age="900"', 900),
        ("max-age=5", 60),  # bounded below
        ("max-age=0", 60),
        ("no-store", 60),
        ("no-cache", 60),
        ("max-age=31536000", 86400),  # bounded above
        ("max-age=banana", 300),
    ],
)
async def test_lifetime_from_cache_control(
    key: KeyPair, clock: FakeClock, cache_control: str | None, ttl: float
) -> None:
    with JWKSServer(key, cache_control=cache_control) as server:
        verifier = make_verifier(server, clock)
        token = key.create_token(audience=AUDIENCE, expires_in_seconds=30 * 86400)
        await verifier.check(token)
        clock.advance(ttl - 1)
        await verifier.check(token)
        assert server.requests == 1
        clock.advance(2)
        await verifier.check(token)
        assert server.requests == 2


async def test_lifetime_bounds_are_settable(key: KeyPair, clock: FakeClock) -> None:
    with JWKSServer(key, cache_control="max-age=5") as server:
        verifier = make_verifier(server, clock, jwks=JWKSOptions(min_ttl=1, refetch_interval=0))
        token = key.create_token(audience=AUDIENCE)
        await verifier.check(token)
        clock.advance(6)
        await verifier.check(token)
        assert server.requests == 2


# -- unknown kids, rotation, coalescing ----------------------------------------------------


async def test_key_rotation_is_picked_up(server: JWKSServer, key: KeyPair, new_key: KeyPair, clock: FakeClock) -> None:
    verifier = make_verifier(server, clock)
    await verifier.check(key.create_token(audience=AUDIENCE))
    server.set_keys(key, new_key)
    clock.advance(31)
    assert (await verifier.check(new_key.create_token(subject="new", audience=AUDIENCE))).subject == "new"
    assert server.requests == 2
    # The old key was removed at the next rotation: its tokens fail once the set is refreshed.
    server.set_keys(new_key)
    clock.advance(301)
    with pytest.raises(InvalidSignature):
        await verifier.check(key.create_token(audience=AUDIENCE))


async def test_unknown_kid_refetches_at_most_once_per_interval(
    server: JWKSServer, key: KeyPair, clock: FakeClock
) -> None:
    verifier = make_verifier(server, clock)
    await verifier.check(key.create_token(audience=AUDIENCE))
    stranger = KeyPair.generate("RS256", kid="stranger")
    clock.advance(31)
    for _ in range(5):
        with pytest.raises(InvalidSignature):
            await verifier.check(stranger.create_token(audience=AUDIENCE))
    assert server.requests == 2  # one refetch for the unknown kid, not five
    clock.advance(29)
    with pytest.raises(InvalidSignature):
        await verifier.check(stranger.create_token(audience=AUDIENCE, kid="another-stranger"))
    assert server.requests == 2
    clock.advance(2)
    with pytest.raises(InvalidSignature):
        await verifier.check(stranger.create_token(audience=AUDIENCE))
    assert server.requests == 3


async def test_refetch_interval_is_settable(server: JWKSServer, key: KeyPair, clock: FakeClock) -> None:
    verifier = make_verifier(server, clock, jwks=JWKSOptions(refetch_interval=5))
    await verifier.check(key.create_token(audience=AUDIENCE))
    stranger = KeyPair.generate("RS256", kid="stranger")
    clock.advance(6)
    with pytest.raises(InvalidSignature):
        await verifier.check(stranger.create_token(audience=AUDIENCE))
    assert server.requests == 2


async def test_concurrent_misses_make_one_fetch(server: JWKSServer, key: KeyPair, clock: FakeClock) -> None:
    verifier = make_verifier(server, clock)
    tokens = [key.create_token(subject=f"user-{n}", audience=AUDIENCE) for n in range(50)]
    results = await asyncio.gather(*(verifier.check(token) for token in tokens))
    assert [access.subject for access in results] == [f"user-{n}" for n in range(50)]
    assert server.requests == 1


async def test_concurrent_misses_of_a_new_kid_make_one_refetch(
    server: JWKSServer, key: KeyPair, new_key: KeyPair, clock: FakeClock
) -> None:
    verifier = make_verifier(server, clock)
    await verifier.check(key.create_token(audience=AUDIENCE))
    server.set_keys(key, new_key)
    clock.advance(31)
    tokens = [new_key.create_token(subject=f"user-{n}", audience=AUDIENCE) for n in range(50)]
    results = await asyncio.gather(*(verifier.check(token) for token in tokens))
    assert len({access.subject for access in results}) == 50
    assert server.requests == 2


async def test_concurrent_misses_on_a_failing_endpoint_make_one_attempt(clock: FakeClock, key: KeyPair) -> None:
    with JWKSServer(key) as server:
        server.status = 500
        verifier = make_verifier(server, clock)
        results = await asyncio.gather(
            *(verifier.check(key.create_token(audience=AUDIENCE)) for _ in range(20)), return_exceptions=True
        )
        assert all(isinstance(result, KeysUnavailable) for result in results)
        assert server.requests == 1


# -- tokens without kid, and key selection ------------------------------------------------


async def test_no_kid_with_one_key(server: JWKSServer, key: KeyPair, clock: FakeClock) -> None:
    verifier = make_verifier(server, clock)
    assert (await verifier.check(key.create_token(audience=AUDIENCE, kid=None))).subject == "user"


async def test_no_kid_tries_each_key_of_the_right_type(key: KeyPair, new_key: KeyPair, clock: FakeClock) -> None:
    ec = KeyPair.generate("ES256")
    with JWKSServer(ec, key, new_key) as server:
        verifier = make_verifier(server, clock)
        assert (await verifier.check(new_key.create_token(audience=AUDIENCE, kid=None))).subject == "user"
        assert (await verifier.check(ec.create_token(audience=AUDIENCE, kid=None))).subject == "user"
        with pytest.raises(InvalidSignature):
            await verifier.check(KeyPair.generate().create_token(audience=AUDIENCE, kid=None))


async def test_a_kid_of_another_key_type_does_not_verify(server: JWKSServer, key: KeyPair, clock: FakeClock) -> None:
    # The token names key-1 (RSA) but is an ES256 token: no key of that kid fits ES256.
    impostor = KeyPair.generate("ES256", kid="key-1")
    with pytest.raises(InvalidSignature, match="kid"):
        await make_verifier(server, clock).check(impostor.create_token(audience=AUDIENCE))


async def test_allow_list_applies_to_key_sets(server: JWKSServer, clock: FakeClock) -> None:
    ec = KeyPair.generate("ES256", kid="key-1")
    verifier = make_verifier(server, clock, algorithms=["RS256"])
    with pytest.raises(UnsupportedAlgorithm):
        await verifier.check(ec.create_token(audience=AUDIENCE))
    assert server.requests == 0  # refused before any key was needed


async def test_unusable_keys_are_skipped(key: KeyPair, clock: FakeClock) -> None:
    good = key.public_jwk()
    with JWKSServer() as server:
        server.jwks = {
            "keys": [
                {**good, "kid": "enc", "use": "enc"},
                {**good, "kid": "ops", "key_ops": ["encrypt"]},
                {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA"},
                {"kty": "PQC", "kid": "future", "x": "AAAA"},
                {"kty": "OKP", "crv": "X25519", "kid": "exchange", "x": "AAAA"},
                {"kty": "RSA", "kid": "short", "n": "AQAB", "e": "AQAB"},
                {"kty": "RSA", "kid": "broken", "n": 5, "e": "AQAB"},
                {"kty": "EC", "crv": "P-256", "kid": "off-curve", "x": "AAAA", "y": "AAAA"},
                "not a key",
                {**good, "kid": "key-1"},
            ]
        }
        verifier = make_verifier(server, clock)
        assert (await verifier.check(key.create_token(audience=AUDIENCE))).subject == "user"
        for kid in ("enc", "ops", "hmac"):
            with pytest.raises(InvalidSignature):
                await verifier.check(key.create_token(audience=AUDIENCE, kid=kid))


def test_parse_key_set_drops_private_members(key: KeyPair) -> None:
    private = key.key.as_dict(private=True, kid="key-1")
    [parsed] = parse_key_set({"keys": [private]})
    assert not parsed.is_private
    with pytest.raises(ValueError, match="no usable"):
        parse_key_set({"keys": []})
    with pytest.raises(ValueError, match="not a JWK Set"):
        parse_key_set({"keys": "nope"})


# -- outages -------------------------------------------------------------------------------

BAD_ANSWERS: list[tuple[str, dict[str, Any]]] = [
    ("http 500", {"status": 500}),
    ("http 404", {"status": 404}),
    ("garbage", {"body": b"\x00\xffnot json at all"}),
    ("json but not a key set", {"body": b'{"keys": "none"}'}),
    ("a key set of no usable key", {"body": json.dumps({"keys": [{"kty": "oct", "k": "AAAA"}]}).encode()}),
    ("deeply nested", {"body": b"[" * 100_000}),
    ("huge", {"body": b'{"keys": [' + b" " * (600 * 1024) + b"]}"}),
    ("slow", {"delay": 2.0}),
]


@pytest.mark.parametrize(("name", "failure"), BAD_ANSWERS, ids=[name for name, _ in BAD_ANSWERS])
async def test_failing_endpoint_without_a_good_set(
    key: KeyPair, clock: FakeClock, name: str, failure: dict[str, Any]
) -> None:
    with JWKSServer(key) as server:
        for attribute, value in failure.items():
            setattr(server, attribute, value)
        verifier = make_verifier(server, clock, jwks=JWKSOptions(timeout=0.3))
        token = key.create_token(audience=AUDIENCE)
        with pytest.raises(KeysUnavailable) as refused:
            await verifier.check(token)
        assert token not in str(refused.value)
        assert server.requests == 1
        # No retry within the refetch interval; the endpoint recovers; the next try succeeds.
        with pytest.raises(KeysUnavailable):
            await verifier.check(token)
        assert server.requests == 1
        server.reset()
        clock.advance(31)
        assert (await verifier.check(token)).subject == "user"


@pytest.mark.parametrize(("name", "failure"), BAD_ANSWERS, ids=[name for name, _ in BAD_ANSWERS])
async def test_failing_endpoint_keeps_the_last_good_set(
    key: KeyPair, clock: FakeClock, name: str, failure: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    with JWKSServer(key) as server:
        verifier = make_verifier(server, clock, jwks=JWKSOptions(timeout=0.3))
        token = key.create_token(audience=AUDIENCE)
        await verifier.check(token)
        for attribute, value in failure.items():
            setattr(server, attribute, value)
        clock.advance(301)  # the set expired: a refresh is due, and fails
        with caplog.at_level(logging.WARNING, logger="bastion"):
            assert (await verifier.check(token)).subject == "user"
        assert server.requests == 2
        assert "serving the last good key set" in caplog.text
        clock.advance(10)  # failures are retried once per refetch interval, not per token
        await verifier.check(token)
        assert server.requests == 2
        clock.advance(21)
        await verifier.check(token)
        assert server.requests == 3


async def test_endpoint_down(key: KeyPair, clock: FakeClock) -> None:
    verifier = JWTVerifier(jwks_uri=closed_port_url(), audience=AUDIENCE, clock=clock)
    with pytest.raises(KeysUnavailable):
        await verifier.check(key.create_token(audience=AUDIENCE))


async def test_endpoint_goes_down_after_a_good_fetch(key: KeyPair, clock: FakeClock) -> None:
    with JWKSServer(key) as server:
        verifier = make_verifier(server, clock)
        token = key.create_token(audience=AUDIENCE, expires_in_seconds=30 * 86400)
        await verifier.check(token)
    clock.advance(86400 * 7)  # long past any lifetime: still served, nothing better to do
    assert (await verifier.check(token)).subject == "user"


async def test_a_redirect_is_not_followed(key: KeyPair, clock: FakeClock) -> None:
    with JWKSServer(key) as server:
        server.status = 302
        with pytest.raises(KeysUnavailable):
            await make_verifier(server, clock).check(key.create_token(audience=AUDIENCE))


# -- configuration ----------------------------------------------------------------------------


def test_plain_http_to_a_remote_host_warns(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="bastion"):
        JWKSCache("http://127.0.0.1:8080/jwks")
        JWKSCache("http://localhost/jwks")
        assert "plain http" not in caplog.text
        JWKSCache("http://idp.internal/jwks")
    assert "plain http" in caplog.text


@pytest.mark.parametrize("uri", ["ftp://as.example/jwks", "as.example/jwks", "https://", "file:///etc/jwks.json"])
def test_bad_uris(uri: str) -> None:
    with pytest.raises(ConfigurationError):
        JWKSCache(uri)


async def test_keys_property_and_refresh(server: JWKSServer, clock: FakeClock) -> None:
    cache = JWKSCache(server.url, clock=clock)
    assert cache.keys == []
    await cache.refresh()
    assert [k.kid for k in cache.keys] == ["key-1"]
    await cache.refresh()  # within the refetch interval: no second request
    assert server.requests == 1


async def test_messages_name_no_credentials_nor_query(
    key: KeyPair, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    url = closed_port_url().replace("http://", "http://user:hunter2@") + "?api_key=topsecret"
    verifier = JWTVerifier(jwks_uri=url, audience=AUDIENCE, clock=clock)
    with caplog.at_level(logging.DEBUG, logger="bastion"), pytest.raises(KeysUnavailable) as refused:
        await verifier.check(key.create_token(audience=AUDIENCE))
    for text in (str(refused.value), caplog.text):
        assert "hunter2" not in text
        assert "topsecret" not in text


# -- end to end ---------------------------------------------------------------------------------

RESOURCE = "http://127.0.0.1/mcp"


async def test_end_to_end_through_mcp_server(server: JWKSServer, key: KeyPair) -> None:
    # No audience configured: the server's resource URL becomes it (expect_audience).
    verifier = JWTVerifier(jwks_uri=server.url, issuer="https://issuer.example")
    mcp = MCPServer("Notes", auth=verifier, resource_url=RESOURCE)

    @mcp.tool()
    def whoami() -> str:
        token = get_access_token()
        return f"{token.subject} {token.client_id} {' '.join(token.scopes)} {token.resource}"

    good = key.create_token(subject="ann", audience=RESOURCE, scopes=["notes:read"], client_id="app")
    with served(mcp, stateless_http=True, json_response=True) as url:
        async with mcp_client(url, good) as client:
            result = await client.call_tool("whoami", {})
        assert result.content[0].text == f"ann app notes:read {RESOURCE}"  # type: ignore[union-attr]
        async with httpx2.AsyncClient() as http:
            metadata = await http.get(url.replace("/mcp", "/.well-known/oauth-protected-resource/mcp"))
            assert metadata.json()["authorization_servers"] == ["https://issuer.example"]
            refused = [
                key.create_token(audience="https://other.example/mcp"),
                key.create_token(audience=RESOURCE, expires_in_seconds=-3600),
                KeyPair.generate(kid=key.kid).create_token(audience=RESOURCE),
                good[:-4] + "AAAA",
            ]
            for token in refused:
                response = await http.post(
                    url, json=rpc("tools/list"), headers={**MCP_HEADERS, "Authorization": f"Bearer {token}"}
                )
                assert response.status_code == 401
                assert 'error="invalid_token"' in response.headers["www-authenticate"]
                assert token not in response.text
    assert server.requests == 1
