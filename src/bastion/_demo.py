"""The demo notes server: one tool per kind of policy."""

from __future__ import annotations

from collections import defaultdict

from bastion._policy import require_role, require_scopes
from bastion._server import MCPServer
from bastion._tokens import get_access_token
from bastion._verifier import Verifier

__all__ = ["DEMO_SCOPES", "notes_server"]

DEMO_SCOPES = {"notes:read": "Read your notes", "notes:write": "Change your notes"}


def notes_server(auth: Verifier, resource_url: str | None = None) -> MCPServer:
    """A notes server: ``whoami`` for anyone signed in, ``list_notes`` (``notes:read``),
    ``add_note`` (``notes:write``) and ``admin_stats`` (role ``admin``)."""
    mcp = MCPServer("bastion demo notes", auth=auth, resource_url=resource_url)
    notes: defaultdict[str, list[str]] = defaultdict(list)

    def owner() -> str:
        token = get_access_token()
        return token.subject or token.client_id

    @mcp.tool()
    def whoami() -> dict[str, object]:
        """Who is calling, with which scopes and roles."""
        token = get_access_token()
        return {"subject": token.subject, "client_id": token.client_id, "scopes": token.scopes, "roles": token.roles}

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
