"""The discovery document cache against a real metadata endpoint: lifetimes, single flight, outages, validation.

The documents are served by a Starlette app on a real uvicorn; time is a fake clock,
so lifetimes and refetch intervals are crossed without waiting.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bastion import ConfigurationError
from bastion._resource.discovery import (
    DiscoveryCache,
    DiscoveryUnavailable,
    discovery_urls,
    issuer_from_config_url,
    same_issuer,
    shared_discovery,
)
from bastion.testing import serve

from support.clock import FakeClock

OIDC = "/.well-known/openid-configuration"


class MetadataServer:
    """Serves metadata documents at any path over real HTTP; the test sets the answers and counts requests."""

    def __init__(self) -> None:
        self.documents: dict[str, Any] = {}
        self.status = 200
        self.body: bytes | None = None
        self.cache_control: str | None = None
        self.delay = 0.0
        self.base = ""
        self.requests: dict[str, int] = {}
        self._lock = threading.Lock()
        self.app = Starlette(routes=[Route("/{path:path}", self.endpoint)])

    def total(self) -> int:
        return sum(self.requests.values())

    def publish(self, path: str, **members: Any) -> str:
        """A valid document at ``path`` for the issuer ``base + issuer_path``; returns the URL."""
        issuer = issuer_from_config_url(self.base + path)
        self.documents[path] = {
            "issuer": issuer,
            "authorization_endpoint": issuer + "/authorize",
            "token_endpoint": issuer + "/token",
            "jwks_uri": issuer + "/jwks",
            **members,
        }
        return self.base + path

    async def endpoint(self, request: Request) -> Response:
        path = request.url.path
        with self._lock:
            self.requests[path] = self.requests.get(path, 0) + 1
        remaining = self.delay
        while remaining > 0:
            if await request.is_disconnected():
                return Response(status_code=499)
            await anyio.sleep(min(remaining, 0.02))
            remaining -= 0.02
        if path not in self.documents:
            return Response("not found", status_code=404)
        body = self.body if self.body is not None else json.dumps(self.documents[path]).encode()
        headers = {"cache-control": self.cache_control} if self.cache_control else None
        return Response(body, status_code=self.status, headers=headers, media_type="application/json")


@pytest.fixture(scope="module")
def running() -> Iterator[MetadataServer]:
    server = MetadataServer()
    with serve(server.app) as base:
        server.base = base
        yield server


@pytest.fixture
def server(running: MetadataServer) -> MetadataServer:
    running.documents.clear()
    running.requests.clear()
    running.status = 200
    running.body = None
    running.cache_control = None
    running.delay = 0.0
    return running


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make_cache(url: str, clock: FakeClock, **options: Any) -> DiscoveryCache:
    return DiscoveryCache(url, clock=clock, **options)


# -- where a document lives, and whose it is ----------------------------------------------


@pytest.mark.parametrize(
    ("url", "issuer"),
    [
        ("https://idp.example/.well-known/openid-configuration", "https://idp.example"),
        ("https://idp.example/realms/acme/.well-known/openid-configuration", "https://idp.example/realms/acme"),
        ("https://idp.example/.well-known/oauth-authorization-server", "https://idp.example"),
        ("https://idp.example/.well-known/oauth-authorization-server/tenant/1", "https://idp.example/tenant/1"),
        ("https://idp.example/.well-known/openid-configuration/tenant", "https://idp.example/tenant"),
        ("https://idp.example/realms/acme/.well-known/oauth-authorization-server", "https://idp.example/realms/acme"),
        ("https://idp.example:8443/t/v2.0/.well-known/openid-configuration?appid=x", "https://idp.example:8443/t/v2.0"),
    ],
)
def test_issuer_from_config_url(url: str, issuer: str) -> None:
    assert issuer_from_config_url(url) == issuer


@pytest.mark.parametrize(
    "url",
    [
        "https://idp.example/",
        "https://idp.example/openid-configuration",
        "ftp://idp.example/.well-known/openid-configuration",
        "https://user:pw@idp.example/.well-known/openid-configuration",
        "/.well-known/openid-configuration",
    ],
)
def test_a_url_that_is_not_a_discovery_url_is_a_configuration_error(url: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        issuer_from_config_url(url)
    assert "pw" not in str(caught.value)


def test_discovery_urls_follow_rfc8414_then_oidc() -> None:
    assert discovery_urls("https://idp.example/") == (
        "https://idp.example/.well-known/oauth-authorization-server",
        "https://idp.example/.well-known/openid-configuration",
    )
    assert discovery_urls("https://idp.example/realms/acme") == (
        "https://idp.example/.well-known/oauth-authorization-server/realms/acme",
        "https://idp.example/.well-known/openid-configuration/realms/acme",
        "https://idp.example/realms/acme/.well-known/openid-configuration",
        "https://idp.example/realms/acme/.well-known/oauth-authorization-server",
    )


def test_only_a_bare_origin_may_differ_by_a_final_slash() -> None:
    assert same_issuer("https://idp.example/", "https://idp.example")
    assert same_issuer("https://idp.example", "https://idp.example/")
    assert not same_issuer("https://idp.example/realms/acme/", "https://idp.example/realms/acme")
    assert not same_issuer("https://IDP.example", "https://idp.example")
    assert not same_issuer("https://idp.example/?x", "https://idp.example")


# -- the usual case -------------------------------------------------------------------------


async def test_document_is_fetched_once_and_cached(server: MetadataServer, clock: FakeClock) -> None:
    cache = make_cache(server.publish(OIDC), clock)
    assert cache.cached is None
    for _ in range(3):
        document = await cache.document()
        assert document["token_endpoint"] == server.base + "/token"
    assert server.total() == 1
    assert cache.cached == document


async def test_the_document_handed_out_is_a_copy(server: MetadataServer, clock: FakeClock) -> None:
    cache = make_cache(server.publish(OIDC), clock)
    (await cache.document())["jwks_uri"] = "https://evil.example/jwks"
    assert (await cache.document())["jwks_uri"] == server.base + "/jwks"


async def test_path_issuers_and_rfc8414_documents(server: MetadataServer, clock: FakeClock) -> None:
    appended = make_cache(server.publish("/realms/acme" + OIDC), clock)
    inserted = make_cache(server.publish("/.well-known/oauth-authorization-server/tenant"), clock)
    assert (await appended.document())["issuer"] == server.base + "/realms/acme"
    assert (await inserted.document())["issuer"] == server.base + "/tenant"


@pytest.mark.parametrize(
    ("cache_control", "ttl"),
    [
        (None, 3600),  # the default
        ("max-age=120", 120),
        ("public, max-age=600, must-revalidate", 600),
        ("max-age=5", 60),  # bounded below
        ("no-store", 60),
        ("max-age=31536000", 86400),  # bounded above
        ("max-age=banana", 3600),
    ],
)
async def test_lifetime_from_cache_control(
    server: MetadataServer, clock: FakeClock, cache_control: str | None, ttl: float
) -> None:
    server.cache_control = cache_control
    cache = make_cache(server.publish(OIDC), clock)
    await cache.document()
    clock.advance(ttl - 1)
    await cache.document()
    assert server.total() == 1
    clock.advance(2)
    await cache.document()
    assert server.total() == 2


async def test_a_changed_document_is_picked_up_when_the_old_one_expires(
    server: MetadataServer, clock: FakeClock
) -> None:
    url = server.publish(OIDC)
    cache = make_cache(url, clock, default_ttl=300)
    await cache.document()
    server.publish(OIDC, jwks_uri=server.base + "/keys-2")
    assert (await cache.document())["jwks_uri"] == server.base + "/jwks"
    clock.advance(301)
    assert (await cache.document())["jwks_uri"] == server.base + "/keys-2"


async def test_concurrent_callers_make_one_fetch(server: MetadataServer, clock: FakeClock) -> None:
    cache = make_cache(server.publish(OIDC), clock)
    documents = await asyncio.gather(*(cache.document() for _ in range(30)))
    assert {document["issuer"] for document in documents} == {server.base}
    assert server.total() == 1


async def test_concurrent_callers_on_a_failing_endpoint_make_one_attempt(
    server: MetadataServer, clock: FakeClock
) -> None:
    cache = make_cache(server.publish(OIDC), clock)
    server.status = 503
    results = await asyncio.gather(*(cache.document() for _ in range(20)), return_exceptions=True)
    assert all(isinstance(result, DiscoveryUnavailable) for result in results)
    assert server.total() == 1


async def test_caches_of_one_url_and_settings_are_shared(server: MetadataServer, clock: FakeClock) -> None:
    url = server.publish(OIDC)
    first = shared_discovery(url, clock=clock)
    assert shared_discovery(url, clock=clock) is first
    assert shared_discovery(url, clock=time.time) is not first
    assert shared_discovery(url, clock=clock, issuer=server.base + "/") is not first
    await first.document()
    await shared_discovery(url, clock=clock).document()
    assert server.total() == 1


# -- outages --------------------------------------------------------------------------------


async def test_the_last_good_document_is_served_while_the_endpoint_fails(
    server: MetadataServer, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    cache = make_cache(server.publish(OIDC), clock)
    good = await cache.document()
    server.status = 500
    clock.advance(3601)
    with caplog.at_level(logging.WARNING, logger="bastion"):
        assert await cache.document() == good
    assert "serving the last good document" in caplog.text
    assert server.total() == 2
    # Within the refetch interval the failing endpoint is not asked again.
    clock.advance(29)
    assert await cache.document() == good
    assert server.total() == 2
    clock.advance(2)
    assert await cache.document() == good
    assert server.total() == 3
    # Once it recovers, the fresh document replaces the stale one.
    server.status = 200
    server.publish(OIDC, token_endpoint=server.base + "/token-2")
    clock.advance(31)
    assert (await cache.document())["token_endpoint"] == server.base + "/token-2"


async def test_a_bad_document_does_not_replace_a_good_one(server: MetadataServer, clock: FakeClock) -> None:
    cache = make_cache(server.publish(OIDC), clock)
    good = await cache.document()
    server.documents[OIDC]["issuer"] = "https://evil.example"
    clock.advance(3601)
    assert await cache.document() == good


async def test_no_document_ever_raises_with_the_reason_and_respects_the_interval(
    server: MetadataServer, clock: FakeClock
) -> None:
    cache = make_cache(server.base + "/missing" + OIDC, clock)
    with pytest.raises(DiscoveryUnavailable, match="HTTP 404") as caught:
        await cache.document()
    assert caught.value.description == "The authorization server's metadata could not be fetched"
    with pytest.raises(DiscoveryUnavailable):
        await cache.document()
    assert server.total() == 1
    # It is published later: found at the next attempt after the interval.
    server.publish("/missing" + OIDC)
    clock.advance(31)
    assert (await cache.document())["issuer"] == server.base + "/missing"


async def test_a_slow_endpoint_times_out(server: MetadataServer, clock: FakeClock) -> None:
    cache = make_cache(server.publish(OIDC), clock, timeout=0.2)
    server.delay = 10
    with pytest.raises(DiscoveryUnavailable, match="timed out"):
        await cache.document()


async def test_an_unreachable_endpoint(clock: FakeClock) -> None:
    cache = make_cache("http://127.0.0.1:9" + OIDC, clock)
    with pytest.raises(DiscoveryUnavailable):
        await cache.document()


# -- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"<html>Service Unavailable</html>", "not JSON"),
        (b"[1, 2, 3]", "not a JSON object"),
        (b'"issuer"', "not a JSON object"),
        (b"{}", "no issuer"),
        (b'{"issuer": 42}', "no issuer"),
        (b"{" + b'"a": [' * 5000 + b"]" * 5000 + b"}", "not JSON"),
    ],
)
async def test_garbage_is_refused(server: MetadataServer, clock: FakeClock, body: bytes, reason: str) -> None:
    cache = make_cache(server.publish(OIDC), clock)
    server.body = body
    with pytest.raises(DiscoveryUnavailable, match=reason):
        await cache.document()


async def test_an_oversized_document_is_refused(server: MetadataServer, clock: FakeClock) -> None:
    cache = make_cache(server.publish(OIDC, padding="x" * 200_000), clock)
    with pytest.raises(DiscoveryUnavailable, match="more than"):
        await cache.document()
    small = make_cache(server.publish("/small" + OIDC, padding="x" * 2000), clock, max_bytes=1000)
    with pytest.raises(DiscoveryUnavailable, match="more than 1000 bytes"):
        await small.document()


@pytest.mark.parametrize(
    "issuer_path",
    [
        "/other",  # another issuer altogether
        "/realms",  # a prefix of the expected one
        "/realms/acme/",  # a path issuer differing by a final slash
    ],
)
async def test_a_document_naming_another_issuer_is_refused(
    server: MetadataServer, clock: FakeClock, issuer_path: str
) -> None:
    url = server.publish("/realms/acme" + OIDC)
    server.documents["/realms/acme" + OIDC]["issuer"] = server.base + issuer_path
    with pytest.raises(DiscoveryUnavailable, match="names the issuer"):
        await make_cache(url, clock).document()


async def test_a_root_issuer_may_end_in_a_slash(server: MetadataServer, clock: FakeClock) -> None:
    url = server.publish(OIDC)
    server.documents[OIDC]["issuer"] = server.base + "/"
    assert (await make_cache(url, clock).document())["issuer"] == server.base + "/"


async def test_the_expected_issuer_can_be_given(server: MetadataServer, clock: FakeClock) -> None:
    url = server.publish(OIDC)
    with pytest.raises(DiscoveryUnavailable, match="names the issuer"):
        await make_cache(url, clock, issuer="https://idp.example").document()
    assert (await make_cache(url, clock, issuer=server.base).document())["issuer"] == server.base


@pytest.mark.parametrize(
    ("member", "value", "reason"),
    [
        ("token_endpoint", "http://idp.example/token", "token_endpoint is plain http"),
        ("jwks_uri", "http://idp.example/jwks", "jwks_uri is plain http"),
        ("registration_endpoint", "javascript:alert(1)", "registration_endpoint is not an absolute https URL"),
        ("authorization_endpoint", "/authorize", "authorization_endpoint is not an absolute https URL"),
        ("userinfo_endpoint", None, "userinfo_endpoint is not a string"),
        ("jwks_uri", ["https://idp.example/jwks"], "jwks_uri is not a string"),
        ("token_endpoint", "https://[::1/token", "token_endpoint is not a URL"),
    ],
)
async def test_unusable_endpoints_refuse_the_document(
    server: MetadataServer, clock: FakeClock, member: str, value: Any, reason: str
) -> None:
    url = server.publish(OIDC, **{member: value})
    with pytest.raises(DiscoveryUnavailable, match=reason):
        await make_cache(url, clock).document()


async def test_loopback_http_and_https_endpoints_are_accepted(server: MetadataServer, clock: FakeClock) -> None:
    url = server.publish(
        OIDC, token_endpoint="http://localhost:9000/token", userinfo_endpoint="https://idp.example/userinfo"
    )
    assert (await make_cache(url, clock).document())["userinfo_endpoint"] == "https://idp.example/userinfo"


# -- configuration --------------------------------------------------------------------------


def test_plain_http_beyond_loopback_warns(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="bastion"):
        DiscoveryCache("https://idp.example" + OIDC)
        DiscoveryCache("http://127.0.0.1:8080" + OIDC)
        DiscoveryCache("http://localhost" + OIDC)
        DiscoveryCache("http://[::1]:8080" + OIDC)
        assert not caplog.records
        DiscoveryCache("http://idp.example/realms/acme" + OIDC + "?secret=1")
        DiscoveryCache("http://127.evil.example" + OIDC)
    assert len(caplog.records) == 2
    assert "plain http" in caplog.records[0].getMessage()
    assert "secret" not in caplog.text


@pytest.mark.parametrize(
    "options",
    [
        {"min_ttl": 100, "max_ttl": 10},
        {"default_ttl": -1},
        {"refetch_interval": float("nan")},
        {"timeout": 0},
        {"max_bytes": 0},
    ],
)
def test_unusable_settings_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        DiscoveryCache("https://idp.example" + OIDC, **options)


@pytest.mark.parametrize(
    "url",
    ["ftp://idp.example" + OIDC, "https://a:b@idp.example" + OIDC, "https:///x" + OIDC, "https://idp.example/x"],
)
def test_unusable_urls_are_refused(url: str) -> None:
    with pytest.raises(ConfigurationError):
        DiscoveryCache(url)
