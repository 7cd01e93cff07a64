"""A token that cannot be checked now (keys out of reach) gets 503 and Retry-After, never 401.

A 401 says "this token is bad" and makes a client throw it away; while the key set
cannot be fetched the token may be perfectly good. Every door that authenticates is
tried over real HTTP against a real JWKS endpoint that is down, answers 404 or
answers garbage, and then comes back.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import httpx2
import pytest
from fastapi import Depends, FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bastion import (
    AccessToken,
    JWKSOptions,
    JWTVerifier,
    MCPServer,
    MultiVerifier,
    get_access_token,
    protect,
    require_auth,
)
from bastion._resource.apikeys import APIKeyVerifier
from bastion.fastapi import Bastion
from bastion.testing import JWKSServer, KeyPair, serve

from support.clock import FakeClock
from support.notes import MCP_HEADERS, mcp_client, rpc, served

RESOURCE = "http://127.0.0.1/mcp"
ISSUER = "https://issuer.example"


@pytest.fixture(scope="module")
def key() -> KeyPair:
    return KeyPair.generate("ES256", kid="k1")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Outage:
    """A JWKS endpoint that fails in one way until :meth:`recover`; ``url`` is its address throughout."""

    def __init__(self, key: KeyPair, how: str) -> None:
        self.jwks = JWKSServer(key)
        self.how = how
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}{JWKSServer.path}"
        self.servers = ExitStack()

    def start(self) -> None:
        if self.how == "404":
            self.jwks.status = 404
        elif self.how == "garbage":
            self.jwks.body = b"\x00\xff this is not a key set"
        if self.how != "down":  # "down": nothing listens on the port yet
            self._serve()

    def recover(self) -> None:
        self.jwks.reset()
        if self.how == "down":
            self._serve()

    def _serve(self) -> None:
        self.servers.enter_context(serve(self.jwks.app, port=self.port))


#: How each failure shows in the log line: which URL, and how it failed.
FAILURES = {"down": "ConnectError", "404": "HTTP 404", "garbage": "not JSON"}


@contextmanager
def outage(key: KeyPair, how: str) -> Iterator[Outage]:
    failing = Outage(key, how)
    with failing.servers:
        failing.start()
        yield failing


def verifier(url: str, clock: FakeClock) -> JWTVerifier:
    return JWTVerifier(jwks_uri=url, issuer=ISSUER, clock=clock)


def notes(auth: JWTVerifier | MultiVerifier) -> MCPServer:
    mcp = MCPServer("Notes", auth=auth, resource_url=RESOURCE)

    @mcp.tool()
    def whoami() -> str:
        return get_access_token().subject or ""

    @mcp.custom_route("/me", methods=["GET"], auth=require_auth)
    async def me(request: Request) -> Response:
        return JSONResponse({"subject": get_access_token().subject})

    return mcp


def assert_unavailable(response: httpx2.Response, token: str) -> None:
    assert response.status_code == 503, response.text
    assert int(response.headers["retry-after"]) > 0
    assert response.headers["cache-control"] == "no-store"
    assert response.json() == {
        "error": "temporarily_unavailable",
        "error_description": "The access token cannot be verified right now; try again later",
    }
    assert "www-authenticate" not in response.headers
    assert token not in response.text


@pytest.mark.parametrize("how", list(FAILURES))
async def test_keys_out_of_reach_at_first_start_answer_503_then_the_same_token_works(
    key: KeyPair, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    token = key.create_token(subject="ann", issuer=ISSUER, audience=RESOURCE)
    with (
        outage(key, how) as jwks,
        served(notes(verifier(jwks.url, clock)), stateless_http=True, json_response=True) as url,
    ):
        headers = {**MCP_HEADERS, "Authorization": f"Bearer {token}"}
        async with httpx2.AsyncClient() as http:
            with caplog.at_level(logging.WARNING, logger="bastion"):
                for _ in range(5):
                    assert_unavailable(await http.post(url, json=rpc("tools/list"), headers=headers), token)
                route = await http.get(url.replace("/mcp", "/me"), headers={"Authorization": f"Bearer {token}"})
                assert_unavailable(route, token)
            answered = [r.getMessage() for r in caplog.records if "answering 503" in r.getMessage()]
            assert len(answered) == 1  # once, not per request
            assert jwks.url in answered[0]
            assert FAILURES[how] in answered[0]
            assert token not in caplog.text
            jwks.recover()
            clock.now += 31  # past the refetch interval: the next token triggers a fetch
            async with mcp_client(url, token) as client:
                result = await client.call_tool("whoami", {})
            assert result.content[0].text == "ann"  # type: ignore[union-attr]


async def test_a_last_good_key_set_keeps_tokens_verifying_while_the_endpoint_fails(key: KeyPair) -> None:
    clock = FakeClock()
    with JWKSServer(key) as jwks, served(notes(verifier(jwks.url, clock)), stateless_http=True) as url:
        async with mcp_client(url, key.create_token(subject="ann", issuer=ISSUER, audience=RESOURCE)) as client:
            await client.list_tools()
        jwks.status = 500
        clock.now += 301  # the key set expired: a refetch is due, and fails
        async with mcp_client(url, key.create_token(subject="bob", issuer=ISSUER, audience=RESOURCE)) as client:
            result = await client.call_tool("whoami", {})
        assert result.content[0].text == "bob"  # type: ignore[union-attr]
        assert jwks.requests == 2


async def test_multi_verifier_answers_503_for_a_jwt_and_serves_api_keys(key: KeyPair) -> None:
    clock = FakeClock()
    token = key.create_token(issuer=ISSUER, audience=RESOURCE)
    with outage(key, "404") as jwks:
        multi = MultiVerifier([verifier(jwks.url, clock), APIKeyVerifier({"sk-ci-1": {"subject": "ci"}})])
        with served(notes(multi), stateless_http=True, json_response=True) as url:
            async with httpx2.AsyncClient() as http:
                jwt = await http.post(
                    url, json=rpc("tools/list"), headers={**MCP_HEADERS, "Authorization": f"Bearer {token}"}
                )
                assert_unavailable(jwt, token)
                call = rpc("tools/call", {"name": "whoami", "arguments": {}})
                keyed = await http.post(url, json=call, headers={**MCP_HEADERS, "Authorization": "Bearer sk-ci-1"})
                assert keyed.json()["result"]["content"][0]["text"] == "ci"
                # Neither a JWT nor a known key: both refuse it, no key set was needed for that, so 401.
                bad = await http.post(url, json=call, headers={**MCP_HEADERS, "Authorization": "Bearer sk-wrong"})
                assert bad.status_code == 401


async def hello(request: Request) -> Response:
    return JSONResponse({"subject": get_access_token().subject})


async def test_protect_and_fastapi_answer_503(key: KeyPair) -> None:
    token = key.create_token(issuer=ISSUER, audience="https://api.example.com")
    with outage(key, "garbage") as jwks:
        app = Starlette(routes=[Route("/hello", hello)])
        protected = protect(app, auth=verifier(jwks.url, FakeClock()), resource_url="https://api.example.com")
        bastion = Bastion(verifier(jwks.url, FakeClock()), resource_url="https://api.example.com")
        api = FastAPI()
        bastion.install(api)

        dependency = bastion.require_auth()

        @api.get("/notes")
        async def notes_route(access: AccessToken = Depends(dependency)) -> dict[str, str]:  # noqa: B008
            return {"subject": access.subject or ""}

        async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as http:
            with serve(protected) as base:
                assert_unavailable(await http.get(base + "/hello"), token)
            with serve(api) as base:
                answer = await http.get(base + "/notes")
                assert answer.status_code == 503
                assert int(answer.headers["retry-after"]) > 0
                assert answer.json()["detail"]["error"] == "temporarily_unavailable"
                assert token not in answer.text


async def test_the_sdk_protocol_refuses_and_logs_once(key: KeyPair, caplog: pytest.LogCaptureFixture) -> None:
    token = key.create_token(issuer=ISSUER, audience=RESOURCE)
    with outage(key, "404") as jwks:
        checker = JWTVerifier(jwks_uri=jwks.url, issuer=ISSUER, audience=RESOURCE, jwks=JWKSOptions(refetch_interval=0))
        with caplog.at_level(logging.WARNING, logger="bastion"):
            for _ in range(3):
                assert await checker.verify_token(token) is None
    refused = [r.getMessage() for r in caplog.records if "cannot be verified now" in r.getMessage()]
    assert len(refused) == 1
    assert jwks.url in refused[0]
    assert token not in caplog.text
