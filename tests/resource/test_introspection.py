"""IntrospectionVerifier against a real RFC 7662 endpoint served over HTTP."""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any
from urllib.parse import unquote_plus

import anyio
import httpx2
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from bastion import (
    AuthenticationError,
    BastionError,
    ConfigurationError,
    InsufficientScope,
    InvalidAudience,
    InvalidClaims,
    InvalidIssuer,
    InvalidToken,
    KeysUnavailable,
    MCPServer,
    TokenExpired,
    TokenInactive,
    get_access_token,
)
from bastion._resource.introspection import IntrospectionVerifier
from bastion.testing import ProofKey, dpop_headers, serve

from support.clock import FakeClock
from support.notes import MCP_HEADERS, mcp_client, rpc, served

CLIENT_ID = "rs:notes %1 a"
CLIENT_SECRET = "s3cr:t %20 pa+ss w"
ISSUER = "https://as.example"
RESOURCE = "https://notes.example/mcp"


class AuthorizationServer:
    """An introspection endpoint that checks client authentication and answers per token."""

    def __init__(self) -> None:
        self.answers: dict[str, Any] = {}
        self.mode = "ok"
        self.calls = 0
        self.requests: list[dict[str, Any]] = []
        self.release = threading.Event()
        self.app = Starlette(routes=[Route("/introspect", self.introspect, methods=["POST"])])

    async def introspect(self, request: Request) -> Response:
        self.calls += 1
        form = await request.form()
        authorization = request.headers.get("authorization")
        self.requests.append(
            {
                "authorization": authorization,
                "form": dict(form),
                "content_type": request.headers.get("content-type"),
                "accept": request.headers.get("accept"),
            }
        )
        if self.mode == "slow":
            await anyio.to_thread.run_sync(self.release.wait, 30)
        if self.mode == "500":
            return PlainTextResponse("boom", status_code=500)
        if self.mode == "garbage":
            return PlainTextResponse("<html>not json</html>")
        if self.mode == "array":
            return JSONResponse([{"active": True}])
        if self.mode == "huge":
            return JSONResponse({"active": True, "padding": "x" * (1024 * 1024)})
        if authorization is not None:
            _, _, encoded = authorization.partition(" ")
            user, _, password = base64.b64decode(encoded).decode().partition(":")
            credentials: tuple[object, ...] = (unquote_plus(user), unquote_plus(password))
        else:
            credentials = (form.get("client_id"), form.get("client_secret"))
        if credentials != (CLIENT_ID, CLIENT_SECRET):
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        token = form.get("token")
        return JSONResponse(self.answers.get(str(token), {"active": False}))


@pytest.fixture
def authorization_server() -> Iterator[tuple[AuthorizationServer, str]]:
    server = AuthorizationServer()
    with serve(server.app) as base:
        try:
            yield server, base + "/introspect"
        finally:
            server.release.set()


@pytest.fixture
async def make_verifier(
    authorization_server: tuple[AuthorizationServer, str],
) -> AsyncIterator[Callable[..., IntrospectionVerifier]]:
    made: list[IntrospectionVerifier] = []

    def make(**options: Any) -> IntrospectionVerifier:
        options.setdefault("client_id", CLIENT_ID)
        options.setdefault("client_secret", CLIENT_SECRET)
        endpoint = options.pop("endpoint", authorization_server[1])
        verifier = IntrospectionVerifier(endpoint, **options)
        made.append(verifier)
        return verifier

    yield make
    for verifier in made:
        await verifier.aclose()


def active(**claims: Any) -> dict[str, Any]:
    return {"active": True, "client_id": "app-1", "sub": "alice", "scope": "notes:read", **claims}


# -- client authentication --------------------------------------------------


async def test_client_secret_basic_form_urlencodes_id_and_secret_before_base64(
    authorization_server: tuple[AuthorizationServer, str], make_verifier: Callable[..., IntrospectionVerifier]
) -> None:
    server, _ = authorization_server
    server.answers["tok-1"] = active()
    access = await make_verifier().verify("tok-1")
    assert access.subject == "alice"
    sent = server.requests[0]
    expected = base64.b64encode(b"rs%3Anotes+%251+a:s3cr%3At+%2520+pa%2Bss+w").decode()
    assert sent["authorization"] == f"Basic {expected}"
    assert sent["form"] == {"token": "tok-1", "token_type_hint": "access_token"}
    assert sent["content_type"] == "application/x-www-form-urlencoded"
    assert sent["accept"] == "application/json"


async def test_client_secret_post_sends_credentials_in_the_form(
    authorization_server: tuple[AuthorizationServer, str], make_verifier: Callable[..., IntrospectionVerifier]
) -> None:
    server, _ = authorization_server
    server.answers["tok-1"] = active()
    access = await make_verifier(auth_method="client_secret_post").verify("tok-1")
    assert access.subject == "alice"
    sent = server.requests[0]
    assert sent["authorization"] is None
    assert sent["form"] == {
        "token": "tok-1",
        "token_type_hint": "access_token",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
    }


async def test_rejected_client_credentials_refuse_the_token_without_naming_the_secret(
    authorization_server: tuple[AuthorizationServer, str],
    make_verifier: Callable[..., IntrospectionVerifier],
    caplog: pytest.LogCaptureFixture,
) -> None:
    server, _ = authorization_server
    server.answers["tok-1"] = active()
    verifier = make_verifier(client_secret="wrong-secret-value")
    with caplog.at_level(logging.DEBUG, logger="bastion"), pytest.raises(KeysUnavailable) as info:
        await verifier.verify("tok-1")
    assert "401" in str(info.value)
    for text in (str(info.value), caplog.text, repr(verifier)):
        assert "wrong-secret-value" not in text
        assert "tok-1" not in text


# -- answers ----------------------------------------------------------------


async def test_active_answer_becomes_an_access_token(
    authorization_server: tuple[AuthorizationServer, str], make_verifier: Callable[..., IntrospectionVerifier]
) -> None:
    server, _ = authorization_server
    exp = int(time.time()) + 600
    server.answers["tok-1"] = active(
        scope="notes:read notes:write", exp=exp, iss=ISSUER, aud=RESOURCE, roles=["editor"], username="alice@x"
    )
    access = await make_verifier(issuer=ISSUER, audience=RESOURCE).verify("tok-1")
    assert access.token == "tok-1"
    assert access.client_id == "app-1"
    assert access.subject == "alice"
    assert access.scopes == ["notes:read", "notes:write"]
    assert access.roles == ["editor"]
    assert access.expires_at == exp
    assert access.issuer == ISSUER
    assert access.resource == RESOURCE
    assert access.claim("username") == "alice@x"


async def test_roles_from_a_dotted_claim_and_scopes_as_a_list(
    authorization_server: tuple[AuthorizationServer, str], make_verifier: Callable[..., IntrospectionVerifier]
) -> None:
    server, _ = authorization_server
    server.answers["tok-1"] = active(scope=["a", "b"], realm_access={"roles": ["admin", "user"]})
    access = await make_verifier(roles_claim="realm_access.roles").verify("tok-1")
    assert access.scopes == ["a", "b"]
    assert access.roles == ["admin", "user"]


@pytest.mark.parametrize(
    "answer",
    [{"active": False}, {"active": "true", "sub": "a"}, {"active": 1, "sub": "a"}, {"sub": "a"}, {}],
)
async def test_anything_but_active_true_is_inactive(
    authorization_server: tuple[AuthorizationServer, str],
    make_verifier: Callable[..., IntrospectionVerifier],
    answer: dict[str, Any],
) -> None:
    server, _ = authorization_server
    server.answers["tok-1"] = answer
    verifier = make_verifier()
    with pytest.raises(TokenInactive):
        await verifier.verify("tok-1")
    assert await verifier.verify_token("tok-1") is None


async def test_unknown_token_is_inactive(make_verifier: Callable[..., IntrospectionVerifier]) -> None:
    with pytest.raises(TokenInactive):
        await make_verifier().verify("never-issued")


@pytest.mark.parametrize(
    ("claims", "error"),
    [
        ({"exp": "soon"}, InvalidClaims),
        ({"exp": True}, InvalidClaims),
        ({"iss": 7}, InvalidClaims),
        ({"scope": {"a": 1}}, InvalidClaims),
        ({"aud": [RESOURCE, 3]}, InvalidClaims),
        ({"roles": "a b", "sub": ["x"]}, InvalidClaims),
    ],
)
async def test_malformed_members_are_refused(
    authorization_server: tuple[AuthorizationServer, str],
    make_verifier: Callable[..., IntrospectionVerifier],
    claims: dict[str, Any],
    error: type[Exception],
) -> None:
    server, _ = authorization_server
    server.answers["tok-1"] = active(**claims)
    with pytest.raises(error):
        await make_verifier().verify("tok-1")


@pytest.mark.parametrize("claims", [{"token_type": "refresh_token"}, {"token_type": "Refresh"}])
async def test_refresh_tokens_are_refused(
    authorization_server: tuple[AuthorizationServer, str],
    make_verifier: Callable[..., IntrospectionVerifier],
    claims: dict[str, Any],
) -> None:
    server, _ = authorization_server
    server.answers["tok-1"] = active(**claims)
    server.answers["bearer"] = active(token_type="Bearer")
    verifier = make_verifier()
    with pytest.raises(InvalidToken):
        await verifier.verify("tok-1")
    assert (await verifier.verify("bearer")).subject == "alice"


async def test_a_bound_token_keeps_its_cnf_and_is_refused_by_the_bearer_only_sdk_protocol(
    authorization_server: tuple[AuthorizationServer, str], make_verifier: Callable[..., IntrospectionVerifier]
) -> None:
    # The resource checks the binding (a DPoP proof of cnf.jkt); the SDK's protocol carries no proof.
    server, _ = authorization_server
    server.answers["bound"] = active(cnf={"jkt": "0ZcOCORZNYy"})
    verifier = make_verifier()
    assert (await verifier.verify("bound")).claim("cnf") == {"jkt": "0ZcOCORZNYy"}
    assert await verifier.verify_token("bound") is None


async def test_issuer_is_checked_when_the_answer_names_one(
    authorization_server: tuple[AuthorizationServer, str], make_verifier: Callable[..., IntrospectionVerifier]
) -> None:
    server, _ = authorization_server
    server.answers["mine"] = active(iss=ISSUER)
    server.answers["other"] = active(iss="https://evil.example")
    server.answers["silent"] = active()
    verifier = make_verifier(issuer=["https://old.example", ISSUER])
    assert verifier.issuers == ("https://old.example", ISSUER)
    assert (await verifier.verify("mine")).issuer == ISSUER
    assert (await verifier.verify("silent")).issuer is None
    with pytest.raises(InvalidIssuer):
        await verifier.verify("other")


async def test_audience_is_checked_when_the_answer_names_one(
    authorization_server: tuple[AuthorizationServer, str], make_verifier: Callable[..., IntrospectionVerifier]
) -> None:
    server, _ = authorization_server
    server.answers["exact"] = active(aud=RESOURCE)
    server.answers["slash"] = active(aud=RESOURCE + "/")
    server.answers["among"] = active(aud=["https://other.example", RESOURCE])
    server.answers["other"] = active(aud=["https://other.example"])
    server.answers["none"] = active()
    verifier = make_verifier(audience=RESOURCE)
    assert (await verifier.verify("exact")).resource == RESOURCE
    assert (await verifier.verify("slash")).resource == RESOURCE + "/"
    assert (await verifier.verify("among")).resource == RESOURCE
    assert (await verifier.verify("none")).resource is None
    with pytest.raises(InvalidAudience):
        await verifier.verify("other")


async def test_audience_is_adopted_from_the_server_only_when_unset(
    authorization_server: tuple[AuthorizationServer, str], make_verifier: Callable[..., IntrospectionVerifier]
) -> None:
    server, _ = authorization_server
    server.answers["ours"] = active(aud=RESOURCE)
    server.answers["theirs"] = active(aud="https://other.example/mcp")
    adopting = make_verifier()
    adopting.expect_audience(RESOURCE)
    assert (await adopting.verify("ours")).resource == RESOURCE
    with pytest.raises(InvalidAudience):
        await adopting.verify("theirs")
    configured = make_verifier(audience="https://other.example/mcp")
    configured.expect_audience(RESOURCE)
    assert (await configured.verify("theirs")).subject == "alice"


async def test_required_scopes(
    authorization_server: tuple[AuthorizationServer, str], make_verifier: Callable[..., IntrospectionVerifier]
) -> None:
    server, _ = authorization_server
    server.answers["reader"] = active(scope="notes:read")
    server.answers["both"] = active(scope="notes:read mcp")
    verifier = make_verifier(required_scopes=["mcp"])
    assert (await verifier.verify("both")).scopes == ["notes:read", "mcp"]
    # A valid token short of scope is a step-up, never a token to throw away (401)...
    with pytest.raises(InsufficientScope) as info:
        await verifier.verify("reader")
    assert (info.value.scopes, info.value.granted) == (("mcp",), ("notes:read",))
    assert not isinstance(info.value, AuthenticationError)
    # ...and is not remembered as valid: the next request asks again, and is refused again.
    calls = server.calls
    with pytest.raises(InsufficientScope):
        await verifier.verify("reader")
    assert server.calls == calls + 1


# -- caching ----------------------------------------------------------------


async def test_answers_are_cached_until_exp(
    authorization_server: tuple[AuthorizationServer, str], make_verifier: Callable[..., IntrospectionVerifier]
) -> None:
    server, _ = authorization_server
    clock = FakeClock()
    server.answers["tok-1"] = active(exp=int(clock.now) + 30)
    verifier = make_verifier(clock=clock, cache_ttl=60)
    await verifier.verify("tok-1")
    clock.now += 29
    await verifier.verify("tok-1")
    assert server.calls == 1
    clock.now += 2
    # The cache forgot it at exp; the endpoint's stale "active" does not resurrect it.
    with pytest.raises(TokenExpired):
        await verifier.verify("tok-1")
    assert server.calls == 2


async def test_answers_are_cached_for_cache_ttl_at_most(
    authorization_server: tuple[AuthorizationServer, str], make_verifier: Callable[..., IntrospectionVerifier]
) -> None:
    server, _ = authorization_server
    clock = FakeClock()
    server.answers["tok-1"] = active(exp=int(clock.now) + 3600)
    verifier = make_verifier(clock=clock, cache_ttl=60)
    assert verifier.cache_ttl(await verifier.verify("tok-1")) == 60
    clock.now += 59
    await verifier.verify("tok-1")
    assert server.calls == 1
    clock.now += 2
    await verifier.verify("tok-1")
    assert server.calls == 2


async def test_revocation_is_seen_after_the_cache_ttl(
    authorization_server: tuple[AuthorizationServer, str], make_verifier: Callable[..., IntrospectionVerifier]
) -> None:
    server, _ = authorization_server
    clock = FakeClock()
    server.answers["tok-1"] = active()
    verifier = make_verifier(clock=clock, cache_ttl=10)
    await verifier.verify("tok-1")
    server.answers["tok-1"] = {"active": False}
    await verifier.verify("tok-1")
    clock.now += 11
    with pytest.raises(TokenInactive):
        await verifier.verify("tok-1")


async def test_zero_cache_ttl_asks_every_time_and_inactive_is_not_cached(
    authorization_server: tuple[AuthorizationServer, str], make_verifier: Callable[..., IntrospectionVerifier]
) -> None:
    server, _ = authorization_server
    server.answers["tok-1"] = active()
    uncached = make_verifier(cache_ttl=0)
    await uncached.verify("tok-1")
    await uncached.verify("tok-1")
    assert server.calls == 2
    cached = make_verifier()
    for _ in range(2):
        with pytest.raises(TokenInactive):
            await cached.verify("inactive")
    assert server.calls == 4


# -- the endpoint misbehaving ---------------------------------------------


@pytest.mark.parametrize("mode", ["500", "garbage", "array", "huge"])
async def test_bad_answers_refuse_the_token_as_keys_unavailable(
    authorization_server: tuple[AuthorizationServer, str],
    make_verifier: Callable[..., IntrospectionVerifier],
    caplog: pytest.LogCaptureFixture,
    mode: str,
) -> None:
    server, _ = authorization_server
    server.answers["tok-secret-1"] = active()
    server.mode = mode
    with caplog.at_level(logging.DEBUG, logger="bastion"), pytest.raises(KeysUnavailable) as info:
        await make_verifier().verify("tok-secret-1")
    for text in (str(info.value), caplog.text):
        assert "tok-secret-1" not in text
        assert CLIENT_SECRET not in text


async def test_slow_endpoint_times_out(
    authorization_server: tuple[AuthorizationServer, str], make_verifier: Callable[..., IntrospectionVerifier]
) -> None:
    server, _ = authorization_server
    server.mode = "slow"
    with pytest.raises(KeysUnavailable):
        await make_verifier(timeout=0.2).verify("tok-1")
    server.release.set()


async def test_endpoint_down_refuses_the_token(make_verifier: Callable[..., IntrospectionVerifier]) -> None:
    with serve(Starlette()) as base:
        endpoint = base + "/introspect"
    verifier = make_verifier(endpoint=endpoint)
    with pytest.raises(KeysUnavailable) as info:
        await verifier.verify("tok-1")
    assert "tok-1" not in str(info.value)


async def test_aclose_closes_the_client_and_a_later_request_opens_another(
    authorization_server: tuple[AuthorizationServer, str], make_verifier: Callable[..., IntrospectionVerifier]
) -> None:
    server, _ = authorization_server
    server.answers["tok-1"] = active()
    verifier = make_verifier(cache_ttl=0)
    await verifier.verify("tok-1")
    client = verifier._client
    assert client is not None
    await verifier.aclose()
    assert client.is_closed
    await verifier.aclose()
    await verifier.verify("tok-1")
    assert server.calls == 2


# -- configuration ----------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "options"),
    [
        (("as.example/introspect", "id", "secret"), {}),
        (("ftp://as.example/introspect", "id", "secret"), {}),
        (("https://user:pw@as.example/introspect", "id", "secret"), {}),
        (("https://as.example/introspect", "", "secret"), {}),
        (("https://as.example/introspect", "id", ""), {}),
        (("https://as.example/introspect", "id", "secret"), {"auth_method": "private_key_jwt"}),
        (("https://as.example/introspect", "id", "secret"), {"cache_ttl": -1}),
        (("https://as.example/introspect", "id", "secret"), {"timeout": 0}),
        (("https://as.example/introspect", "id", "secret"), {"issuer": [""]}),
    ],
)
def test_bad_configuration(args: tuple[str, str, str], options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError) as info:
        IntrospectionVerifier(*args, **options)
    assert "secret" not in str(info.value).replace("client_secret", "")


def test_repr_names_no_secret() -> None:
    verifier = IntrospectionVerifier("https://as.example/introspect", "rs", "hunter2")
    assert "hunter2" not in repr(verifier)
    assert verifier.issuers == ()


# -- end to end -------------------------------------------------------------


def introspected_server(endpoint: str) -> MCPServer:
    verifier = IntrospectionVerifier(endpoint, CLIENT_ID, CLIENT_SECRET, issuer=ISSUER)
    mcp = MCPServer("Notes", auth=verifier, resource_url=RESOURCE)

    @mcp.tool()
    def whoami() -> str:
        token = get_access_token()
        return f"{token.subject} {' '.join(token.scopes)}"

    return mcp


async def test_end_to_end_through_mcp_server(authorization_server: tuple[AuthorizationServer, str]) -> None:
    server, endpoint = authorization_server
    server.answers["good"] = active(aud=RESOURCE, iss=ISSUER)
    server.answers["elsewhere"] = active(aud="https://other.example/mcp", iss=ISSUER)
    with served(introspected_server(endpoint), stateless_http=True, json_response=True) as url:
        async with mcp_client(url, "good") as client:
            result = await client.call_tool("whoami", {})
        assert result.content[0].text == "alice notes:read"  # type: ignore[union-attr]
        async with httpx2.AsyncClient() as http:
            metadata = await http.get(url.replace("/mcp", "/.well-known/oauth-protected-resource/mcp"))
            assert metadata.json()["authorization_servers"] == [ISSUER]
            for token in ("elsewhere", "inactive"):
                response = await http.post(
                    url, json=rpc("tools/list"), headers={**MCP_HEADERS, "Authorization": f"Bearer {token}"}
                )
                assert response.status_code == 401
                assert 'error="invalid_token"' in response.headers["www-authenticate"]
            server.mode = "500"
            server.answers["fresh"] = active(aud=RESOURCE)
            response = await http.post(
                url, json=rpc("tools/list"), headers={**MCP_HEADERS, "Authorization": "Bearer fresh"}
            )
            # The endpoint is down: the token may be fine, so "try again", not 401 (clients discard it).
            assert response.status_code == 503
            assert response.headers["retry-after"].isdigit()
            assert response.headers["cache-control"] == "no-store"
            assert response.json()["error"] == "temporarily_unavailable"
            assert "fresh" not in response.text
            server.mode = "ok"
            response = await http.post(
                url, json=rpc("tools/list"), headers={**MCP_HEADERS, "Authorization": "Bearer fresh"}
            )
            assert response.status_code == 200


def test_an_inactive_token_is_refused_but_an_outage_is_not_a_refusal() -> None:
    assert issubclass(TokenInactive, AuthenticationError)
    assert issubclass(KeysUnavailable, BastionError)
    assert not issubclass(KeysUnavailable, AuthenticationError)


async def test_a_bound_opaque_token_is_accepted_with_a_proof_of_the_key_its_introspection_names(
    authorization_server: tuple[AuthorizationServer, str], make_verifier: Callable[..., IntrospectionVerifier]
) -> None:
    # RFC 9449 section 6.2: the introspection answer of a bound token carries cnf.jkt.
    server, _ = authorization_server
    key = ProofKey.generate()
    server.answers["bound"] = active(cnf={"jkt": key.jkt})
    mcp = MCPServer("Notes", auth=make_verifier())

    @mcp.tool()
    def whoami() -> str:
        return "me"

    with served(mcp, stateless_http=True, json_response=True) as url:
        body = json.dumps(rpc("tools/call", {"name": "whoami", "arguments": {}})).encode()
        async with httpx2.AsyncClient() as http:
            bound = await http.post(url, content=body, headers={**MCP_HEADERS, **dpop_headers(key, url, "bound", body)})
            assert bound.status_code == 200
            bearer = await http.post(url, content=body, headers={**MCP_HEADERS, "Authorization": "Bearer bound"})
            assert bearer.status_code == 401
            thief = dpop_headers(ProofKey.generate(), url, "bound", body)
            stolen = await http.post(url, content=body, headers={**MCP_HEADERS, **thief})
            assert stolen.status_code == 401
            assert 'error="invalid_dpop_proof"' in stolen.headers["www-authenticate"]
