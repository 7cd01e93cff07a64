"""bastion.fastapi: dependencies returning the token, and a protected MCP mount sharing it."""

import socket
from pathlib import Path
from typing import Annotated

import httpx2
from fastapi import Depends, FastAPI

from bastion import AccessToken
from bastion.fastapi import Bastion
from bastion.testing import serve

from support.authserver import make_server
from support.notes import MCP_HEADERS, TOKENS, StaticVerifier, mcp_client, notes_server, rpc


def make_app() -> FastAPI:
    verifier = StaticVerifier(TOKENS)
    bastion = Bastion(verifier, resource_url="https://api.example.com")
    app = FastAPI()
    bastion.install(app)

    @app.get("/notes")
    async def notes(token: Annotated[AccessToken, Depends(bastion.require_scopes("notes:read"))]) -> dict[str, str]:
        return {"subject": token.subject or ""}

    @app.post("/notes")
    async def add(token: Annotated[AccessToken, Depends(bastion.require_scopes("notes:write"))]) -> dict[str, bool]:
        return {"saved": True}

    @app.get("/admin")
    async def admin(token: Annotated[AccessToken, Depends(bastion.require_role("admin"))]) -> dict[str, bool]:
        return {"ok": True}

    bastion.mount_mcp(app, notes_server(auth=verifier), path="/notes-mcp", stateless_http=True, json_response=True)
    return app


def test_dependencies_answer_401_403_and_return_the_token() -> None:
    with serve(make_app()) as base:
        anonymous = httpx2.get(base + "/notes")
        assert anonymous.status_code == 401
        # A first sign-in is told what the dependencies need.
        # Two challenges in one field, Bearer first, then DPoP with its algorithms.
        bearer, _, dpop = anonymous.headers["www-authenticate"].partition(", DPoP ")
        assert bearer == (
            'Bearer scope="notes:read notes:write", '
            'resource_metadata="https://api.example.com/.well-known/oauth-protected-resource"'
        )
        assert dpop.startswith('scope="notes:read notes:write", resource_metadata=')
        assert 'algs="ES256' in dpop
        refused = httpx2.get(base + "/notes", headers={"Authorization": "Bearer nothing"})
        assert refused.status_code == 403
        assert 'scope="notes:read"' in refused.headers["www-authenticate"]
        assert httpx2.get(base + "/notes", headers={"Authorization": "Bearer reader"}).json() == {"subject": "alice"}
        # A step-up keeps the granted scope the API knows, for clients that replace theirs.
        step_up = httpx2.post(base + "/notes", headers={"Authorization": "Bearer reader"})
        assert step_up.status_code == 403
        assert 'scope="notes:read notes:write"' in step_up.headers["www-authenticate"]
        assert httpx2.get(base + "/admin", headers={"Authorization": "Bearer reader"}).status_code == 403
        assert httpx2.get(base + "/admin", headers={"Authorization": "Bearer admin"}).json() == {"ok": True}
        doc = httpx2.get(base + "/.well-known/oauth-protected-resource").json()
        assert doc["resource"] == "https://api.example.com"
        assert doc["scopes_supported"] == ["notes:read", "notes:write"]


def test_initial_scopes_are_what_the_401_names() -> None:
    bastion = Bastion(StaticVerifier(TOKENS), resource_url="https://api.example.com", initial_scopes=["notes:read"])
    app = FastAPI()
    bastion.install(app)

    @app.post("/notes")
    async def add(token: Annotated[AccessToken, Depends(bastion.require_scopes("notes:write"))]) -> dict[str, bool]:
        return {"saved": True}

    with serve(app) as base:
        anonymous = httpx2.post(base + "/notes")
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"].startswith('Bearer scope="notes:read", ')


async def test_mounted_mcp_endpoint_uses_the_same_tokens() -> None:
    with serve(make_app()) as base:
        url = base + "/notes-mcp/mcp"
        assert httpx2.post(url, json=rpc("tools/list", {}), headers=MCP_HEADERS).status_code == 401
        doc = httpx2.get(base + "/.well-known/oauth-protected-resource/notes-mcp/mcp").json()
        assert doc["resource"] == url
        async with mcp_client(url, "writer") as client:
            result = await client.call_tool("add_note", {"text": "hi"})
            assert result.content[0].text == "saved hi for bob"  # type: ignore[union-attr]


async def test_an_authorization_server_is_served_by_the_fastapi_app(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    base = f"http://127.0.0.1:{port}"
    auth = make_server(tmp_path, issuer=base)
    guard = Bastion(auth, resource_url=base + "/api")
    app = FastAPI()
    guard.install(app)

    @app.get("/api/me")
    async def me(token: Annotated[AccessToken, Depends(guard.require_scopes("notes:read"))]) -> dict[str, str]:
        return {"subject": token.subject or ""}

    with serve(app, port=port):
        token, _ = await auth.access_tokens.mint(
            client_id="c", subject="alice", scopes=["notes:read"], resource=base + "/api", grant_id=None
        )
        async with httpx2.AsyncClient() as http:
            metadata = (await http.get(base + "/.well-known/oauth-authorization-server")).json()
            prm = (await http.get(base + "/.well-known/oauth-protected-resource/api")).json()
            answer = await http.get(base + "/api/me", headers={"Authorization": f"Bearer {token}"})
    assert metadata["issuer"] == base + "/"
    assert prm["authorization_servers"] == [base + "/"]
    assert answer.json() == {"subject": "alice"}
