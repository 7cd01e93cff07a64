"""bastion.protect wraps any ASGI app."""

from __future__ import annotations

import httpx2
import pytest
from mcp.shared.exceptions import MCPError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bastion import get_access_token, protect, require_scopes
from bastion._resource.guard import FORBIDDEN_CODE
from bastion.testing import serve

from support.notes import TOKENS, StaticVerifier, mcp_client, notes_server


async def hello(request: Request) -> Response:
    return JSONResponse({"subject": get_access_token().subject, "user": request.user.display_name})


def test_protect_any_asgi_app() -> None:
    app = Starlette(routes=[Route("/hello", hello)])
    protected = protect(
        app,
        auth=StaticVerifier(TOKENS),
        resource_url="https://api.example.com",
        policy=require_scopes("notes:read"),
    )
    with serve(protected) as base:
        refused = httpx2.get(base + "/hello")
        assert refused.status_code == 401
        assert (
            'resource_metadata="https://api.example.com/.well-known/oauth-protected-resource"'
            in refused.headers["www-authenticate"]
        )
        assert httpx2.get(base + "/hello", headers={"Authorization": "Bearer nothing"}).status_code == 403
        ok = httpx2.get(base + "/hello", headers={"Authorization": "Bearer reader"})
        assert ok.json() == {"subject": "alice", "user": "client-1"}
        doc = httpx2.get(base + "/.well-known/oauth-protected-resource").json()
        assert doc["resource"] == "https://api.example.com"
        assert doc["scopes_supported"] == ["notes:read"]


async def test_protect_around_an_mcp_server_keeps_its_own_policies() -> None:
    # protect() with no registry of its own knows nothing of the inner server's tools, so its
    # "every policy allows this token" shortcut must not switch the inner server's checks off.
    inner = notes_server(auth=None)
    protected = protect(inner.streamable_http_app(), auth=StaticVerifier(TOKENS), mcp_path="/mcp")
    with serve(protected) as base:
        async with mcp_client(base + "/mcp", "reader") as client:
            names = {tool.name for tool in (await client.list_tools()).tools}
            assert "admin_stats" not in names
            assert "list_notes" in names
            with pytest.raises(MCPError) as refused:
                await client.call_tool("add_note", {"text": "x"})
            assert refused.value.error.code == FORBIDDEN_CODE
