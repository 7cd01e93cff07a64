"""MultiVerifier: order, refusals, and fan-out of the verifier hooks."""

from __future__ import annotations

from collections.abc import Sequence

import httpx2
import pytest
from starlette.requests import HTTPConnection

from bastion import (
    AccessToken,
    AuthenticationError,
    ConfigurationError,
    InvalidAudience,
    InvalidToken,
    KeysUnavailable,
    MCPServer,
    Verifier,
    get_access_token,
)
from bastion._resource.apikeys import APIKeyVerifier
from bastion._resource.multi import MultiVerifier

from support.notes import MCP_HEADERS, TOKENS, StaticVerifier, mcp_client, rpc, served


class Scripted(Verifier):
    """Answers every request the same way and counts what it was asked."""

    def __init__(
        self,
        answer: AccessToken | AuthenticationError | KeysUnavailable | None,
        issuers: Sequence[str] = (),
        fail_close: bool = False,
    ) -> None:
        super().__init__()
        self.answer = answer
        self.issuers = tuple(issuers)
        self.calls = 0
        self.audiences: list[str] = []
        self.closed = False
        self.fail_close = fail_close

    async def authenticate(self, conn: HTTPConnection) -> AccessToken | None:
        self.calls += 1
        if isinstance(self.answer, (AuthenticationError, KeysUnavailable)):
            raise self.answer
        return self.answer

    async def check(self, token: str) -> AccessToken:
        self.calls += 1
        if isinstance(self.answer, (AuthenticationError, KeysUnavailable)):
            raise self.answer
        if self.answer is None:
            raise InvalidToken("not mine")
        return self.answer

    def expect_audience(self, audience: str) -> None:
        self.audiences.append(audience)

    async def aclose(self) -> None:
        self.closed = True
        if self.fail_close:
            raise RuntimeError("close failed")


def token(subject: str) -> AccessToken:
    return AccessToken(token=subject, client_id="c", subject=subject, scopes=[])


REQUEST = HTTPConnection({"type": "http", "headers": []})


async def test_the_first_verifier_that_accepts_wins() -> None:
    first, second, third = Scripted(None), Scripted(token("b")), Scripted(token("c"))
    access = await MultiVerifier([first, second, third]).authenticate(REQUEST)
    assert access is not None
    assert access.subject == "b"
    assert (first.calls, second.calls, third.calls) == (1, 1, 0)


async def test_a_refusal_does_not_end_the_search() -> None:
    refusing, accepting = Scripted(InvalidToken("not a JWT")), Scripted(token("b"))
    access = await MultiVerifier([refusing, accepting]).authenticate(REQUEST)
    assert access is not None
    assert access.subject == "b"


async def test_no_credentials_anywhere_is_none() -> None:
    assert await MultiVerifier([Scripted(None), Scripted(None)]).authenticate(REQUEST) is None


async def test_the_first_refusal_is_raised_when_none_accepts() -> None:
    first_error, second_error = InvalidAudience("other resource"), InvalidToken("not a JWT")
    multi = MultiVerifier([Scripted(None), Scripted(first_error), Scripted(None), Scripted(second_error)])
    with pytest.raises(InvalidAudience) as info:
        await multi.authenticate(REQUEST)
    assert info.value is first_error


async def test_a_verifier_that_cannot_check_now_outweighs_refusals_but_not_an_acceptance() -> None:
    # The token may be one the unavailable verifier would accept: "try again", not "bad token".
    down = KeysUnavailable("down")
    multi = MultiVerifier([Scripted(InvalidAudience("other resource")), Scripted(down), Scripted(None)])
    with pytest.raises(KeysUnavailable) as info:
        await multi.authenticate(REQUEST)
    assert info.value is down
    access = await MultiVerifier([Scripted(down), Scripted(token("b"))]).authenticate(REQUEST)
    assert access is not None
    assert access.subject == "b"


async def test_check_tries_each_verifier_with_its_own_cache() -> None:
    refusing, accepting = Scripted(InvalidToken("no")), Scripted(token("b"))
    multi = MultiVerifier([refusing, accepting])
    assert (await multi.verify("tok")).subject == "b"
    assert (await multi.verify("tok")).subject == "b"
    assert accepting.calls == 1
    assert refusing.calls == 2
    assert len(multi.cache) == 0
    assert await multi.verify_token("tok") is not None

    error = KeysUnavailable("down")
    failing = MultiVerifier([Scripted(error), Scripted(InvalidToken("no"))])
    with pytest.raises(KeysUnavailable) as info:
        await failing.check("tok")
    assert info.value is error
    assert await failing.verify_token("tok") is None


async def test_an_unexpected_exception_is_not_mistaken_for_a_refusal() -> None:
    class Broken(Scripted):
        async def authenticate(self, conn: HTTPConnection) -> AccessToken | None:
            raise RuntimeError("bug")

    with pytest.raises(RuntimeError):
        await MultiVerifier([Broken(None), Scripted(token("b"))]).authenticate(REQUEST)


async def test_hooks_fan_out() -> None:
    first = Scripted(None, issuers=["https://a.example", "https://b.example"], fail_close=True)
    second = Scripted(None, issuers=["https://b.example", "https://c.example"])
    multi = MultiVerifier([first, second])
    assert multi.issuers == ("https://a.example", "https://b.example", "https://c.example")
    multi.expect_audience("https://notes.example/mcp")
    assert first.audiences == second.audiences == ["https://notes.example/mcp"]
    with pytest.raises(RuntimeError, match="close failed"):
        await multi.aclose()
    assert first.closed
    assert second.closed
    multi.issuers = ["https://only.example"]
    assert tuple(multi.issuers) == ("https://only.example",)


def test_configuration_errors() -> None:
    with pytest.raises(ConfigurationError):
        MultiVerifier([])
    with pytest.raises(ConfigurationError):
        MultiVerifier([Scripted(None), "not a verifier"])  # type: ignore[list-item]
    assert "Scripted" in repr(MultiVerifier([Scripted(None)]))


def multi_server() -> MCPServer:
    verifier = MultiVerifier(
        [APIKeyVerifier({"sk-ci-key-1": {"subject": "ci"}}, header="X-API-Key"), StaticVerifier(TOKENS)]
    )
    mcp = MCPServer("Notes", auth=verifier, resource_url="https://notes.example/mcp")

    @mcp.tool()
    def whoami() -> str:
        return get_access_token().subject or ""

    return mcp


async def test_end_to_end_api_keys_and_bearer_tokens_on_one_server() -> None:
    with served(multi_server(), stateless_http=True, json_response=True) as url:
        async with mcp_client(url, "writer") as client:
            result = await client.call_tool("whoami", {})
        assert result.content[0].text == "bob"  # type: ignore[union-attr]
        async with httpx2.AsyncClient() as http:
            call = rpc("tools/call", {"name": "whoami", "arguments": {}})
            keyed = await http.post(url, json=call, headers={**MCP_HEADERS, "X-API-Key": "sk-ci-key-1"})
            assert keyed.json()["result"]["content"][0]["text"] == "ci"
            # The refused API key does not stop the bearer token from being tried.
            both = await http.post(
                url, json=call, headers={**MCP_HEADERS, "X-API-Key": "wrong", "Authorization": "Bearer reader"}
            )
            assert both.json()["result"]["content"][0]["text"] == "alice"
            wrong = await http.post(url, json=rpc("tools/list"), headers={**MCP_HEADERS, "X-API-Key": "wrong"})
            assert wrong.status_code == 401
            assert 'error="invalid_token"' in wrong.headers["www-authenticate"]
            metadata = await http.get(url.replace("/mcp", "/.well-known/oauth-protected-resource/mcp"))
            assert metadata.json()["authorization_servers"] == ["https://issuer.example"]
