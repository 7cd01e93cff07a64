"""A static verifier and a notes server with policies of every kind, served over real HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from bastion import (
    AccessToken,
    InvalidToken,
    MCPServer,
    Verifier,
    get_access_token,
    require_role,
    require_scopes,
)
from bastion.testing import serve

MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


class StaticVerifier(Verifier):
    """Tokens named in a table; anything else is refused."""

    issuers = ("https://issuer.example",)

    def __init__(self, tokens: dict[str, AccessToken]) -> None:
        super().__init__()
        self.tokens = tokens
        self.checks = 0

    async def check(self, token: str) -> AccessToken:
        self.checks += 1
        access = self.tokens.get(token)
        if access is None:
            raise InvalidToken("unknown token")
        return access


def principal(token: str, *scopes: str, roles: tuple[str, ...] = (), subject: str = "alice") -> AccessToken:
    return AccessToken(
        token=token,
        client_id="client-1",
        subject=subject,
        scopes=list(scopes),
        roles=list(roles),
        issuer="https://issuer.example",
        claims={"iss": "https://issuer.example", "sub": subject},
    )


TOKENS = {
    "reader": principal("reader", "notes:read"),
    "writer": principal("writer", "notes:read", "notes:write", subject="bob"),
    "admin": principal("admin", "notes:admin", roles=("admin",), subject="root"),
    "nothing": principal("nothing"),
}


def notes_server(**options: Any) -> MCPServer:
    """A server with a tool, resource, template and prompt under each kind of policy."""
    options.setdefault("auth", StaticVerifier(TOKENS))
    options.setdefault("scope_hierarchy", {"notes:admin": ["notes:read", "notes:write"]})
    mcp = MCPServer("Notes", **options)

    @mcp.tool()
    def whoami() -> str:
        token = get_access_token()
        return f"{token.subject} {' '.join(sorted(token.scopes))}"

    @mcp.tool(auth=require_scopes("notes:read"))
    def list_notes() -> list[str]:
        return ["first"]

    @mcp.tool(auth=require_scopes("notes:write"))
    def add_note(text: str) -> str:
        return f"saved {text} for {get_access_token().subject}"

    @mcp.tool(auth=require_role("admin"))
    def admin_stats() -> str:
        return "stats"

    @mcp.resource("notes://public", auth=require_scopes("notes:read"))
    def public_notes() -> str:
        return "public notes"

    @mcp.resource("notes://private/{name}", auth=require_role("admin"))
    def private_note(name: str) -> str:
        return f"private {name}"

    @mcp.prompt(auth=require_scopes("notes:write"))
    def compose(topic: str) -> str:
        return f"Write about {topic}"

    return mcp


@contextmanager
def served(mcp: MCPServer, **app_options: Any) -> Iterator[str]:
    """Serve ``mcp`` on a real uvicorn server; yields the MCP endpoint URL."""
    with serve(mcp.streamable_http_app(**app_options)) as base:
        yield base + app_options.get("streamable_http_path", "/mcp")


@asynccontextmanager
async def mcp_client(url: str, token: str | None) -> AsyncIterator[Client]:
    """The SDK's own client over real HTTP, with a bearer token."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        httpx2.AsyncClient(headers=headers) as http,
        Client(streamable_http_client(url, http_client=http)) as client,
    ):
        yield client


def rpc(method: str, params: dict[str, Any] | None = None, rpc_id: int = 1) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": rpc_id, "method": method}
    if params is not None:
        message["params"] = params
    return message
