"""token.exchange(): an upstream token for another API, through RFC 8693 or Entra's on-behalf-of flow."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Literal

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bastion import AccessToken, UpstreamUnavailable
from bastion.authserver import User
from bastion.proxy import OAuthProxy, Upstream, UpstreamTokens
from bastion.proxy._login import proxy_user
from bastion.storage import MemoryStore
from bastion.testing import serve

SECRET = "proxy-client-secret-0123456789"


class FakeTokenEndpoint:
    """A provider's token endpoint that exchanges tokens, RFC 8693 style or Entra's."""

    def __init__(self) -> None:
        self.requests: list[dict[str, str]] = []

    def app(self) -> Starlette:
        async def token(request: Request) -> JSONResponse:
            form = {k: str(v) for k, v in (await request.form()).items()}
            self.requests.append(form)
            basic = base64.b64encode(f"proxy:{SECRET}".encode()).decode()
            if request.headers.get("authorization") != f"Basic {basic}":
                return JSONResponse({"error": "invalid_client"}, status_code=401)
            if form.get("grant_type") == "urn:ietf:params:oauth:grant-type:token-exchange":
                if form.get("subject_token") != "upstream-token" or form.get("audience") == "https://refused.example":
                    return JSONResponse({"error": "invalid_grant"}, status_code=400)
                issued = f"for {form.get('audience')} {form.get('scope', '')}".strip()
            elif form.get("requested_token_use") == "on_behalf_of" and form.get("assertion") == "upstream-token":
                issued = f"obo {form['scope']}"
            else:
                return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
            return JSONResponse({"access_token": issued, "token_type": "Bearer", "expires_in": 3600})

        return Starlette(routes=[Route("/token", token, methods=["POST"])])


@pytest.fixture
def endpoint() -> Iterator[tuple[FakeTokenEndpoint, str]]:
    fake = FakeTokenEndpoint()
    with serve(fake.app()) as url:
        yield fake, url


async def proxied_token(url: str, style: Literal["rfc8693", "entra_obo"] | None) -> AccessToken:
    upstream = Upstream(
        name="Example",
        authorization_endpoint=url + "/authorize",
        token_endpoint=url + "/token",
        client_id="proxy",
        client_secret=SECRET,
        token_auth="client_secret_basic",
        token_exchange=style,
    )
    proxy = OAuthProxy(upstream, base_url="http://127.0.0.1:9", store=MemoryStore())
    resource = "http://127.0.0.1:9/mcp"
    proxy.add_resource(resource)
    await proxy._save_upstream("ref-1", UpstreamTokens(access_token="upstream-token"))
    alice = User("alice", claims={"uref": "ref-1"})
    token, _ = await proxy.access_tokens.mint(
        client_id="c", subject="alice", scopes=[], resource=resource, grant_id=None, user=alice
    )
    return await proxy.verifier.verify(token)


async def test_rfc8693_exchange_for_another_audience(endpoint: tuple[FakeTokenEndpoint, str]) -> None:
    fake, url = endpoint
    access = await proxied_token(url, "rfc8693")
    assert await access.exchange(audience="https://api.example", scopes=["read"]) == "for https://api.example read"
    sent = fake.requests[-1]
    assert sent["subject_token_type"] == "urn:ietf:params:oauth:token-type:access_token"
    assert sent["requested_token_type"] == "urn:ietf:params:oauth:token-type:access_token"
    assert "client_secret" not in sent  # the secret went in the Basic header


async def test_entra_on_behalf_of_names_the_api_by_its_default_scope(endpoint: tuple[FakeTokenEndpoint, str]) -> None:
    fake, url = endpoint
    access = await proxied_token(url, "entra_obo")
    assert await access.exchange(audience="api://notes-api") == "obo api://notes-api/.default"
    assert await access.exchange(scopes=["api://notes-api/notes.read"]) == "obo api://notes-api/notes.read"
    assert fake.requests[-1]["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"


async def test_exchange_refusals_are_upstream_unavailable(endpoint: tuple[FakeTokenEndpoint, str]) -> None:
    _, url = endpoint
    access = await proxied_token(url, "rfc8693")
    with pytest.raises(UpstreamUnavailable, match="exchange failed"):
        await access.exchange(audience="https://refused.example")
    with pytest.raises(UpstreamUnavailable, match="audience or scopes"):
        await access.exchange()
    without = await proxied_token(url, None)
    with pytest.raises(UpstreamUnavailable, match="does not exchange"):
        await without.exchange(audience="https://api.example")
    with pytest.raises(UpstreamUnavailable, match="not issued by an OAuth proxy"):
        await AccessToken(token="t", client_id="c", scopes=[]).exchange(audience="https://api.example")


async def test_the_providers_roles_reach_the_proxys_tokens(endpoint: tuple[FakeTokenEndpoint, str]) -> None:
    _, url = endpoint
    proxy = OAuthProxy(
        Upstream(name="Example", authorization_endpoint=url + "/a", token_endpoint=url + "/token", client_id="proxy"),
        base_url="http://127.0.0.1:9",
        store=MemoryStore(),
    )
    proxy.add_resource("http://127.0.0.1:9/mcp")
    user = proxy_user("alice", "Alice", None, {"realm_access": {"roles": ["admin"]}}, "ref-2", ("admin",))
    token, _ = await proxy.access_tokens.mint(
        client_id="c", subject="alice", scopes=[], resource="http://127.0.0.1:9/mcp", grant_id=None, user=user
    )
    access = await proxy.verifier.verify(token)
    assert access.roles == ["admin"]
    assert access.name == "Alice"
    assert access.claim("uref") == "ref-2"
