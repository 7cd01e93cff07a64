"""Test a server protected by bastion: tokens from a test key pair, a real JWKS endpoint and server.

    python examples/testing_with_tokens.py

``KeyPair`` mints tokens, ``JWKSServer`` publishes its key set on 127.0.0.1, ``serve``
runs the app on a real uvicorn server, and the SDK's own client calls it with a bearer token.
"""

import asyncio

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from bastion import JWTVerifier, MCPServer, get_access_token, require_scopes
from bastion.testing import JWKSServer, KeyPair, serve

ISSUER = "https://idp.example.com"


def make_server(jwks_url: str, resource_url: str) -> MCPServer:
    """The server under test, verifying tokens with the keys at ``jwks_url``."""
    auth = JWTVerifier(jwks_uri=jwks_url, issuer=ISSUER, audience=resource_url)
    mcp = MCPServer("Notes", auth=auth, resource_url=resource_url)

    @mcp.tool(auth=require_scopes("notes:read"))
    def whoami() -> str:
        """The signed-in user."""
        return get_access_token().subject or "unknown"

    return mcp


async def main() -> str:
    """Call ``whoami`` as alice; returns what the tool answered."""
    keys = KeyPair.generate("ES256")  # or "RS256", "EdDSA"
    resource = "http://127.0.0.1/mcp"  # the audience the tokens are for
    with JWKSServer(keys) as jwks, serve(make_server(jwks.url, resource).streamable_http_app()) as base:
        token = keys.create_token(subject="alice", issuer=ISSUER, audience=resource, scopes=["notes:read"])
        async with (
            httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as http,
            Client(streamable_http_client(base + "/mcp", http_client=http)) as client,
        ):
            result = await client.call_tool("whoami", {})
    assert result.structured_content is not None
    return str(result.structured_content["result"])


if __name__ == "__main__":
    print(asyncio.run(main()))
