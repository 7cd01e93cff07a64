"""OIDC(config_url=...): the provider as its discovery document says, re-read through a TTL cache."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bastion import ConfigurationError
from bastion.providers import OIDC
from bastion.storage import MemoryStore
from bastion.testing import serve

from support.clock import FakeClock


class Discovery:
    """A provider's discovery endpoint that counts its requests and can move its endpoints."""

    def __init__(self) -> None:
        self.requests = 0
        self.base = ""
        self.authorize_path = "/authorize"

    def document(self) -> dict[str, Any]:
        return {
            "issuer": self.base,
            "authorization_endpoint": self.base + self.authorize_path,
            "token_endpoint": self.base + "/token",
            "jwks_uri": self.base + "/jwks",
            "userinfo_endpoint": self.base + "/userinfo",
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["client_secret_post"],
        }

    def app(self) -> Starlette:
        async def config(request: Request) -> JSONResponse:
            self.requests += 1
            return JSONResponse(self.document(), headers={"Cache-Control": "max-age=300"})

        return Starlette(routes=[Route("/.well-known/openid-configuration", config)])


@pytest.fixture
def discovery() -> Iterator[Discovery]:
    fake = Discovery()
    with serve(fake.app()) as url:
        fake.base = url
        yield fake


async def test_the_upstream_comes_from_discovery_and_follows_it(discovery: Discovery) -> None:
    clock = FakeClock(1_800_000_000.0)
    proxy = OIDC(
        config_url=discovery.base + "/.well-known/openid-configuration",
        client_id="proxy",
        client_secret="secret",
        base_url="http://127.0.0.1:9",
        store=MemoryStore(clock=clock),
        clock=clock,
    )
    up = proxy.upstream
    assert up.authorization_endpoint == discovery.base + "/authorize"
    assert up.issuer == discovery.base
    assert up.token_auth == "client_secret_post"
    assert up.pkce is True
    assert up.identity == "id_token"
    assert discovery.requests == 1  # read once at start, so a bad configuration fails early
    await asyncio.gather(*(proxy.refresh_upstream() for _ in range(5)))
    await proxy.refresh_upstream()
    assert discovery.requests == 2  # one coalesced fetch, then served from the cache
    discovery.authorize_path = "/v2/authorize"
    await proxy.refresh_upstream()
    assert proxy.upstream.authorization_endpoint == discovery.base + "/authorize"  # still cached
    clock.now += 301
    await proxy.refresh_upstream()
    assert proxy.upstream.authorization_endpoint == discovery.base + "/v2/authorize"
    assert proxy.upstream_client.upstream is proxy.upstream


def test_a_bad_discovery_url_fails_at_start() -> None:
    with pytest.raises(ConfigurationError, match="openid-configuration"):
        OIDC(config_url="https://idp.example/config", client_id="c", base_url="http://127.0.0.1:9", store=MemoryStore())
