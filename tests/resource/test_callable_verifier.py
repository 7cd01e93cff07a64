"""CallableVerifier: any function of the request as a verifier."""

from __future__ import annotations

import hmac
import logging
import time
from typing import Any

import httpx2
import pytest
from mcp.server.auth.provider import AccessToken as SDKAccessToken
from starlette.requests import HTTPConnection, Request

from bastion import AccessToken, InvalidAudience, InvalidToken, MCPServer, TokenExpired, get_access_token
from bastion._resource.apikeys import APIKey
from bastion._resource.callable import CallableVerifier, Principal

from support.notes import MCP_HEADERS, mcp_client, rpc, served

SECRET_HEADER_VALUE = "sk-do-not-log-me"


def conn(**headers: str) -> HTTPConnection:
    return HTTPConnection(
        {"type": "http", "headers": [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()]}
    )


def by_header(request: Request) -> dict[str, Any] | None:
    key = request.headers.get("x-api-key")
    if key is None:
        return None
    if not hmac.compare_digest(key, SECRET_HEADER_VALUE):
        raise InvalidToken("wrong key", description="The API key is invalid")
    return {"subject": "ci", "scopes": ["notes:read"], "roles": "robot", "token": key, "team": "infra"}


async def test_sync_function_returning_a_dict() -> None:
    verifier = CallableVerifier(by_header)
    access = await verifier.authenticate(conn(x_api_key=SECRET_HEADER_VALUE))
    assert access is not None
    assert access.subject == "ci"
    assert access.client_id == "ci"
    assert access.scopes == ["notes:read"]
    assert access.roles == ["robot"]
    assert access.token == SECRET_HEADER_VALUE
    assert access.claims == {"sub": "ci", "team": "infra"}
    assert await verifier.authenticate(conn()) is None


async def test_raising_an_authentication_error_refuses_with_it() -> None:
    with pytest.raises(InvalidToken) as info:
        await CallableVerifier(by_header).authenticate(conn(x_api_key="guess"))
    assert info.value.description == "The API key is invalid"

    def wrong_audience(request: Request) -> None:
        raise InvalidAudience("not for us")

    with pytest.raises(InvalidAudience):
        await CallableVerifier(wrong_audience).authenticate(conn())


async def test_async_function_and_each_kind_of_principal() -> None:
    principals: list[Principal] = [
        AccessToken(token="t", client_id="app", subject="ann", scopes=["a"], roles=["r"]),
        SDKAccessToken(token="t", client_id="app", scopes=["a"], subject="ann"),
        APIKey("ann", client_id="app", scopes=("a",)),
        {"sub": "ann", "client_id": "app", "scope": "a", "claims": {"tenant": "t1"}},
        "ann",
    ]
    for principal in principals:

        async def authenticate(request: Request, principal: Principal = principal) -> Principal:
            return principal

        access = await CallableVerifier(authenticate).authenticate(conn())
        assert access is not None
        assert isinstance(access, AccessToken)
        assert access.subject == "ann"
        assert access.client_id in ("app", "ann")
    as_string = await CallableVerifier(lambda request: "ann").authenticate(conn())
    assert as_string is not None
    assert (as_string.token, as_string.scopes, as_string.claims) == ("", [], {"sub": "ann"})


async def test_the_function_gets_a_request_and_runs_every_time() -> None:
    seen: list[object] = []

    async def authenticate(request: Request) -> str:
        seen.append(request)
        return request.headers["x-user"]

    verifier = CallableVerifier(authenticate)
    for _ in range(3):
        access = await verifier.authenticate(conn(x_user="bob"))
        assert access is not None
        assert access.subject == "bob"
    assert len(seen) == 3
    assert all(isinstance(request, Request) for request in seen)


@pytest.mark.parametrize(
    "result",
    [42, True, object(), "", {"subject": 7}, {"scopes": [1]}, {"claims": "x"}, {"expires_at": "later"}],
)
async def test_a_result_that_is_no_principal_is_logged_and_refused(
    result: object, caplog: pytest.LogCaptureFixture
) -> None:
    verifier = CallableVerifier(lambda request: result)  # type: ignore[arg-type, return-value]
    with caplog.at_level(logging.ERROR, logger="bastion"), pytest.raises(InvalidToken):
        await verifier.authenticate(conn(x_api_key=SECRET_HEADER_VALUE))
    assert "is refused" in caplog.text


async def test_false_refuses_quietly(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="bastion"), pytest.raises(InvalidToken):
        await CallableVerifier(lambda request: False).authenticate(conn())  # type: ignore[arg-type, return-value]
    assert caplog.text == ""


@pytest.mark.parametrize("is_async", [False, True])
async def test_a_failing_function_is_logged_without_request_data_and_refused(
    is_async: bool, caplog: pytest.LogCaptureFixture
) -> None:
    def failing(request: Request) -> None:
        raise ValueError(f"cannot parse {request.headers['x-api-key']}")

    async def failing_async(request: Request) -> None:
        raise KeyError(request.headers["x-api-key"])

    verifier = CallableVerifier(failing_async if is_async else failing)
    with caplog.at_level(logging.DEBUG, logger="bastion"), pytest.raises(InvalidToken) as info:
        await verifier.authenticate(conn(x_api_key=SECRET_HEADER_VALUE))
    assert ("KeyError" if is_async else "ValueError") in caplog.text
    assert "test_callable_verifier.py" in caplog.text
    for text in (caplog.text, str(info.value), info.value.description):
        assert SECRET_HEADER_VALUE not in text
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__


async def test_an_expired_principal_is_refused() -> None:
    verifier = CallableVerifier(lambda request: {"subject": "a", "expires_at": time.time() - 10})
    with pytest.raises(TokenExpired):
        await verifier.authenticate(conn())


async def test_check_offers_a_bearer_token_to_the_function() -> None:
    def bearer(request: Request) -> str | None:
        header = request.headers.get("authorization", "")
        return header.removeprefix("Bearer ") if header == "Bearer good" else None

    verifier = CallableVerifier(bearer)
    assert (await verifier.check("good")).subject == "good"
    with pytest.raises(InvalidToken):
        await verifier.check("bad")
    assert await verifier.verify_token("bad") is None
    assert len(verifier.cache) == 0


def test_not_callable() -> None:
    with pytest.raises(TypeError):
        CallableVerifier("by_header")  # type: ignore[arg-type]
    assert "by_header" in repr(CallableVerifier(by_header))


def callable_server() -> MCPServer:
    async def authenticate(request: Request) -> dict[str, Any] | None:
        if request.headers.get("x-crash"):
            raise RuntimeError("database down")
        return by_header(request)

    mcp = MCPServer("Notes", auth=CallableVerifier(authenticate), resource_url="https://notes.example/mcp")

    @mcp.tool()
    def whoami() -> str:
        token = get_access_token()
        return f"{token.subject} {token.claim('team')}"

    return mcp


async def test_end_to_end_through_mcp_server() -> None:
    with served(callable_server(), stateless_http=True, json_response=True) as url:
        async with httpx2.AsyncClient() as http:
            ok = await http.post(
                url,
                json=rpc("tools/call", {"name": "whoami", "arguments": {}}),
                headers={**MCP_HEADERS, "X-API-Key": SECRET_HEADER_VALUE},
            )
            assert ok.status_code == 200
            assert ok.json()["result"]["content"][0]["text"] == "ci infra"
            for headers, error in (({}, False), ({"X-API-Key": "guess"}, True), ({"X-Crash": "1"}, True)):
                response = await http.post(url, json=rpc("tools/list"), headers={**MCP_HEADERS, **headers})
                assert response.status_code == 401
                assert ('error="invalid_token"' in response.headers["www-authenticate"]) is error
                assert "database" not in response.text


async def test_end_to_end_with_the_sdk_client_and_a_bearer_function() -> None:
    mcp = MCPServer(
        "Notes",
        auth=CallableVerifier(lambda request: {"subject": "eve"} if request.headers.get("authorization") else None),
    )

    @mcp.tool()
    def whoami() -> str:
        return get_access_token().subject or ""

    with served(mcp, stateless_http=True, json_response=True) as url:
        async with mcp_client(url, "anything") as client:
            result = await client.call_tool("whoami", {})
    assert result.content[0].text == "eve"  # type: ignore[union-attr]
