"""A FastAPI app whose REST routes and mounted MCP endpoint accept the same bearer tokens.

    BASTION_AUTH=jwt BASTION_JWT_JWKS_URI=... BASTION_JWT_ISSUER=... uvicorn examples.fastapi_token_passthrough:app

The route dependencies return the verified AccessToken, so the REST handlers and the
MCP tools see the same caller. The token is checked here and never forwarded upstream.
"""

from typing import Annotated

from fastapi import Depends, FastAPI

from bastion import AccessToken, MCPServer, from_env, get_access_token, require_scopes
from bastion.fastapi import Bastion

verifier = from_env()
bastion = Bastion(verifier)
app = FastAPI(title="Notes API")
bastion.install(app)

mcp = MCPServer("Notes", auth=verifier)


@mcp.tool(auth=require_scopes("notes:read"))
def list_notes() -> list[str]:
    """The same notes the REST API serves."""
    return [f"a note for {get_access_token().subject}"]


@app.get("/api/notes")
async def notes(token: Annotated[AccessToken, Depends(bastion.require_scopes("notes:read"))]) -> list[str]:
    return [f"a note for {token.subject}"]


bastion.mount_mcp(app, mcp, path="/notes", stateless_http=True)  # MCP at /notes/mcp
