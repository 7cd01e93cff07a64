"""The demo notes server: one tool per kind of policy."""

from __future__ import annotations

import hmac
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from bastion._adapters.mcpserver import MCPServer
from bastion._resource.policy import require_role, require_scopes
from bastion._resource.tokens import get_access_token
from bastion._resource.verifier import Verifier
from bastion.authserver import AuthorizationServer, User

__all__ = ["DEMO_SCOPES", "DEMO_USERS", "demo_users", "notes_server"]

DEMO_SCOPES = {"notes:read": "Read your notes", "notes:write": "Change your notes"}
DEMO_USERS = {
    "alice": User("alice", name="Alice", email="alice@example.com", roles=("admin",)),
    "bob": User("bob", name="Bob", email="bob@example.com"),
}


def demo_users(passwords: dict[str, str]) -> Callable[[str, str], User | None]:
    """The username/password check of the demo: its two users, with these passwords."""

    def check(username: str, password: str) -> User | None:
        expected = passwords.get(username)
        if expected is None or not hmac.compare_digest(expected.encode(), password.encode()):
            return None
        return DEMO_USERS[username]

    return check


def notes_server(auth: Verifier | AuthorizationServer, resource_url: str | None = None, **options: Any) -> MCPServer:
    """A notes server: ``whoami`` for anyone signed in, ``list_notes`` (``notes:read``),
    ``add_note`` (``notes:write``) and ``admin_stats`` (role ``admin``). ``options`` go to ``MCPServer``."""
    mcp = MCPServer("bastion demo notes", auth=auth, resource_url=resource_url, **options)
    notes: defaultdict[str, list[str]] = defaultdict(list)

    def owner() -> str:
        token = get_access_token()
        return token.subject or token.client_id

    @mcp.tool()
    def whoami() -> dict[str, object]:
        """Who is calling: name, scopes and roles."""
        token = get_access_token()
        return {
            "subject": token.subject,
            "name": (token.claims or {}).get("name", token.subject),
            "client_id": token.client_id,
            "scopes": token.scopes,
            "roles": token.roles,
        }

    @mcp.tool(auth=require_scopes("notes:read"))
    def list_notes() -> list[str]:
        """The caller's notes."""
        return list(notes[owner()])

    @mcp.tool(auth=require_scopes("notes:write"))
    def add_note(text: str) -> str:
        """Add a note for the caller."""
        if not text.strip():
            raise ValueError("a note needs some text")
        notes[owner()].append(text[:1000])
        return f"saved note {len(notes[owner()])} for {owner()}"

    @mcp.tool(auth=require_role("admin"))
    def admin_stats() -> dict[str, int]:
        """How many users and notes there are (role admin only)."""
        return {"users": len(notes), "notes": sum(len(n) for n in notes.values())}

    return mcp
