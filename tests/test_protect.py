"""bastion.protect wraps any ASGI app."""

from __future__ import annotations

import httpx2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bastion import get_access_token, protect, require_scopes
from bastion.testing import serve

from conftest import TOKENS, StaticVerifier


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
