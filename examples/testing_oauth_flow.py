"""The whole OAuth flow in a test: the SDK's own OAuth client against bastion's authorization server.

    python examples/testing_oauth_flow.py

The server approves without pages (``auto_approve``, loopback only), so the SDK's client
discovers the server, registers, authorizes with PKCE, gets tokens and calls a tool with
no person in the loop; it refreshes and steps up the same way.
"""

import asyncio
import socket

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from bastion import AuthorizationServer, MCPServer, MemoryStore, User, get_access_token, require_scopes
from bastion.testing import oauth_client, serve


async def check_user(username: str, password: str) -> User | None:
    """Nobody signs in with a password here: auto_approve signs alice in."""
    return None


def free_port() -> int:
    """A free port on 127.0.0.1: the issuer must be known before the server starts."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_server(base: str) -> MCPServer:
    """The server under test, with an authorization server that approves as alice."""
    auth = AuthorizationServer(
        base, store=MemoryStore(), users=check_user, scopes=["notes:read"], auto_approve=User("alice")
    )
    mcp = MCPServer("Notes", auth=auth, resource_url=base + "/mcp")

    @mcp.tool(auth=require_scopes("notes:read"))
    def whoami() -> str:
        """The signed-in user."""
        return get_access_token().subject or "unknown"

    return mcp


async def main() -> str:
    """Sign in as alice through the whole flow and call ``whoami``; returns its answer."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with serve(make_server(base).streamable_http_app(), port=port):
        provider = oauth_client(base + "/mcp")  # registers, authorizes, refreshes, steps up
        async with (
            httpx2.AsyncClient(auth=provider) as http,
            Client(streamable_http_client(base + "/mcp", http_client=http)) as client,
        ):
            result = await client.call_tool("whoami", {})
    assert result.structured_content is not None
    return str(result.structured_content["result"])


if __name__ == "__main__":
    print(asyncio.run(main()))
