"""All authentication settings from the environment: no auth code at all.

    BASTION_AUTH=jwt \
    BASTION_JWT_JWKS_URI=https://idp.example.com/.well-known/jwks.json \
    BASTION_JWT_ISSUER=https://idp.example.com \
    BASTION_RESOURCE_URL=https://notes.example.com/mcp \
    python examples/environment_config.py

A missing or contradictory setting stops the server at start-up with a clear error.
"""

from bastion import MCPServer, get_access_token, require_scopes

mcp = MCPServer("Notes")  # BASTION_AUTH is set: the verifier comes from bastion.from_env()


@mcp.tool(auth=require_scopes("notes:read"))
def whoami() -> str:
    """The signed-in user."""
    return get_access_token().subject or "unknown"


if __name__ == "__main__":
    mcp.run(transport="http", host="127.0.0.1", port=8000)
