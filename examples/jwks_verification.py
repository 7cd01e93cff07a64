"""Verify JWTs from your identity provider with the keys of its JWKS endpoint.

    ISSUER=https://idp.example.com RESOURCE_URL=http://127.0.0.1:8000/mcp python examples/jwks_verification.py

Keys are fetched once, cached (TTL from Cache-Control), refetched when a token names
an unknown key id, and kept while the endpoint is down.
"""

import os

from bastion import JWTVerifier, MCPServer, get_access_token

ISSUER = os.environ.get("ISSUER", "https://idp.example.com")
RESOURCE_URL = os.environ.get("RESOURCE_URL", "http://127.0.0.1:8000/mcp")

auth = JWTVerifier(
    jwks_uri=os.environ.get("JWKS_URI", f"{ISSUER}/.well-known/jwks.json"),
    issuer=ISSUER,
    audience=RESOURCE_URL,
)
mcp = MCPServer("Notes", auth=auth, resource_url=RESOURCE_URL)


@mcp.tool()
def whoami() -> str:
    """The signed-in user."""
    return get_access_token().subject or "unknown"


if __name__ == "__main__":
    mcp.run(transport="http", host="127.0.0.1", port=8000)
