"""custom_route(auth=...) guards plain HTTP routes of the MCP server."""

from __future__ import annotations

import httpx2
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from bastion import InsufficientScope, MCPServer, get_access_token, require_role, require_scopes

from support.notes import TOKENS, StaticVerifier, served


def make_server() -> MCPServer:
    mcp = MCPServer("routes", auth=StaticVerifier(TOKENS))

    @mcp.custom_route("/health", methods=["GET"])
    async def health(request: Request) -> Response:
        return JSONResponse({"ok": True})

    @mcp.custom_route("/me", methods=["GET"], auth=require_scopes("notes:read"))
    async def me(request: Request) -> Response:
        return JSONResponse({"subject": get_access_token().subject})

    @mcp.custom_route("/notes", methods=["POST"], auth=require_scopes("notes:write"))
    async def write(request: Request) -> Response:
        return JSONResponse({"saved": True})

    @mcp.custom_route("/admin", methods=["GET"], auth=require_role("admin"))
    async def admin(request: Request) -> Response:
        return JSONResponse({"ok": True})

    @mcp.custom_route("/raise", methods=["GET"], auth=require_scopes("notes:read"))
    async def raises(request: Request) -> Response:
        raise InsufficientScope(["notes:export"])

    return mcp


def test_routes_without_auth_are_public_and_with_auth_are_guarded() -> None:
    with served(make_server(), stateless_http=True) as url:
        base = url.removesuffix("/mcp")
        assert httpx2.get(base + "/health").json() == {"ok": True}
        anonymous = httpx2.get(base + "/me")
        assert anonymous.status_code == 401
        assert "resource_metadata=" in anonymous.headers["www-authenticate"]
        assert httpx2.get(base + "/me", headers={"Authorization": "Bearer bad"}).status_code == 401
        nothing = httpx2.get(base + "/me", headers={"Authorization": "Bearer nothing"})
        assert nothing.status_code == 403
        assert 'scope="notes:read"' in nothing.headers["www-authenticate"]
        me = httpx2.get(base + "/me", headers={"Authorization": "Bearer reader"})
        assert me.json() == {"subject": "alice"}
        # A step-up keeps the granted scope the server knows, for clients that replace theirs.
        write = httpx2.post(base + "/notes", headers={"Authorization": "Bearer reader"})
        assert write.status_code == 403
        assert 'scope="notes:read notes:write"' in write.headers["www-authenticate"]
        assert httpx2.get(base + "/admin", headers={"Authorization": "Bearer reader"}).status_code == 403
        assert httpx2.get(base + "/admin", headers={"Authorization": "Bearer admin"}).status_code == 200
        raised = httpx2.get(base + "/raise", headers={"Authorization": "Bearer reader"})
        assert raised.status_code == 403
        assert 'scope="notes:export notes:read"' in raised.headers["www-authenticate"]
