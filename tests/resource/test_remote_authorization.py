"""RemoteAuthorization: an MCP server whose clients sign in at an identity provider directly, no proxy.

The identity provider is a small Starlette app on a real uvicorn publishing its
metadata, its keys and an introspection endpoint; tokens are minted with its key.
The MCP server runs on a real uvicorn too and is called over HTTP.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bastion import (
    ConfigurationError,
    IntrospectionVerifier,
    JWTVerifier,
    KeysUnavailable,
    MCPServer,
    get_access_token,
)
from bastion._resource.discovery import DiscoveryUnavailable
from bastion._resource.remote import RemoteAuthorization
from bastion.testing import KeyPair, serve

from support.clock import FakeClock
from support.notes import MCP_HEADERS, mcp_client, rpc, served

RESOURCE = "https://notes.example.com/mcp"
OAUTH = "/.well-known/oauth-authorization-server"
OIDC = "/.well-known/openid-configuration"
CLIENT_ID = "notes-api"
CLIENT_SECRET = "introspection-secret"


class IdentityProvider:
    """An identity provider with dynamic registration: metadata, keys and introspection over real HTTP.

    Attributes:
        issuer_path: The path of the issuer identifier (``""`` for a bare origin).
        metadata_paths: Where the metadata document is published.
        metadata: Members added to (or, with ``None``, removed from) the document.
        status: The status of every metadata answer.
        answers: Introspection answers, by token.
        requests: Requests received, by path.
    """

    def __init__(self, issuer_path: str = "", metadata_paths: tuple[str, ...] = (OAUTH,)) -> None:
        self.key = KeyPair.generate("ES256", kid="idp-1")
        self.issuer_path = issuer_path
        self.metadata_paths = metadata_paths
        self.metadata: dict[str, Any] = {}
        self.status = 200
        self.answers: dict[str, Any] = {}
        self.base = ""
        self.requests: dict[str, int] = {}
        self._lock = threading.Lock()
        self.app = Starlette(
            routes=[
                Route("/jwks", self.jwks),
                Route("/introspect", self.introspect, methods=["POST"]),
                Route("/{path:path}", self.discovery),
            ]
        )

    @property
    def issuer(self) -> str:
        return self.base + self.issuer_path

    def count(self, path: str) -> int:
        return self.requests.get(path, 0)

    def total(self) -> int:
        return sum(self.requests.values())

    def token(self, **options: Any) -> str:
        options.setdefault("issuer", self.issuer)
        options.setdefault("audience", RESOURCE)
        options.setdefault("client_id", "mcp-client-1")
        return self.key.create_token(**options)

    def _seen(self, request: Request) -> None:
        with self._lock:
            self.requests[request.url.path] = self.count(request.url.path) + 1

    async def discovery(self, request: Request) -> Response:
        self._seen(request)
        if request.url.path not in self.metadata_paths:
            return Response("not found", status_code=404)
        document = {
            "issuer": self.issuer,
            "authorization_endpoint": self.issuer + "/authorize",
            "token_endpoint": self.issuer + "/token",
            "registration_endpoint": self.issuer + "/register",
            "jwks_uri": self.base + "/jwks",
            "code_challenge_methods_supported": ["S256"],
            **self.metadata,
        }
        document = {name: value for name, value in document.items() if value is not None}
        return Response(json.dumps(document), status_code=self.status, media_type="application/json")

    async def jwks(self, request: Request) -> Response:
        self._seen(request)
        return JSONResponse(self.key.jwks())

    async def introspect(self, request: Request) -> Response:
        self._seen(request)
        expected = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        if request.headers.get("authorization") != expected:
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        form = await request.form()
        return JSONResponse(self.answers.get(str(form.get("token")), {"active": False}))


@pytest.fixture
def idp() -> Iterator[IdentityProvider]:
    provider = IdentityProvider()
    with serve(provider.app) as base:
        provider.base = base
        yield provider


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def notes(auth: RemoteAuthorization, **options: Any) -> MCPServer:
    options.setdefault("resource_url", RESOURCE)
    mcp = MCPServer("Notes", auth=auth, **options)

    @mcp.tool()
    def whoami() -> str:
        token = get_access_token()
        return f"{token.subject} {token.client_id} {token.issuer} {token.resource}"

    return mcp


async def call_whoami(url: str, token: str) -> str:
    async with mcp_client(url, token) as client:
        result = await client.call_tool("whoami", {})
    return result.content[0].text  # type: ignore[union-attr]


async def refused(url: str, token: str) -> httpx2.Response:
    async with httpx2.AsyncClient() as http:
        response = await http.post(
            url, json=rpc("tools/list"), headers={**MCP_HEADERS, "Authorization": f"Bearer {token}"}
        )
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    assert token not in response.text
    return response


async def unavailable(url: str, token: str) -> httpx2.Response:
    """A token that cannot be checked now: 503 and try again, not 401 (which makes clients discard it)."""
    async with httpx2.AsyncClient() as http:
        response = await http.post(
            url, json=rpc("tools/list"), headers={**MCP_HEADERS, "Authorization": f"Bearer {token}"}
        )
    assert response.status_code == 503
    assert response.headers["retry-after"].isdigit()
    assert response.json()["error"] == "temporarily_unavailable"
    assert "www-authenticate" not in response.headers
    assert token not in response.text
    return response


# -- the usual case -------------------------------------------------------------------------


async def test_the_resource_metadata_points_clients_at_the_identity_provider(
    idp: IdentityProvider, clock: FakeClock
) -> None:
    auth = RemoteAuthorization(idp.issuer, clock=clock)
    with served(notes(auth), stateless_http=True, json_response=True) as url:
        async with httpx2.AsyncClient() as http:
            document = (await http.get(url.replace("/mcp", "/.well-known/oauth-protected-resource/mcp"))).json()
            challenge = await http.post(url, json=rpc("tools/list"), headers=MCP_HEADERS)
    assert document["resource"] == RESOURCE
    assert document["authorization_servers"] == [idp.issuer]
    assert challenge.status_code == 401
    assert "resource_metadata=" in challenge.headers["www-authenticate"]
    # Nothing was asked of the identity provider yet: discovery and keys wait for a token.
    assert idp.total() == 0


async def test_a_token_of_the_identity_provider_calls_a_tool(idp: IdentityProvider, clock: FakeClock) -> None:
    auth = RemoteAuthorization(idp.issuer, clock=clock)
    token = idp.token(subject="ann")
    with served(notes(auth), stateless_http=True, json_response=True) as url:
        assert await call_whoami(url, token) == f"ann mcp-client-1 {idp.issuer} {RESOURCE}"
        assert await call_whoami(url, token) == f"ann mcp-client-1 {idp.issuer} {RESOURCE}"
        assert await call_whoami(url, idp.token(subject="bob")) == f"bob mcp-client-1 {idp.issuer} {RESOURCE}"
    assert idp.requests == {OAUTH: 1, "/jwks": 1}


async def test_a_token_seen_before_is_answered_from_the_cache(idp: IdentityProvider, clock: FakeClock) -> None:
    auth = RemoteAuthorization(idp.issuer, audience=RESOURCE, clock=clock)
    token = idp.token()
    scope: dict[str, Any] = {"type": "http", "headers": [(b"authorization", f"Bearer {token}".encode())]}
    assert auth.peek(scope) is None
    access = await auth.verify(token)
    assert auth.peek(scope) is access
    assert auth.cache is auth.verifier.cache
    assert len(auth.cache) == 1
    assert await auth.verify_token(token) is access


async def test_the_audience_is_the_servers_resource_url_when_derived_from_requests(
    idp: IdentityProvider, clock: FakeClock
) -> None:
    auth = RemoteAuthorization(idp.issuer, clock=clock)
    mcp = notes(auth, resource_url=None)
    with served(mcp, stateless_http=True, json_response=True) as url:
        async with httpx2.AsyncClient() as http:
            await http.post(url, json=rpc("tools/list"), headers=MCP_HEADERS)  # pins the resource URL
        await refused(url, idp.token(audience="https://other.example/mcp"))
        assert (await call_whoami(url, idp.token(audience=url))).endswith(url)


async def test_an_explicit_audience(idp: IdentityProvider, clock: FakeClock) -> None:
    auth = RemoteAuthorization(idp.issuer, audience="api://notes", clock=clock)
    with served(notes(auth), stateless_http=True, json_response=True) as url:
        assert (await call_whoami(url, idp.token(audience="api://notes"))).endswith("api://notes")
        await refused(url, idp.token())


async def test_tokens_the_resource_must_not_accept_are_401_invalid_token(
    idp: IdentityProvider, clock: FakeClock
) -> None:
    auth = RemoteAuthorization(idp.issuer, clock=clock)
    impostor = KeyPair.generate("ES256", kid=idp.key.kid)
    with served(notes(auth), stateless_http=True, json_response=True) as url:
        await refused(url, idp.token(audience="https://other.example/mcp"))
        await refused(url, idp.token(issuer="https://evil.example"))
        await refused(url, idp.token(issuer=idp.issuer + "/tenant"))
        await refused(url, impostor.create_token(issuer=idp.issuer, audience=RESOURCE, client_id="x"))
        await refused(url, idp.token(expires_in_seconds=-3600))
        await refused(url, idp.token()[:-6] + "AAAAAA")


async def test_a_bare_origin_issuer_accepts_either_spelling(idp: IdentityProvider, clock: FakeClock) -> None:
    idp.metadata["issuer"] = idp.issuer + "/"
    auth = RemoteAuthorization(idp.issuer + "/", audience=RESOURCE, clock=clock)
    assert auth.issuers == (idp.issuer + "/",)
    assert (await auth.verify(idp.token(issuer=idp.issuer + "/"))).issuer == idp.issuer + "/"
    assert (await auth.verify(idp.token(issuer=idp.issuer))).issuer == idp.issuer


# -- discovery ------------------------------------------------------------------------------


async def test_an_openid_provider_is_found_after_the_rfc8414_location(clock: FakeClock) -> None:
    provider = IdentityProvider(metadata_paths=(OIDC,))
    with serve(provider.app) as base:
        provider.base = base
        auth = RemoteAuthorization(base, audience=RESOURCE, clock=clock)
        await auth.verify(provider.token())
        await auth.verify(provider.token(subject="other"))
        assert (await auth.metadata())["issuer"] == base
    assert provider.requests == {OAUTH: 1, OIDC: 1, "/jwks": 1}


@pytest.mark.parametrize(
    ("published", "tried"),
    [
        (OAUTH + "/realms/acme", [OAUTH + "/realms/acme"]),
        (OIDC + "/realms/acme", [OAUTH + "/realms/acme", OIDC + "/realms/acme"]),
        ("/realms/acme" + OIDC, [OAUTH + "/realms/acme", OIDC + "/realms/acme", "/realms/acme" + OIDC]),
    ],
)
async def test_an_issuer_with_a_path_is_looked_up_with_path_insertion_first(
    clock: FakeClock, published: str, tried: list[str]
) -> None:
    provider = IdentityProvider(issuer_path="/realms/acme", metadata_paths=(published,))
    with serve(provider.app) as base:
        provider.base = base
        auth = RemoteAuthorization(provider.issuer, audience=RESOURCE, clock=clock)
        assert (await auth.verify(provider.token(subject="kc"))).subject == "kc"
    assert provider.requests == {**dict.fromkeys(tried, 1), "/jwks": 1}


async def test_a_config_url_is_the_only_place_looked_at(clock: FakeClock) -> None:
    provider = IdentityProvider(issuer_path="/tenant", metadata_paths=("/custom/metadata.json",))
    with serve(provider.app) as base:
        provider.base = base
        auth = RemoteAuthorization(
            provider.issuer, config_url=base + "/custom/metadata.json", audience=RESOURCE, clock=clock
        )
        assert (await auth.verify(provider.token())).subject == "user"
    assert provider.requests == {"/custom/metadata.json": 1, "/jwks": 1}


async def test_metadata_of_another_issuer_is_not_trusted(idp: IdentityProvider, clock: FakeClock) -> None:
    idp.metadata["issuer"] = "https://evil.example"
    auth = RemoteAuthorization(idp.issuer, audience=RESOURCE, clock=clock)
    with pytest.raises(KeysUnavailable):
        await auth.verify(idp.token())
    with pytest.raises(DiscoveryUnavailable):
        await auth.metadata()
    assert idp.count("/jwks") == 0


async def test_an_unreachable_provider_refuses_tokens_then_recovers(
    idp: IdentityProvider, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    idp.status = 503
    auth = RemoteAuthorization(idp.issuer, clock=clock)
    token = idp.token()
    with served(notes(auth), stateless_http=True, json_response=True) as url:
        with caplog.at_level(logging.WARNING, logger="bastion"):
            await unavailable(url, token)
            await unavailable(url, token)
        warnings = [record.getMessage() for record in caplog.records if "no usable metadata" in record.getMessage()]
        # Once each, not per request: why (both locations' answers), and that requests get 503.
        assert len(warnings) == 2
        assert "HTTP 503" in warnings[0]
        assert "answering 503" in warnings[1]
        assert idp.total() == 2  # both locations tried once; the second request waited for the interval
        idp.status = 200
        clock.advance(31)
        assert await call_whoami(url, token) == f"user mcp-client-1 {idp.issuer} {RESOURCE}"


async def test_metadata_without_keys_refuses_tokens(idp: IdentityProvider, clock: FakeClock) -> None:
    idp.metadata["jwks_uri"] = None
    auth = RemoteAuthorization(idp.issuer, audience=RESOURCE, clock=clock)
    with pytest.raises(KeysUnavailable, match="no jwks_uri"):
        await auth.verify(idp.token())


async def test_a_provider_mcp_clients_cannot_use_is_reported(
    idp: IdentityProvider, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    idp.metadata.update(registration_endpoint=None, code_challenge_methods_supported=["plain"])
    auth = RemoteAuthorization(idp.issuer, audience=RESOURCE, clock=clock)
    with caplog.at_level(logging.WARNING, logger="bastion"):
        await auth.verify(idp.token())
        await auth.verify(idp.token(subject="again"))
    messages = [record.getMessage() for record in caplog.records]
    assert sum("neither dynamic client registration nor client ID metadata" in m for m in messages) == 1
    assert sum("S256" in m for m in messages) == 1


async def test_client_id_metadata_documents_are_enough(
    idp: IdentityProvider, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    idp.metadata.update(registration_endpoint=None, client_id_metadata_document_supported=True)
    auth = RemoteAuthorization(idp.issuer, audience=RESOURCE, clock=clock)
    with caplog.at_level(logging.WARNING, logger="bastion"):
        await auth.verify(idp.token())
    assert not caplog.records


# -- another verifier -----------------------------------------------------------------------


async def test_introspection_instead_of_jwts(idp: IdentityProvider, clock: FakeClock) -> None:
    introspection = IntrospectionVerifier(idp.base + "/introspect", CLIENT_ID, CLIENT_SECRET, clock=clock)
    auth = RemoteAuthorization(idp.issuer, introspection)
    idp.answers["opaque-1"] = {
        "active": True,
        "iss": idp.issuer,
        "aud": RESOURCE,
        "client_id": "mcp-client-1",
        "sub": "carol",
        "exp": int(time.time()) + 600,
    }
    idp.answers["elsewhere"] = {**idp.answers["opaque-1"], "aud": "https://other.example/mcp"}
    with served(notes(auth), stateless_http=True, json_response=True) as url:
        async with httpx2.AsyncClient() as http:
            document = (await http.get(url.replace("/mcp", "/.well-known/oauth-protected-resource/mcp"))).json()
        assert document["authorization_servers"] == [idp.issuer]
        assert await call_whoami(url, "opaque-1") == f"carol mcp-client-1 {idp.issuer} {RESOURCE}"
        assert await call_whoami(url, "opaque-1") == f"carol mcp-client-1 {idp.issuer} {RESOURCE}"
        await refused(url, "elsewhere")  # the audience was handed to the introspection verifier
        await refused(url, "unknown")
    assert idp.count("/introspect") == 3  # opaque-1 once, then from the cache
    assert idp.count(OAUTH) == 0
    assert idp.count("/jwks") == 0
    await auth.aclose()


# -- configuration --------------------------------------------------------------------------


def test_a_default_jwt_verifier_is_built_without_any_io(idp: IdentityProvider) -> None:
    auth = RemoteAuthorization(idp.issuer, scopes_supported=["notes:read"], algorithms=["ES256"])
    assert isinstance(auth.verifier, JWTVerifier)
    assert auth.verifier.algorithms == ("ES256",)
    assert auth.scopes_supported == ("notes:read",)
    assert idp.total() == 0


@pytest.mark.parametrize(
    "issuer",
    ["", "idp.example", "ftp://idp.example", "https://idp.example/?tenant=1", "https://idp.example/#x", "https://"],
)
def test_an_unusable_issuer_is_refused(issuer: str) -> None:
    with pytest.raises(ConfigurationError):
        RemoteAuthorization(issuer)


def test_options_of_the_default_verifier_are_refused_with_another(idp: IdentityProvider) -> None:
    introspection = IntrospectionVerifier(idp.base + "/introspect", CLIENT_ID, CLIENT_SECRET)
    for options in ({"audience": RESOURCE}, {"algorithms": ["RS256"]}, {"roles_claim": "groups"}):
        with pytest.raises(ConfigurationError):
            RemoteAuthorization(idp.issuer, introspection, **options)
    with pytest.raises(ConfigurationError):
        RemoteAuthorization(idp.issuer, "not a verifier")  # type: ignore[arg-type]


def test_a_plain_http_issuer_beyond_loopback_warns(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="bastion"):
        RemoteAuthorization("http://idp.example/realms/acme")
    assert any("issuer http://idp.example/realms/acme is plain http" in r.getMessage() for r in caplog.records)
