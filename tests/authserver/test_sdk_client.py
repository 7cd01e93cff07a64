"""The SDK's own OAuth client against bastion's authorization server, end to end, headlessly.

The server approves without pages (``auto_approve``); everything else is the real
path: 401 challenge, resource and authorization server discovery, registration,
PKCE, token, tool calls, refresh, scope step-up, revocation, restart.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import httpx2
import pytest
from mcp import Client
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bastion import AuthorizationServer, MCPServer
from bastion._cli.demo import DEMO_SCOPES, DEMO_USERS, notes_server
from bastion.authserver import Registration
from bastion.authserver._fetch import SafeFetcher
from bastion.storage import SQLiteStore
from bastion.testing import HeadlessBrowser, MemoryTokenStorage, oauth_client, serve
from bastion.testing._oauth import HEADLESS_REDIRECT_URI

from support.authserver import check_user, pkce_pair
from support.tls import self_signed, serve_https


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def demo_server(db: Path, port: int, **options: Any) -> MCPServer:
    base = f"http://127.0.0.1:{port}"
    options.setdefault("auto_approve", DEMO_USERS["alice"])
    auth = AuthorizationServer(base, store=SQLiteStore(db), users=check_user, scopes=DEMO_SCOPES, **options)
    return notes_server(auth, resource_url=base + "/mcp")


def refresh_form(refresh_token: str | None, client_id: str) -> dict[str, str]:
    return {"grant_type": "refresh_token", "refresh_token": refresh_token or "", "client_id": client_id}


@contextmanager
def running(mcp: MCPServer, port: int) -> Iterator[str]:
    with serve(mcp.streamable_http_app(), port=port) as base:
        yield base + "/mcp"


@asynccontextmanager
async def connected(
    url: str, provider: OAuthClientProvider, seen: list[httpx2.Response] | None = None
) -> AsyncIterator[Client]:
    """The SDK's client with its OAuth client; every HTTP response is added to ``seen``."""

    async def record(response: httpx2.Response) -> None:
        if seen is not None:
            seen.append(response)

    async with (
        httpx2.AsyncClient(auth=provider, event_hooks={"response": [record]}) as http,
        Client(streamable_http_client(url, http_client=http)) as client,
    ):
        yield client


def challenged_scopes(response: httpx2.Response) -> set[str]:
    """The scopes a ``WWW-Authenticate`` challenge names."""
    _, _, rest = response.headers["www-authenticate"].partition('scope="')
    return set(rest.partition('"')[0].split())


async def test_dynamic_registration_flow_then_tools(tmp_path: Path) -> None:
    port = free_port()
    storage = MemoryTokenStorage()
    browser = HeadlessBrowser()
    with running(demo_server(tmp_path / "a.db", port), port) as url:
        provider = oauth_client(url, storage=storage, browser=browser)
        async with connected(url, provider) as client:
            me = (await client.call_tool("whoami", {})).structured_content
            assert me is not None
            assert me["subject"] == "alice"
            assert me["name"] == "Alice"
            # The SDK asks for offline_access too, since the server offers refresh tokens.
            assert set(me["scopes"]) == {"notes:read", "notes:write", "offline_access"}
            assert me["roles"] == ["admin"]
            await client.call_tool("add_note", {"text": "hello"})
            assert (await client.call_tool("list_notes", {})).structured_content == {"result": ["hello"]}
            assert (await client.call_tool("admin_stats", {})).structured_content == {"users": 1, "notes": 1}
    assert storage.client_info is not None
    assert storage.client_info.client_id  # registered through /register
    assert storage.tokens is not None
    assert storage.tokens.refresh_token
    assert len(browser.visited) == 1
    assert "code_challenge_method=S256" in browser.visited[0]
    assert "resource=" in browser.visited[0]


async def test_refresh_rotates_and_keeps_the_session(tmp_path: Path) -> None:
    port = free_port()
    storage = MemoryTokenStorage()
    browser = HeadlessBrowser()
    with running(demo_server(tmp_path / "a.db", port), port) as url:
        provider = oauth_client(url, storage=storage, browser=browser)
        async with connected(url, provider) as client:
            await client.call_tool("whoami", {})
            assert storage.tokens is not None
            first = storage.tokens
            provider.context.token_expiry_time = 1.0  # the client now believes its token expired
            await client.call_tool("whoami", {})
            second = storage.tokens
            assert second.access_token != first.access_token
            assert second.refresh_token != first.refresh_token
    assert len(browser.visited) == 1  # refreshed, not re-authorized


async def test_step_up_when_a_listed_tool_needs_more_scope(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    auth = AuthorizationServer(
        base, store=SQLiteStore(tmp_path / "a.db"), users=check_user, scopes=DEMO_SCOPES, auto_approve="bob"
    )
    # A first sign-in asks for the read scope only.
    mcp = notes_server(auth, resource_url=base + "/mcp", initial_scopes=["notes:read"])
    browser = HeadlessBrowser()
    seen: list[httpx2.Response] = []
    with running(mcp, port) as url:
        provider = oauth_client(url, browser=browser)
        async with connected(url, provider, seen) as client:
            assert (await client.call_tool("list_notes", {})).structured_content == {"result": []}
            first = parse_qs(urlsplit(browser.visited[0]).query)
            assert set(first["scope"][0].split()) == {"notes:read", "offline_access"}
            # add_note is listed before its scope is granted, so a host can call it and step up;
            # admin_stats needs a role bob does not have: no scope helps, it stays hidden.
            assert {tool.name for tool in (await client.list_tools()).tools} == {"whoami", "list_notes", "add_note"}
            saved = await client.call_tool("add_note", {"text": "more scope"})
            assert saved.is_error is not True
            assert (await client.call_tool("list_notes", {})).structured_content == {"result": ["more scope"]}
    step_ups = [r for r in seen if r.status_code == 403]
    assert len(step_ups) == 1
    assert 'error="insufficient_scope"' in step_ups[0].headers["www-authenticate"]
    # What the token had and what the tool needs, so that even a client that replaces its scopes keeps reading.
    assert challenged_scopes(step_ups[0]) == {"notes:read", "notes:write"}
    assert len(browser.visited) == 2
    second = parse_qs(urlsplit(browser.visited[1]).query)
    assert set(second["scope"][0].split()) == {"notes:read", "notes:write", "offline_access"}


async def test_strict_lists_hide_what_more_scope_would_unlock(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    auth = AuthorizationServer(
        base, store=SQLiteStore(tmp_path / "a.db"), users=check_user, scopes=DEMO_SCOPES, auto_approve="bob"
    )
    mcp = notes_server(auth, resource_url=base + "/mcp", initial_scopes=["notes:read"], list_visibility="strict")
    with running(mcp, port) as url:
        async with connected(url, oauth_client(url)) as client:
            assert {tool.name for tool in (await client.list_tools()).tools} == {"whoami", "list_notes"}
            # The call itself is answered exactly as in the default mode: a step-up.
            assert (await client.call_tool("add_note", {"text": "x"})).is_error is not True


async def test_a_client_that_replaces_its_scopes_with_the_challenges_keeps_reading(tmp_path: Path) -> None:
    """Clients such as the TypeScript SDK 1.x ask for exactly the challenge's scopes on a step-up."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    auth = AuthorizationServer(
        base, store=SQLiteStore(tmp_path / "a.db"), users=check_user, scopes=DEMO_SCOPES, auto_approve="bob"
    )
    mcp = notes_server(auth, resource_url=base + "/mcp")
    with serve(mcp.streamable_http_app(stateless_http=True, json_response=True), port=port):
        url = base + "/mcp"
        async with httpx2.AsyncClient() as http:
            registered = await http.post(
                base + "/register",
                json={
                    "client_name": "replacing client",
                    "redirect_uris": [HEADLESS_REDIRECT_URI],
                    "grant_types": ["authorization_code"],
                    "token_endpoint_auth_method": "none",
                },
            )
            assert registered.status_code == 201, registered.text
            client_id = registered.json()["client_id"]

            async def call(token: str, tool: str, arguments: dict[str, Any]) -> httpx2.Response:
                message = {
                    "jsonrpc": "2.0",
                    "id": 1,
                    "method": "tools/call",
                    "params": {"name": tool, "arguments": arguments},
                }
                headers = {"Authorization": f"Bearer {token}", "Accept": "application/json, text/event-stream"}
                return await http.post(url, json=message, headers=headers)

            reader = await sign_in(http, base, client_id, "notes:read")
            assert (await call(reader, "list_notes", {})).status_code == 200
            step_up = await call(reader, "add_note", {"text": "x"})
            assert step_up.status_code == 403
            challenge = challenged_scopes(step_up)
            assert challenge == {"notes:read", "notes:write"}
            # Replaced, not added to: the new token holds exactly what the challenge named.
            replaced = await sign_in(http, base, client_id, " ".join(sorted(challenge)))
            assert (await call(replaced, "add_note", {"text": "x"})).status_code == 200
            listed = await call(replaced, "list_notes", {})
            assert listed.json()["result"]["structuredContent"] == {"result": ["x"]}


async def sign_in(http: httpx2.AsyncClient, base: str, client_id: str, scope: str) -> str:
    """An access token for exactly ``scope``: authorization code with PKCE, approved without pages."""
    verifier, challenge = pkce_pair()
    query = urlencode(
        {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": HEADLESS_REDIRECT_URI,
            "scope": scope,
            "state": "s",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "resource": base + "/mcp",
        }
    )
    browser = HeadlessBrowser()
    await browser.redirect_handler(f"{base}/authorize?{query}")
    code = (await browser.callback_handler()).code
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "code_verifier": verifier,
        "redirect_uri": HEADLESS_REDIRECT_URI,
        "client_id": client_id,
        "resource": base + "/mcp",
    }
    tokens = (await http.post(base + "/token", data=form)).json()
    assert set(tokens["scope"].split()) == set(scope.split())
    return str(tokens["access_token"])


async def test_revoked_tokens_are_refused(tmp_path: Path) -> None:
    port = free_port()
    storage = MemoryTokenStorage()
    with running(demo_server(tmp_path / "a.db", port), port) as url:
        provider = oauth_client(url, storage=storage)
        async with connected(url, provider) as client:
            await client.call_tool("whoami", {})
        tokens, info = storage.tokens, storage.client_info
        assert tokens is not None
        assert info is not None
        async with httpx2.AsyncClient() as http:
            revoked = await http.post(
                url.removesuffix("/mcp") + "/revoke",
                data={"token": tokens.refresh_token or "", "client_id": info.client_id},
            )
            assert revoked.status_code == 200
            call = await http.post(
                url,
                json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                headers={
                    "Authorization": f"Bearer {tokens.access_token}",
                    "Accept": "application/json, text/event-stream",
                    "MCP-Protocol-Version": "2025-11-25",
                },
            )
            assert call.status_code == 401
            assert 'error="invalid_token"' in call.headers["www-authenticate"]
            refresh = await http.post(
                url.removesuffix("/mcp") + "/token",
                data={
                    "grant_type": "refresh_token",
                    "refresh_token": tokens.refresh_token,
                    "client_id": info.client_id,
                },
            )
            assert refresh.status_code == 400
            assert refresh.json()["error"] == "invalid_grant"


async def test_a_restart_keeps_clients_keys_and_refresh_tokens(tmp_path: Path) -> None:
    port = free_port()
    storage = MemoryTokenStorage()
    with running(demo_server(tmp_path / "a.db", port), port) as url:
        async with connected(url, oauth_client(url, storage=storage)) as client:
            await client.call_tool("whoami", {})
    tokens, info = storage.tokens, storage.client_info
    assert tokens is not None
    assert info is not None
    # A new process would build everything anew from the same file.
    with running(demo_server(tmp_path / "a.db", port), port) as url:
        async with httpx2.AsyncClient() as http:
            refreshed = await http.post(
                url.removesuffix("/mcp") + "/token",
                data={
                    "grant_type": "refresh_token",
                    "refresh_token": tokens.refresh_token,
                    "client_id": info.client_id,
                },
            )
        assert refreshed.status_code == 200, refreshed.text
        # The old access token still verifies: the signing key survived too.
        browser = HeadlessBrowser()
        provider = oauth_client(url, storage=storage, browser=browser)
        async with connected(url, provider) as client:
            assert (await client.call_tool("whoami", {})).structured_content is not None
        assert browser.visited == []


async def test_a_user_without_the_role_is_refused_admin_stats(tmp_path: Path) -> None:
    port = free_port()
    with running(demo_server(tmp_path / "a.db", port, auto_approve=DEMO_USERS["bob"]), port) as url:
        async with connected(url, oauth_client(url)) as client:
            names = {tool.name for tool in (await client.list_tools()).tools}
            assert names == {"whoami", "list_notes", "add_note"}
            with pytest.raises(MCPError):
                await client.call_tool("admin_stats", {})


async def test_client_id_metadata_document_flow(tmp_path: Path) -> None:
    """The SDK's client uses its https client_id URL; the server fetches and checks the document."""
    tls = self_signed(tmp_path)
    fetches: list[str] = []

    async def document(request: Request) -> JSONResponse:
        fetches.append(request.url.path)
        return JSONResponse(
            {
                "client_id": str(request.url),
                "client_name": "Metadata Document Client",
                "redirect_uris": [HEADLESS_REDIRECT_URI],
                "grant_types": ["authorization_code", "refresh_token"],
                "token_endpoint_auth_method": "none",
            },
            headers={"Cache-Control": "max-age=3600"},
        )

    port = free_port()
    # The test's document server is on loopback: allowed here only, with its own certificate.
    fetcher = SafeFetcher(allow_private=True, verify=tls.context)
    with (
        serve_https(Starlette(routes=[Route("/clients/notes.json", document)]), tls) as docs,
        running(demo_server(tmp_path / "a.db", port, registration=Registration(fetcher=fetcher)), port) as url,
    ):
        client_id = docs + "/clients/notes.json"
        storage = MemoryTokenStorage()
        browser = HeadlessBrowser()
        provider = oauth_client(url, client_metadata_url=client_id, storage=storage, browser=browser)
        async with connected(url, provider) as client:
            me = (await client.call_tool("whoami", {})).structured_content
            assert me is not None
            assert me["client_id"] == client_id
            provider.context.token_expiry_time = 1.0
            assert (await client.call_tool("whoami", {})).structured_content is not None
    assert storage.client_info is not None
    assert storage.client_info.client_id == client_id  # no registration happened
    assert f"client_id={quote(client_id, safe='')}" in browser.visited[0]
    assert fetches == ["/clients/notes.json"]  # fetched once, then cached
