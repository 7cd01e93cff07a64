"""One authorization server, several resources: each endpoint accepts only the tokens issued for itself.

MCP 2025-11-25, "Access Token Privilege Restriction": a server accepts only tokens whose
audience is its own resource. Two MCP servers (or other adapters) share one authorization
server (or OAuth proxy); the SDK's OAuth client gets a token for each, and each token is
refused, with ``error="invalid_token"``, by the endpoint it was not issued for.
"""

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Annotated, Any

import httpx2
import pytest
from fastapi import Depends, FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bastion import AccessToken, AuthorizationServer, MCPServer, get_access_token, protect, require_auth
from bastion._cli.demo import DEMO_SCOPES, DEMO_USERS, notes_server
from bastion.fastapi import Bastion
from bastion.providers.github import GitHub
from bastion.storage import SQLiteStore
from bastion.testing import HeadlessBrowser, MemoryTokenStorage, oauth_client, serve

from support.authserver import CONFIDENTIAL_SECRET, basic_auth, check_user, make_server
from support.fake_github import FakeGitHub
from support.notes import MCP_HEADERS, rpc
from support.proxy import ProxyBrowser, connected, free_port, sdk_client

INITIALIZE = rpc(
    "initialize",
    {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "test", "version": "1"}},
)


async def post_mcp(http: httpx2.AsyncClient, url: str, token: str) -> httpx2.Response:
    """An ``initialize`` request to the MCP endpoint ``url`` with ``token``."""
    return await http.post(url, json=INITIALIZE, headers={**MCP_HEADERS, "Authorization": f"Bearer {token}"})


def assert_refused(response: httpx2.Response) -> None:
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


@contextmanager
def two_notes_servers(auth: AuthorizationServer, ports: tuple[int, int], configured: bool) -> Iterator[list[str]]:
    """Two notes servers sharing ``auth``, on two loopback origins: their MCP URLs."""
    with ExitStack() as stack:
        urls = []
        for port in ports:
            resource = f"http://127.0.0.1:{port}/mcp" if configured else None
            app = notes_server(auth, resource_url=resource).streamable_http_app()
            urls.append(stack.enter_context(serve(app, port=port)) + "/mcp")
        yield urls


@pytest.mark.parametrize("configured", [True, False], ids=["resource_url", "derived"])
async def test_each_mcp_server_accepts_only_tokens_for_its_own_resource(tmp_path: Path, configured: bool) -> None:
    ports = (free_port(), free_port())
    issuer = f"http://127.0.0.1:{ports[0]}" if configured else None
    auth = AuthorizationServer(
        issuer,
        store=SQLiteStore(tmp_path / "a.db"),
        users=check_user,
        scopes=DEMO_SCOPES,
        auto_approve=DEMO_USERS["alice"],
    )
    with two_notes_servers(auth, ports, configured) as urls:
        storages = [MemoryTokenStorage(), MemoryTokenStorage()]
        for url, storage in zip(urls, storages, strict=True):
            async with connected(url, oauth_client(url, storage=storage)) as client:
                me = (await client.call_tool("whoami", {})).structured_content
                assert me is not None
                assert me["subject"] == "alice"
        assert auth.resources == urls
        tokens = [storage.tokens for storage in storages]
        assert tokens[0] is not None
        assert tokens[1] is not None
        async with httpx2.AsyncClient() as http:
            # Each token, verified and cached by its own endpoint, is refused by the other one.
            assert_refused(await post_mcp(http, urls[0], tokens[1].access_token))
            assert_refused(await post_mcp(http, urls[1], tokens[0].access_token))
            for url, storage in zip(urls, storages, strict=True):
                browser = HeadlessBrowser()
                async with connected(url, oauth_client(url, storage=storage, browser=browser)) as client:
                    assert (await client.call_tool("whoami", {})).structured_content is not None
                assert browser.visited == []  # its own token, still accepted
            # A revocation reaches the cache of every endpoint's verifier.
            info = storages[1].client_info
            assert info is not None
            revoked = await http.post(
                urls[0].removesuffix("/mcp") + "/revoke",
                data={"token": tokens[1].refresh_token or "", "client_id": info.client_id},
            )
            assert revoked.status_code == 200
            assert_refused(await post_mcp(http, urls[1], tokens[1].access_token))
            assert (await post_mcp(http, urls[0], tokens[0].access_token)).status_code == 200


async def client_credentials(http: httpx2.AsyncClient, issuer: str, resource: str) -> str:
    """A token of the confidential test client for ``resource``."""
    response = await http.post(
        issuer + "/token",
        data={"grant_type": "client_credentials", "scope": "notes:read", "resource": resource},
        headers=basic_auth("confidential-client", CONFIDENTIAL_SECRET),
    )
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def whoami_app() -> Starlette:
    async def whoami(request: Request) -> JSONResponse:
        return JSONResponse({"subject": get_access_token().subject})

    return Starlette(routes=[Route("/whoami", whoami)])


def fastapi_app(auth: AuthorizationServer, resource: str) -> FastAPI:
    bastion = Bastion(auth, resource_url=resource)
    app = FastAPI()
    bastion.install(app)

    @app.get("/whoami")
    async def whoami(token: Annotated[AccessToken, Depends(bastion.require_auth())]) -> dict[str, Any]:
        return {"subject": token.subject}

    return app


async def test_protect_and_fastapi_accept_only_tokens_for_their_own_resource(tmp_path: Path) -> None:
    """``resources=[A, B]`` configured up front: ``protect`` with ``server.verifier`` on A, FastAPI on B."""
    ports = (free_port(), free_port(), free_port())
    resources = [f"http://127.0.0.1:{port}" for port in ports[:2]]
    server = make_server(tmp_path, issuer=f"http://127.0.0.1:{ports[2]}", resources=resources)
    with ExitStack() as stack:
        protected = protect(whoami_app(), auth=server.verifier, resource_url=resources[0])
        urls = [
            stack.enter_context(serve(protected, port=ports[0])),
            stack.enter_context(serve(fastapi_app(server, resources[1]), port=ports[1])),
        ]
        issuer = stack.enter_context(serve(server.app(), port=ports[2]))
        async with httpx2.AsyncClient() as http:
            tokens = [await client_credentials(http, issuer, resource) for resource in resources]
            for own, url in enumerate(urls):
                for index, token in enumerate(tokens):
                    answer = await http.get(url + "/whoami", headers={"Authorization": f"Bearer {token}"})
                    if index == own:
                        assert answer.status_code == 200, answer.text
                        assert answer.json() == {"subject": "confidential-client"}
                    else:
                        assert_refused(answer)
            # The authorization server itself still knows every token of its resources.
            for token in tokens:
                answer = await http.post(
                    issuer + "/introspect",
                    data={"token": token},
                    headers=basic_auth("confidential-client", CONFIDENTIAL_SECRET),
                )
                assert answer.json()["active"] is True


def github_notes(auth: GitHub, port: int) -> MCPServer:
    mcp = MCPServer("Repos", auth=auth, resource_url=f"http://127.0.0.1:{port}/mcp")

    @mcp.tool(auth=require_auth)
    def whoami() -> str:
        return get_access_token().subject or ""

    return mcp


async def test_behind_the_oauth_proxy_each_mcp_server_accepts_only_its_own_tokens(tmp_path: Path) -> None:
    ports = (free_port(), free_port())
    with FakeGitHub(redirect_uri=f"http://127.0.0.1:{ports[0]}/auth/callback") as github:
        proxy = GitHub(
            client_id=github.client_id,
            client_secret=github.client_secret,
            base_url=f"http://127.0.0.1:{ports[0]}",
            github_url=github.url,
            api_url=github.api_url,
            store=SQLiteStore(tmp_path / "proxy.db"),
        )
        with ExitStack() as stack:
            urls = [
                stack.enter_context(serve(github_notes(proxy, port).streamable_http_app(), port=port)) + "/mcp"
                for port in ports
            ]
            storages = [MemoryTokenStorage(), MemoryTokenStorage()]
            async with httpx2.AsyncClient() as http:
                for url, storage in zip(urls, storages, strict=True):
                    async with connected(url, sdk_client(url, ProxyBrowser(http), storage)) as client:
                        assert (await client.call_tool("whoami", {})).structured_content == {"result": "583231"}
                tokens = [storage.tokens for storage in storages]
                assert tokens[0] is not None
                assert tokens[1] is not None
                assert_refused(await post_mcp(http, urls[0], tokens[1].access_token))
                assert_refused(await post_mcp(http, urls[1], tokens[0].access_token))
                assert (await post_mcp(http, urls[0], tokens[0].access_token)).status_code == 200
                assert (await post_mcp(http, urls[1], tokens[1].access_token)).status_code == 200
