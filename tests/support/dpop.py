"""The MCP server of the DPoP tests: one tool for any caller, one that needs ``notes:write``."""

from __future__ import annotations

from typing import Any

from bastion import MCPServer, Verifier, require_scopes


def dpop_notes(verifier: Verifier, url: str, **options: Any) -> MCPServer:
    """``whoami`` and ``add_note`` (``notes:write``) behind ``verifier``, at ``url``."""
    mcp = MCPServer("Notes", auth=verifier, resource_url=url, **options)

    @mcp.tool()
    def whoami() -> str:
        return "me"

    @mcp.tool(auth=require_scopes("notes:write"))
    def add_note(text: str) -> str:
        return f"saved {text}"

    return mcp
