"""Per-tool, per-resource and per-prompt policies: scopes, roles, combinations, your own rules.

    BASTION_AUTH=jwt BASTION_JWT_JWKS_URI=... BASTION_JWT_ISSUER=... python examples/scopes_and_roles.py

A caller sees in tools/list what it may call and what more scope would unlock; what a
role or a rule of your own refuses stays hidden. Calling a tool that needs more scope
answers HTTP 403 with WWW-Authenticate: Bearer error="insufficient_scope", scope="...",
so the client can ask the user for it (step-up).
"""

from bastion import (
    AccessContext,
    MCPServer,
    get_access_token,
    require_all,
    require_any,
    require_role,
    require_scopes,
)

mcp = MCPServer(
    "Notes",
    default_policy=require_scopes("notes:read"),  # anything without auth= needs notes:read
    scope_hierarchy={"notes:admin": ["notes:read", "notes:write"]},  # admin implies both
)


def same_tenant(ctx: AccessContext) -> bool:
    """A rule of your own: the tenant in the resource URI is the caller's.

    In resources/templates/list, ``ctx.name`` is the template itself: any tenant member may see it.
    """
    tenant = ctx.token.claim("tenant") if ctx.token else None
    if tenant is None:
        return False
    return ctx.name == "notes://{tenant}/{name}" or ctx.name.startswith(f"notes://{tenant}/")


@mcp.tool()
def list_notes() -> list[str]:
    """Needs the default: notes:read."""
    return ["first note"]


@mcp.tool(auth=require_scopes("notes:write"))
def add_note(text: str) -> str:
    """Needs notes:write (or notes:admin, which implies it)."""
    return f"saved for {get_access_token().subject}"


@mcp.tool(auth=require_role("admin") | require_scopes("notes:admin"))
def purge() -> str:
    """Role admin, or scope notes:admin."""
    return "purged"


@mcp.resource("notes://{tenant}/{name}", auth=require_all(require_scopes("notes:read"), same_tenant))
def tenant_note(tenant: str, name: str) -> str:
    """Readable only inside the caller's own tenant."""
    return f"{name} of {tenant}"


@mcp.prompt(auth=require_any(require_role("editor"), require_scopes("notes:write")))
def summarize(topic: str) -> str:
    """Editors, or callers who may write."""
    return f"Summarize the notes about {topic}"


if __name__ == "__main__":
    mcp.run(transport="http", host="127.0.0.1", port=8000)
