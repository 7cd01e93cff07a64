"""Verify JWTs with one public key you were given (PEM), no key endpoint needed.

PUBLIC_KEY_FILE=public.pem ISSUER=https://issuer.example python examples/static_public_key.py
"""

import os
from pathlib import Path

from bastion import JWTVerifier, MCPServer, get_access_token

RESOURCE_URL = os.environ.get("RESOURCE_URL", "http://127.0.0.1:8000/mcp")

auth = JWTVerifier(
    public_key=Path(os.environ.get("PUBLIC_KEY_FILE", "public.pem")).read_text(),
    issuer=os.environ.get("ISSUER", "https://issuer.example"),
    audience=RESOURCE_URL,
)
mcp = MCPServer("Notes", auth=auth, resource_url=RESOURCE_URL)


@mcp.tool()
def whoami() -> str:
    """The signed-in user."""
    return get_access_token().subject or "unknown"


if __name__ == "__main__":
    mcp.run(transport="http", host="127.0.0.1", port=8000)
