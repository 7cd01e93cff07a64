"""DPoP end to end: the SDK's own OAuth client, wrapped in ``DPoPAuth``, against bastion demo and its server.

The whole flow with proofs (registration, authorization, token, tool calls, refresh, step-up),
then what an attacker holding a token but not the key can do: nothing, whether the token is
sent as a bearer token, with a proof of another key, or with a proof replayed.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
from mcp import Client
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client

from bastion import AuthorizationServer, MCPServer
from bastion._cli.demo import DEMO_SCOPES, notes_server
from bastion.client import DPoPAuth, ProofKey
from bastion.storage import SQLiteStore
from bastion.testing import HeadlessBrowser, MemoryTokenStorage, oauth_client, serve

from support.authserver import check_user
from support.demo import demo_process, free_port
from support.notes import MCP_HEADERS, rpc


def claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


@asynccontextmanager
async def connected(url: str, auth: httpx2.Auth, seen: list[httpx2.Response]) -> AsyncIterator[Client]:
    """The SDK's client over an HTTP client with ``auth``; every response is added to ``seen``."""

    async def record(response: httpx2.Response) -> None:
        await response.aread()
        seen.append(response)

    async with (
        httpx2.AsyncClient(auth=auth, event_hooks={"response": [record]}) as http,
        Client(streamable_http_client(url, http_client=http)) as client,
    ):
        yield client


def token_responses(seen: list[httpx2.Response]) -> list[dict[str, Any]]:
    return [r.json() for r in seen if r.request.url.path == "/token" and r.status_code == 200]


async def test_the_sdk_client_with_dpop_signs_in_calls_and_refreshes_against_bastion_demo(tmp_path: Path) -> None:
    key = ProofKey.generate()
    storage = MemoryTokenStorage()
    seen: list[httpx2.Response] = []
    with demo_process(f"sqlite:///{tmp_path / 'demo.db'}") as url:
        provider = oauth_client(url, storage=storage, browser=HeadlessBrowser())
        async with connected(url, DPoPAuth(key, provider), seen) as client:
            me = (await client.call_tool("whoami", {})).structured_content
            assert me is not None
            assert me["subject"] == "alice"
            await client.call_tool("add_note", {"text": "bound"})
            assert storage.tokens is not None
            first = storage.tokens.access_token
            provider.context.token_expiry_time = 1.0  # the client now believes its token expired
            assert (await client.call_tool("list_notes", {})).structured_content == {"result": ["bound"]}
            second = storage.tokens.access_token
    assert second != first
    # Both access tokens, the first and the refreshed one, are bound to the client's key.
    assert claims(first)["cnf"] == {"jkt": key.jkt}
    assert claims(second)["cnf"] == {"jkt": key.jkt}
    assert [answer["token_type"] for answer in token_responses(seen)] == ["DPoP", "DPoP"]
    calls = [r.request for r in seen if r.request.url.path == "/mcp" and r.status_code == 200]
    assert calls
    assert all(request.headers["authorization"].startswith("DPoP ") for request in calls)
    assert all("dpop" in request.headers for request in calls)


def step_up_server(db: Path, port: int) -> MCPServer:
    base = f"http://127.0.0.1:{port}"
    auth = AuthorizationServer(base, store=SQLiteStore(db), users=check_user, scopes=DEMO_SCOPES, auto_approve="bob")
    return notes_server(auth, resource_url=base + "/mcp", initial_scopes=["notes:read"])


async def test_a_step_up_with_dpop_gets_a_wider_token_bound_to_the_same_key(tmp_path: Path) -> None:
    key = ProofKey.generate()
    storage = MemoryTokenStorage()
    browser = HeadlessBrowser()
    seen: list[httpx2.Response] = []
    port = free_port()
    with serve(step_up_server(tmp_path / "a.db", port).streamable_http_app(), port=port) as base:
        url = base + "/mcp"
        provider: OAuthClientProvider = oauth_client(url, storage=storage, browser=browser)
        async with connected(url, DPoPAuth(key, provider), seen) as client:
            assert (await client.call_tool("list_notes", {})).structured_content == {"result": []}
            assert storage.tokens is not None
            narrow = claims(storage.tokens.access_token)
            await client.call_tool("add_note", {"text": "needs notes:write"})
            wide = claims(storage.tokens.access_token)
    assert "notes:write" not in narrow["scope"].split()
    assert "notes:write" in wide["scope"].split()
    assert narrow["cnf"] == wide["cnf"] == {"jkt": key.jkt}
    step_up = [r for r in seen if r.status_code == 403]
    assert step_up, "the write was first refused with a step-up challenge"
    assert 'error="insufficient_scope"' in step_up[0].headers["www-authenticate"]
    assert len(browser.visited) == 2  # the sign-in, then the step-up's authorization


async def bound_token(url: str, key: ProofKey) -> str:
    storage = MemoryTokenStorage()
    seen: list[httpx2.Response] = []
    async with connected(url, DPoPAuth(key, oauth_client(url, storage=storage, browser=HeadlessBrowser())), seen) as c:
        await c.call_tool("whoami", {})
    assert storage.tokens is not None
    return storage.tokens.access_token


async def test_a_stolen_bound_token_is_refused_without_the_key(tmp_path: Path) -> None:
    key = ProofKey.generate()
    with demo_process(f"sqlite:///{tmp_path / 'demo.db'}") as url:
        token = await bound_token(url, key)
        body = json.dumps(rpc("tools/call", {"name": "whoami", "arguments": {}})).encode()
        async with httpx2.AsyncClient() as http:

            async def call(headers: dict[str, str], content: bytes = body) -> httpx2.Response:
                return await http.post(url, content=content, headers={**MCP_HEADERS, **headers})

            # The holder of the key: accepted.
            proof = key.proof("POST", url, access_token=token, body=body)
            assert (await call({"Authorization": f"DPoP {token}", "DPoP": proof})).status_code == 200
            # The same proof again (within its window, same body): a replay.
            replayed = await call({"Authorization": f"DPoP {token}", "DPoP": proof})
            assert replayed.status_code == 401
            assert 'error="invalid_dpop_proof"' in replayed.headers["www-authenticate"]
            # A fresh proof of the key, replayed with another body.
            other_body = json.dumps(rpc("tools/call", {"name": "add_note", "arguments": {"text": "x"}})).encode()
            proof = key.proof("POST", url, access_token=token, body=body)
            moved = await call({"Authorization": f"DPoP {token}", "DPoP": proof}, other_body)
            assert moved.status_code == 401
            assert 'error="invalid_dpop_proof"' in moved.headers["www-authenticate"]
            # The thief: as a bearer token, with no proof, or with a proof of the thief's own key.
            assert (await call({"Authorization": f"Bearer {token}"})).status_code == 401
            assert (await call({"Authorization": f"DPoP {token}"})).status_code == 401
            thief = ProofKey.generate()
            stolen = thief.proof("POST", url, access_token=token, body=body)
            refused = await call({"Authorization": f"DPoP {token}", "DPoP": stolen})
            assert refused.status_code == 401
            assert 'error="invalid_dpop_proof"' in refused.headers["www-authenticate"]


async def test_a_client_without_dpop_keeps_getting_bearer_tokens_from_the_demo(tmp_path: Path) -> None:
    storage = MemoryTokenStorage()
    seen: list[httpx2.Response] = []
    with demo_process(f"sqlite:///{tmp_path / 'demo.db'}") as url:
        provider = oauth_client(url, storage=storage, browser=HeadlessBrowser())
        async with connected(url, provider, seen) as client:
            assert (await client.call_tool("whoami", {})).structured_content is not None
    assert [answer["token_type"] for answer in token_responses(seen)] == ["Bearer"]
    assert storage.tokens is not None
    assert "cnf" not in claims(storage.tokens.access_token)
