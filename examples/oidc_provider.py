"""Sign users in with any OpenID provider, through bastion's OAuth proxy.

    OIDC_CONFIG_URL=https://idp.example.com/.well-known/openid-configuration \
    OIDC_CLIENT_ID=... OIDC_CLIENT_SECRET=... BASE_URL=https://notes.example.com \
    python examples/oidc_provider.py

Register ``<BASE_URL>/auth/callback`` at the provider. MCP clients register with the
proxy; the proxy signs the user in at the provider and issues its own audience-bound
tokens. The provider's discovery document is read once at start. Its state lives in the
store ``BASTION_STORE`` names, else in a SQLite file under the user's data directory.
"""

import os

from bastion import MCPServer, get_access_token, require_auth
from bastion.providers import OIDC

BASE_URL = os.environ.get("BASE_URL", "https://notes.example.com")

auth = OIDC(
    config_url=os.environ.get("OIDC_CONFIG_URL", "https://idp.example.com/.well-known/openid-configuration"),
    client_id=os.environ.get("OIDC_CLIENT_ID", "notes"),
    client_secret=os.environ.get("OIDC_CLIENT_SECRET", "change-me"),
    base_url=BASE_URL,
    name="Example ID",  # shown on the consent page
)
mcp = MCPServer("Notes", auth=auth, resource_url=f"{BASE_URL}/mcp")


@mcp.tool(auth=require_auth)
def whoami() -> str:
    """The user the provider signed in."""
    return get_access_token().subject or "unknown"


if __name__ == "__main__":
    mcp.run(transport="http", host="127.0.0.1", port=8000)
