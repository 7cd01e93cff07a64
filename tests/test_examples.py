"""Every example under examples/ runs, and protects what it says it protects."""

from __future__ import annotations

import importlib.util
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from bastion.testing import JWKSServer, KeyPair, serve

from support.notes import MCP_HEADERS, mcp_client, rpc

EXAMPLES = Path(__file__).parent.parent / "examples"
ISSUER = "https://idp.example.com"


def load(name: str) -> ModuleType:
    """Import an example afresh (its module-level code reads the environment)."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.pop(spec.name, None)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def keys() -> KeyPair:
    return KeyPair.generate("ES256")


@pytest.fixture
def jwks(keys: KeyPair) -> Iterator[str]:
    with JWKSServer(keys) as server:
        yield server.url


def token(keys: KeyPair, audience: str, *scopes: str, **claims: object) -> str:
    return keys.create_token(
        subject="alice", issuer=ISSUER, audience=audience, scopes=list(scopes), additional_claims=claims or None
    )


async def test_jwks_verification(monkeypatch: pytest.MonkeyPatch, keys: KeyPair, jwks: str) -> None:
    monkeypatch.setenv("ISSUER", ISSUER)
    monkeypatch.setenv("JWKS_URI", jwks)
    monkeypatch.setenv("RESOURCE_URL", "http://127.0.0.1/mcp")
    example = load("jwks_verification")
    with serve(example.mcp.streamable_http_app(stateless_http=True)) as base:
        async with mcp_client(base + "/mcp", token(keys, "http://127.0.0.1/mcp")) as client:
            assert (await client.call_tool("whoami", {})).structured_content == {"result": "alice"}
        other_audience = token(keys, "https://elsewhere.example/mcp")
        response = httpx2.post(base + "/mcp", json=rpc("tools/list", {}),
                               headers={**MCP_HEADERS, "Authorization": f"Bearer {other_audience}"})  # fmt: skip
        assert response.status_code == 401


async def test_static_public_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, keys: KeyPair) -> None:
    (tmp_path / "public.pem").write_text(keys.public_key)
    monkeypatch.setenv("PUBLIC_KEY_FILE", str(tmp_path / "public.pem"))
    monkeypatch.setenv("ISSUER", ISSUER)
    monkeypatch.setenv("RESOURCE_URL", "http://127.0.0.1/mcp")
    example = load("static_public_key")
    with serve(example.mcp.streamable_http_app()) as base:
        async with mcp_client(base + "/mcp", token(keys, "http://127.0.0.1/mcp")) as client:
            assert (await client.call_tool("whoami", {})).structured_content == {"result": "alice"}


async def test_environment_config(monkeypatch: pytest.MonkeyPatch, keys: KeyPair, jwks: str) -> None:
    monkeypatch.setenv("BASTION_AUTH", "jwt")
    monkeypatch.setenv("BASTION_JWT_JWKS_URI", jwks)
    monkeypatch.setenv("BASTION_JWT_ISSUER", ISSUER)
    monkeypatch.setenv("BASTION_RESOURCE_URL", "https://notes.example.com/mcp")
    example = load("environment_config")
    with serve(example.mcp.streamable_http_app(stateless_http=True)) as base:
        doc = httpx2.get(base + "/.well-known/oauth-protected-resource/mcp").json()
        assert doc["resource"] == "https://notes.example.com/mcp"
        assert doc["authorization_servers"] == [ISSUER]
        async with mcp_client(base + "/mcp", token(keys, "https://notes.example.com/mcp", "notes:read")) as client:
            assert (await client.call_tool("whoami", {})).structured_content == {"result": "alice"}
        async with mcp_client(base + "/mcp", token(keys, "https://notes.example.com/mcp")) as client:
            # Listed, since notes:read would unlock it, and refused until then.
            assert [t.name for t in (await client.list_tools()).tools] == ["whoami"]
            with pytest.raises(MCPError, match="Insufficient scope"):
                await client.call_tool("whoami", {})


def test_environment_config_fails_at_start_up(monkeypatch: pytest.MonkeyPatch) -> None:
    from bastion import ConfigurationError

    monkeypatch.setenv("BASTION_AUTH", "jwt")
    monkeypatch.delenv("BASTION_JWT_JWKS_URI", raising=False)
    with pytest.raises(ConfigurationError, match="BASTION_JWT"):
        load("environment_config")


async def test_api_key_authenticate() -> None:
    example = load("api_key_authenticate")
    with serve(example.mcp.streamable_http_app(stateless_http=True)) as base:
        url = base + "/mcp"
        async with (
            httpx2.AsyncClient(headers={"X-API-Key": "demo-key-for-bob"}) as http,
            Client(streamable_http_client(url, http_client=http)) as client,
        ):
            assert (await client.call_tool("whoami", {})).structured_content == {"result": "bob"}
            with pytest.raises(MCPError, match="Insufficient scope"):
                await client.call_tool("add_note", {"text": "x"})
        wrong = httpx2.post(url, json=rpc("tools/list", {}), headers={**MCP_HEADERS, "X-API-Key": "guess"})
        assert wrong.status_code == 401
        assert httpx2.post(url, json=rpc("tools/list", {}), headers=MCP_HEADERS).status_code == 401


async def test_scopes_and_roles(monkeypatch: pytest.MonkeyPatch, keys: KeyPair, jwks: str) -> None:
    monkeypatch.setenv("BASTION_AUTH", "jwt")
    monkeypatch.setenv("BASTION_JWT_JWKS_URI", jwks)
    monkeypatch.setenv("BASTION_JWT_ISSUER", ISSUER)
    monkeypatch.setenv("BASTION_RESOURCE_URL", "http://127.0.0.1/mcp")
    example = load("scopes_and_roles")
    aud = "http://127.0.0.1/mcp"
    with serve(example.mcp.streamable_http_app(stateless_http=True)) as base:
        url = base + "/mcp"
        async with mcp_client(url, token(keys, aud, "notes:read", tenant="acme")) as client:
            # What it may call, and what more scope would unlock (add_note, purge).
            assert [t.name for t in (await client.list_tools()).tools] == ["list_notes", "add_note", "purge"]
            note = await client.read_resource("notes://acme/plan")
            assert note.contents[0].text == "plan of acme"  # type: ignore[union-attr]
            with pytest.raises(MCPError, match="Forbidden"):
                await client.read_resource("notes://other/plan")
        async with mcp_client(url, token(keys, aud, "notes:admin")) as client:
            names = [t.name for t in (await client.list_tools()).tools]
            assert names == ["list_notes", "add_note", "purge"]
            assert [p.name for p in (await client.list_prompts()).prompts] == ["summarize"]
        async with mcp_client(url, token(keys, aud, roles=["editor"])) as client:
            assert [p.name for p in (await client.list_prompts()).prompts] == ["summarize"]
            # Every tool needs a scope the editor has not granted yet: listed, refused when called.
            assert [t.name for t in (await client.list_tools()).tools] == ["list_notes", "add_note", "purge"]
            with pytest.raises(MCPError, match="Insufficient scope"):
                await client.call_tool("list_notes", {})
            # The tenant rule refuses a caller without a tenant, whatever its scopes: hidden.
            assert (await client.list_resource_templates()).resource_templates == []
        reader = {**MCP_HEADERS, "Authorization": f"Bearer {token(keys, aud, 'notes:read')}"}
        step_up = httpx2.post(
            url, json=rpc("tools/call", {"name": "add_note", "arguments": {"text": "x"}}), headers=reader
        )
        assert step_up.status_code == 403
        assert 'scope="notes:read notes:write"' in step_up.headers["www-authenticate"]


async def test_fastapi_token_passthrough(monkeypatch: pytest.MonkeyPatch, keys: KeyPair, jwks: str) -> None:
    monkeypatch.setenv("BASTION_AUTH", "jwt")
    monkeypatch.setenv("BASTION_JWT_JWKS_URI", jwks)
    monkeypatch.setenv("BASTION_JWT_ISSUER", ISSUER)
    monkeypatch.setenv("BASTION_JWT_AUDIENCE", "http://127.0.0.1/api")
    example = load("fastapi_token_passthrough")
    bearer = token(keys, "http://127.0.0.1/api", "notes:read")
    with serve(example.app) as base:
        rest = httpx2.get(base + "/api/notes", headers={"Authorization": f"Bearer {bearer}"})
        assert rest.json() == ["a note for alice"]
        assert httpx2.get(base + "/api/notes").status_code == 401
        async with mcp_client(base + "/notes/mcp", bearer) as client:
            assert (await client.call_tool("list_notes", {})).structured_content == {"result": ["a note for alice"]}


async def test_own_authorization_server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from bastion.testing import oauth_client

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("ISSUER", base)
    monkeypatch.setenv("STORE_FILE", str(tmp_path / "auth.db"))
    monkeypatch.setenv("AUTO_APPROVE", "alice")
    example = load("own_authorization_server")
    assert await example.check_user("alice", "alice-password") is not None
    assert await example.check_user("alice", "guess") is None
    assert await example.check_user("mallory", "alice-password") is None
    with serve(example.mcp.streamable_http_app(), port=port):
        async with (
            httpx2.AsyncClient(auth=oauth_client(base + "/mcp", scope="notes:read")) as http,
            Client(streamable_http_client(base + "/mcp", http_client=http)) as client,
        ):
            assert (await client.call_tool("whoami", {})).structured_content == {"result": "alice"}
        assert httpx2.post(base + "/mcp", json=rpc("tools/list", {}), headers=MCP_HEADERS).status_code == 401


async def test_testing_with_tokens() -> None:
    assert await load("testing_with_tokens").main() == "alice"


async def test_testing_oauth_flow() -> None:
    assert await load("testing_oauth_flow").main() == "alice"


def test_oidc_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def config(request: Request) -> JSONResponse:
        issuer = str(request.base_url).rstrip("/")
        return JSONResponse({
            "issuer": issuer, "authorization_endpoint": issuer + "/authorize", "token_endpoint": issuer + "/token",
            "jwks_uri": issuer + "/jwks", "code_challenge_methods_supported": ["S256"],
        })  # fmt: skip

    with serve(Starlette(routes=[Route("/.well-known/openid-configuration", config)])) as issuer:
        monkeypatch.setenv("OIDC_CONFIG_URL", issuer + "/.well-known/openid-configuration")
        monkeypatch.setenv("BASE_URL", "http://127.0.0.1:8000")
        monkeypatch.setenv("BASTION_STORE", "memory://")
        example = load("oidc_provider")
        with serve(example.mcp.streamable_http_app(stateless_http=True)) as base:
            metadata = httpx2.get(base + "/.well-known/oauth-authorization-server").json()
            assert metadata["issuer"] == "http://127.0.0.1:8000/"
            assert httpx2.post(base + "/mcp", json=rpc("tools/list", {}), headers=MCP_HEADERS).status_code == 401


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
