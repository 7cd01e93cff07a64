"""bastion as the authorization server: sign-in and consent pages, registration, tokens, on SQLite.

    python examples/own_authorization_server.py

Point an MCP client at http://127.0.0.1:8000/mcp: it discovers the server, registers,
opens the sign-in page (alice / alice-password) and asks for consent. With
``AUTO_APPROVE=alice`` the server signs alice in and approves without pages (loopback
development and headless tests only).
"""

import hashlib
import hmac
import os

from bastion import AuthorizationServer, MCPServer, SQLiteStore, User, get_access_token, require_scopes

ISSUER = os.environ.get("ISSUER", "http://127.0.0.1:8000")

# Your user database: here, one user and a hash of her password.
USERS = {"alice": (User("alice", name="Alice", roles=("admin",)), hashlib.sha256(b"alice-password").hexdigest())}


async def check_user(username: str, password: str) -> User | None:
    """A User for the right password, None otherwise."""
    user, digest = USERS.get(username, (None, ""))
    given = hashlib.sha256(password.encode()).hexdigest()
    return user if hmac.compare_digest(given, digest) and user is not None else None


auth = AuthorizationServer(
    issuer=ISSUER,  # same origin as the MCP server, or its own
    store=SQLiteStore(os.environ.get("STORE_FILE", "notes-auth.db")),  # the default when no store is given
    users=check_user,
    scopes={"notes:read": "Read your notes", "notes:write": "Change your notes"},
    auto_approve=os.environ.get("AUTO_APPROVE") or None,
)
mcp = MCPServer("Notes", auth=auth, resource_url=f"{ISSUER}/mcp")


@mcp.tool(auth=require_scopes("notes:read"))
def whoami() -> str:
    """The signed-in user."""
    return get_access_token().subject or "unknown"


@mcp.tool(auth=require_scopes("notes:write"))
def add_note(text: str) -> str:
    """Needs notes:write: a client holding only notes:read is asked to step up."""
    return f"saved for {get_access_token().subject}"


if __name__ == "__main__":
    mcp.run(transport="http", host="127.0.0.1", port=8000)
