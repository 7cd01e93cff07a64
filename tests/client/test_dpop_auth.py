"""``DPoPAuth`` over real HTTP: the SDK's OAuth client wrapped in it, bastion's authorization server, a resource.

The resource is a small Starlette app that checks each call as the MCP DPoP profile says
(``check_proof`` with ``ath`` and a required ``content_digest`` of the raw body) and records
what it saw; the authorization server is bastion's, approving without pages. Both run on
real uvicorn servers on 127.0.0.1.
"""

from __future__ import annotations

import base64
import itertools
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from bastion._core.errors import InvalidDPoPProof
from bastion._jose.dpop import Proof, check_proof, dpop_algorithms
from bastion.authserver import AuthorizationServer, DPoPSettings
from bastion.client import DPoPAuth, ProofKey
from bastion.client._memory import asks_for_nonce
from bastion.testing import HeadlessBrowser, MemoryTokenStorage, oauth_client, serve

from support.authserver import CONFIDENTIAL_SECRET, basic_auth, make_server
from support.notes import MCP_HEADERS, rpc

ALGORITHMS = dpop_algorithms()


def claims(jwt: str) -> dict[str, Any]:
    """The claims of a JWT (a token or a proof), unverified: the test reads what was sent."""
    payload = jwt.split(".")[1]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return decoded


@dataclass
class Seen:
    """One call with a token, as the resource saw it."""

    scheme: str
    token: str
    proofs: list[str]
    proof: Proof | None = None
    error: str | None = None


@dataclass
class Resource:
    """The MCP endpoint of the tests, on the authorization server ``issuer``.

    ``nonces`` are the ``DPoP-Nonce`` values it asks for in turn (RFC 9449 section 9): a proof
    without the current one is answered 401 ``use_dpop_nonce``; with ``rotate`` every
    challenge hands out the next one, so no proof ever carries the current nonce.
    """

    issuer: str
    nonces: Iterator[str] | None = None
    rotate: bool = False
    seen: list[Seen] = field(default_factory=list)
    _nonce: str | None = field(default=None, init=False)

    def app(self) -> Starlette:
        async def metadata(request: Request) -> JSONResponse:
            resource = str(request.base_url).rstrip("/") + "/mcp"
            # The issuer as the SDK renders the metadata's (a URL with a path, "/" at least).
            return JSONResponse({"resource": resource, "authorization_servers": [self.issuer + "/"]})

        return Starlette(
            routes=[
                Route("/.well-known/oauth-protected-resource/mcp", metadata),
                Route("/mcp", self.mcp, methods=["GET", "POST"]),
            ]
        )

    async def mcp(self, request: Request) -> Response:
        body = await request.body()
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if not token:
            metadata = str(request.base_url) + ".well-known/oauth-protected-resource/mcp"
            return Response(status_code=401, headers={"WWW-Authenticate": f'Bearer resource_metadata="{metadata}"'})
        seen = Seen(scheme, token, request.headers.getlist("dpop"))
        self.seen.append(seen)
        bound = claims(token).get("cnf", {}).get("jkt")
        if scheme == "Bearer":
            # RFC 9449 section 7.1: a bound token is not accepted as a bearer token.
            return JSONResponse({"ok": True}) if bound is None else self.refuse("invalid_token")
        try:
            seen.proof = check_proof(
                seen.proofs[0],
                method=request.method,
                url=str(request.url),
                algorithms=ALGORITHMS,
                access_token=token,
                body=body,
                require_content_digest=True,
            )
        except InvalidDPoPProof as exc:
            seen.error = str(exc)
            return self.refuse("invalid_dpop_proof")
        if seen.proof.jkt != bound:
            return self.refuse("invalid_token")
        if self.nonces is not None:
            if self._nonce is None or self.rotate:
                self._nonce = next(self.nonces)
            if self.rotate or seen.proof.nonce != self._nonce:
                return self.refuse("use_dpop_nonce", {"DPoP-Nonce": self._nonce})
        return JSONResponse({"ok": True})

    @staticmethod
    def refuse(error: str, headers: dict[str, str] | None = None) -> Response:
        challenge = f'DPoP algs="ES256", error="{error}"'
        return Response(status_code=401, headers={"WWW-Authenticate": challenge, **(headers or {})})


def without_proofs(app: ASGIApp) -> ASGIApp:
    """``app`` behind a proxy that drops ``DPoP`` headers: a server that ignores proofs (RFC 9449 section 5)."""

    async def stripped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope = {**scope, "headers": [(k, v) for k, v in scope["headers"] if k.lower() != b"dpop"]}
        await app(scope, receive, send)

    return stripped


@dataclass
class Deployment:
    server: AuthorizationServer
    issuer: str
    resource: Resource
    url: str


@contextmanager
def deployment(
    tmp_path: Path,
    *,
    dpop: DPoPSettings | None = None,
    resource: dict[str, Any] | None = None,
    ignore_proofs: bool = False,
) -> Iterator[Deployment]:
    """bastion's authorization server and the test resource, each on its own origin."""
    server = make_server(tmp_path, auto_approve="alice", dpop=dpop or DPoPSettings())
    app: ASGIApp = server.app()
    with serve(without_proofs(app) if ignore_proofs else app) as issuer:
        server.set_issuer(issuer)
        mcp = Resource(issuer, **(resource or {}))
        with serve(mcp.app()) as base:
            server.add_resource(base + "/mcp")
            yield Deployment(server, issuer, mcp, base + "/mcp")


@dataclass
class Recorded:
    """Every response an HTTP client got, its request with it."""

    responses: list[httpx2.Response] = field(default_factory=list)

    async def __call__(self, response: httpx2.Response) -> None:
        await response.aread()
        self.responses.append(response)

    def at(self, path: str) -> list[httpx2.Response]:
        return [r for r in self.responses if r.request.url.path == path]


async def call(http: httpx2.AsyncClient, url: str) -> httpx2.Response:
    return await http.post(url, json=rpc("tools/list"), headers=MCP_HEADERS)


async def test_the_sdk_client_gets_bound_tokens_and_calls_with_proofs_of_its_body(tmp_path: Path) -> None:
    key = ProofKey.generate()
    storage = MemoryTokenStorage()
    browser = HeadlessBrowser()
    recorded = Recorded()
    with deployment(tmp_path) as d:
        provider = oauth_client(d.url, storage=storage, browser=browser)
        async with httpx2.AsyncClient(auth=DPoPAuth(key, provider), event_hooks={"response": [recorded]}) as http:
            assert (await call(http, d.url)).status_code == 200
            assert storage.tokens is not None
            first = storage.tokens.access_token
            assert (await http.get(d.url)).status_code == 200  # no body: still a content_digest (of b"")
            provider.context.token_expiry_time = 1.0  # the client now believes its token expired
            assert (await call(http, d.url)).status_code == 200
            second = storage.tokens.access_token

    assert second != first
    assert claims(first)["cnf"] == {"jkt": key.jkt}
    assert claims(second)["cnf"] == {"jkt": key.jkt}
    assert storage.tokens.token_type == "Bearer"  # what the SDK's model accepts; the server said DPoP
    assert len(browser.visited) == 1  # refreshed, not authorized again

    token_answers = recorded.at("/token")
    assert [r.json()["token_type"] for r in token_answers] == ["DPoP", "DPoP"]
    grants = [dict(httpx2.QueryParams(r.request.content.decode()))["grant_type"] for r in token_answers]
    assert grants == ["authorization_code", "refresh_token"]
    for answer in token_answers:
        proof = claims(answer.request.headers["dpop"])
        assert proof["htm"] == "POST"
        assert proof["htu"] == d.issuer + "/token"
        assert "ath" not in proof
        assert "content_digest" not in proof  # the profile: SHOULD NOT at the token endpoint

    # Discovery and registration go as they were.
    others = [r for r in recorded.responses if r.request.url.path not in ("/token", "/mcp")]
    assert {r.request.url.path for r in others} >= {"/.well-known/oauth-protected-resource/mcp", "/register"}
    assert all("dpop" not in r.request.headers for r in others)

    calls = d.resource.seen
    assert [(s.scheme, s.token) for s in calls] == [("DPoP", first), ("DPoP", first), ("DPoP", second)]
    for seen in calls:
        assert seen.error is None
        assert seen.proof is not None
        assert seen.proof.jkt == key.jkt
        assert len(seen.proofs) == 1
        assert claims(seen.proofs[0])["content_digest"].startswith("sha-256=:")
    assert len({s.proof.jti for s in calls if s.proof is not None}) == 3  # a fresh proof each time


async def test_the_token_endpoints_nonce_challenge_is_answered_once_without_the_sdk_seeing_it(tmp_path: Path) -> None:
    key = ProofKey.generate()
    storage = MemoryTokenStorage()
    recorded = Recorded()
    with deployment(tmp_path, dpop=DPoPSettings(nonce=True)) as d:
        provider = oauth_client(d.url, storage=storage)
        async with httpx2.AsyncClient(auth=DPoPAuth(key, provider), event_hooks={"response": [recorded]}) as http:
            assert (await call(http, d.url)).status_code == 200
            provider.context.token_expiry_time = 1.0
            assert (await call(http, d.url)).status_code == 200

    token_answers = recorded.at("/token")
    assert [r.status_code for r in token_answers] == [400, 200, 200]
    challenge = token_answers[0]
    assert challenge.json()["error"] == "use_dpop_nonce"
    assert "nonce" not in claims(challenge.request.headers["dpop"])
    nonce = challenge.headers["dpop-nonce"]
    # The same request again, with a fresh proof carrying the nonce; the refresh carries it from the start.
    retried, refreshed = token_answers[1:]
    assert claims(retried.request.headers["dpop"])["nonce"] == nonce
    assert claims(retried.request.headers["dpop"])["jti"] != claims(challenge.request.headers["dpop"])["jti"]
    assert retried.request.content == challenge.request.content
    assert claims(refreshed.request.headers["dpop"])["nonce"] in {r.headers["dpop-nonce"] for r in token_answers}
    assert storage.tokens is not None
    assert claims(storage.tokens.access_token)["cnf"] == {"jkt": key.jkt}
    # The authorization server's nonce is not the resource's: the resource's proofs carry none.
    assert all(s.proof is not None and s.proof.nonce is None for s in d.resource.seen)


async def test_a_resources_nonce_challenge_is_answered_once_and_the_nonce_kept(tmp_path: Path) -> None:
    key = ProofKey.generate()
    browser = HeadlessBrowser()
    recorded = Recorded()
    nonces = iter(["resource-nonce-1"])
    with deployment(tmp_path, resource={"nonces": nonces}) as d:
        provider = oauth_client(d.url, browser=browser)
        async with httpx2.AsyncClient(auth=DPoPAuth(key, provider), event_hooks={"response": [recorded]}) as http:
            assert (await call(http, d.url)).status_code == 200
            assert (await call(http, d.url)).status_code == 200

    proofs = [s.proof for s in d.resource.seen]
    assert [p.nonce if p else "no proof" for p in proofs] == [None, "resource-nonce-1", "resource-nonce-1"]
    assert [r.status_code for r in recorded.at("/mcp")] == [401, 401, 200, 200]  # no token, the nonce, then calls
    assert 'error="use_dpop_nonce"' in recorded.at("/mcp")[1].headers["www-authenticate"]
    assert len(browser.visited) == 1  # the SDK never saw the nonce's 401, which would have sent it to sign in again
    # The token endpoint's proofs do not carry the resource's nonce.
    assert all("nonce" not in claims(r.request.headers["dpop"]) for r in recorded.at("/token"))


async def test_a_nonce_challenge_is_retried_once_never_in_a_loop(tmp_path: Path) -> None:
    key = ProofKey.generate()
    nonces = (f"nonce-{n}" for n in itertools.count())
    with deployment(tmp_path, resource={"nonces": nonces, "rotate": True}) as d, httpx2.Client() as plain:
        token = bound_token(plain, d.issuer, key)
        async with httpx2.AsyncClient(auth=DPoPAuth(key)) as http:
            response = await http.post(d.url, json=rpc("tools/list"), headers={"Authorization": f"DPoP {token}"})
    assert response.status_code == 401
    assert 'error="use_dpop_nonce"' in response.headers["www-authenticate"]
    assert [s.proof.nonce if s.proof else "no proof" for s in d.resource.seen] == [None, "nonce-0"]


async def test_a_bearer_token_from_a_server_that_ignores_the_proof_is_sent_as_bearer(tmp_path: Path) -> None:
    key = ProofKey.generate()
    storage = MemoryTokenStorage()
    recorded = Recorded()
    with deployment(tmp_path, ignore_proofs=True) as d:
        provider = oauth_client(d.url, storage=storage)
        async with httpx2.AsyncClient(auth=DPoPAuth(key, provider), event_hooks={"response": [recorded]}) as http:
            assert (await call(http, d.url)).status_code == 200
            assert (await call(http, d.url)).status_code == 200

    (answer,) = recorded.at("/token")
    assert "dpop" in answer.request.headers  # a proof was sent, and dropped on the way
    assert answer.json()["token_type"] == "Bearer"
    assert storage.tokens is not None
    assert "cnf" not in claims(storage.tokens.access_token)
    assert [(s.scheme, s.proofs) for s in d.resource.seen] == [("Bearer", []), ("Bearer", [])]


def bound_token(http: httpx2.Client, issuer: str, key: ProofKey) -> str:
    """A client credentials token bound to ``key``, asked for with a proof made by hand."""
    response = http.post(
        issuer + "/token",
        data={"grant_type": "client_credentials"},
        headers={
            **basic_auth("confidential-client", CONFIDENTIAL_SECRET),
            "DPoP": key.proof("POST", issuer + "/token"),
        },
    )
    assert response.status_code == 200, response.text
    assert response.json()["token_type"] == "DPoP"
    return str(response.json()["access_token"])


def test_without_an_inner_auth_a_sync_client_signs_its_token_requests_and_calls(tmp_path: Path) -> None:
    key = ProofKey.generate()
    with deployment(tmp_path, dpop=DPoPSettings(nonce=True)) as d, httpx2.Client(auth=DPoPAuth(key)) as http:
        # A token request: signed (the nonce challenge answered), the answer handed on as the server wrote it.
        answer = http.post(
            d.issuer + "/token",
            data={"grant_type": "client_credentials"},
            headers=basic_auth("confidential-client", CONFIDENTIAL_SECRET),
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["token_type"] == "DPoP"
        assert [r.status_code for r in answer.history] == [400]
        token = answer.json()["access_token"]
        assert claims(token)["cnf"] == {"jkt": key.jkt}
        # A request without a token goes as it is.
        discovery = http.get(d.url.removesuffix("/mcp") + "/.well-known/oauth-protected-resource/mcp")
        assert "dpop" not in discovery.request.headers
        # The caller's Bearer token goes as DPoP, with a proof, with a body or without.
        assert http.post(d.url, json=rpc("ping"), headers={"Authorization": f"Bearer {token}"}).status_code == 200
        assert http.get(d.url, headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert [s.scheme for s in d.resource.seen] == ["DPoP", "DPoP"]
    assert all(s.error is None and s.proof is not None and s.proof.jkt == key.jkt for s in d.resource.seen)


async def test_a_token_got_elsewhere_is_sent_as_dpop(tmp_path: Path) -> None:
    key = ProofKey.generate()
    with deployment(tmp_path) as d, httpx2.Client() as plain:
        token = bound_token(plain, d.issuer, key)
        async with httpx2.AsyncClient(auth=DPoPAuth(key)) as http:
            response = await http.post(d.url, json=rpc("ping"), headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    (seen,) = d.resource.seen
    assert seen.scheme == "DPoP"
    assert seen.proof is not None
    assert claims(seen.proofs[0])["ath"]


async def test_a_bearer_jwt_got_elsewhere_or_kept_from_an_earlier_run_is_sent_as_bearer(tmp_path: Path) -> None:
    # Its payload has no cnf.jkt: sent as it was issued, so a restart with stored tokens keeps working.
    key = ProofKey.generate()
    with deployment(tmp_path) as d, httpx2.Client() as plain:
        issued = plain.post(
            d.issuer + "/token",
            data={"grant_type": "client_credentials"},
            headers=basic_auth("confidential-client", CONFIDENTIAL_SECRET),
        ).json()
        assert issued["token_type"] == "Bearer"
        async with httpx2.AsyncClient(auth=DPoPAuth(key)) as http:
            headers = {"Authorization": f"Bearer {issued['access_token']}"}
            response = await http.post(d.url, json=rpc("ping"), headers=headers)
    assert response.status_code == 200
    assert [(s.scheme, s.proofs) for s in d.resource.seen] == [("Bearer", [])]


def test_a_sync_client_cannot_drive_the_sdks_async_only_oauth_client() -> None:
    auth = DPoPAuth(ProofKey.generate(), oauth_client("http://127.0.0.1:9/mcp"))
    with httpx2.Client(auth=auth) as http, pytest.raises(TypeError, match=r"only with httpx2\.AsyncClient"):
        http.get("http://127.0.0.1:9/mcp")


@pytest.mark.parametrize("bad", [object(), "a key"])
def test_dpop_auth_needs_a_proof_key_and_an_httpx2_auth(bad: Any) -> None:
    with pytest.raises(TypeError, match="ProofKey"):
        DPoPAuth(bad)
    with pytest.raises(TypeError, match=r"an httpx2\.Auth"):
        DPoPAuth(ProofKey.generate(), bad)


@pytest.mark.parametrize(
    ("values", "asks"),
    [
        (['DPoP error="use_dpop_nonce", error_description="Resource server requires nonce in DPoP proof"'], True),
        (['Bearer realm="mcp", DPoP algs="ES256 PS256", error="use_dpop_nonce"'], True),
        (['Bearer resource_metadata="https://mcp.example/.well-known/x"', "dpop error=use_dpop_nonce"], True),
        (['DPoP error="invalid_token"'], False),
        (['Bearer error="use_dpop_nonce"'], False),  # not a DPoP challenge
        (['DPoP error_description="use_dpop_nonce"'], False),
        (['DPoP error="use_dpop_nonce', "DPoP"], False),  # an unterminated quote is no value
        ([], False),
    ],
)
def test_a_nonce_challenge_is_a_dpop_challenge_with_error_use_dpop_nonce(values: list[str], asks: bool) -> None:
    assert asks_for_nonce(values) is asks
