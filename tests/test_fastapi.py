"""bastion.fastapi: dependencies returning the token, and a protected MCP mount sharing it."""

from typing import Annotated

import httpx2
from fastapi import Depends, FastAPI

from bastion import AccessToken
from bastion.fastapi import Bastion
from bastion.testing import serve

from conftest import MCP_HEADERS, TOKENS, StaticVerifier, mcp_client, notes_server, rpc


def make_app() -> FastAPI:
    verifier = StaticVerifier(TOKENS)
    bastion = Bastion(verifier, resource_url="https://api.example.com")
    app = FastAPI()
    bastion.install(app)

    @app.get("/notes")
    async def notes(token: Annotated[AccessToken, Depends(bastion.require_scopes("notes:read"))]) -> dict[str, str]:
        return {"subject": token.subject or ""}

    @app.get("/admin")
    async def admin(token: Annotated[AccessToken, Depends(bastion.require_role("admin"))]) -> dict[str, bool]:
        return {"ok": True}

    bastion.mount_mcp(app, notes_server(auth=verifier), path="/notes-mcp", stateless_http=True, json_response=True)
    return app


def test_dependencies_answer_401_403_and_return_the_token() -> None:
    with serve(make_app()) as base:
        anonymous = httpx2.get(base + "/notes")
        assert anonymous.status_code == 401
        assert anonymous.headers["www-authenticate"] == (
            'Bearer resource_metadata="https://api.example.com/.well-known/oauth-protected-resource"'
        )
        refused = httpx2.get(base + "/notes", headers={"Authorization": "Bearer nothing"})
        assert refused.status_code == 403
        assert 'scope="notes:read"' in refused.headers["www-authenticate"]
        assert httpx2.get(base + "/notes", headers={"Authorization": "Bearer reader"}).json() == {"subject": "alice"}
        assert httpx2.get(base + "/admin", headers={"Authorization": "Bearer reader"}).status_code == 403
        assert httpx2.get(base + "/admin", headers={"Authorization": "Bearer admin"}).json() == {"ok": True}
        doc = httpx2.get(base + "/.well-known/oauth-protected-resource").json()
        assert doc["resource"] == "https://api.example.com"


async def test_mounted_mcp_endpoint_uses_the_same_tokens() -> None:
    with serve(make_app()) as base:
        url = base + "/notes-mcp/mcp"
        assert httpx2.post(url, json=rpc("tools/list", {}), headers=MCP_HEADERS).status_code == 401
        doc = httpx2.get(base + "/.well-known/oauth-protected-resource/notes-mcp/mcp").json()
        assert doc["resource"] == url
        async with mcp_client(url, "writer") as client:
            result = await client.call_tool("add_note", {"text": "hi"})
            assert result.content[0].text == "saved hi for bob"  # type: ignore[union-attr]
