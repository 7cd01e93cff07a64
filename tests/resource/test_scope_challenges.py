"""The scopes a client is told to ask for: the 401 challenge (first sign-in) and the 403 step-up.

A 401 names what a first sign-in should request (MCP "Scope Selection Strategy"); a 403
``insufficient_scope`` names the token's known scopes plus those the operation needs
(MCP 2025-11-25 "Scope Challenge Handling", recommended approach), so that a client which
replaces its scopes with the challenge's keeps what it could already do.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx2
import pytest

from bastion import (
    ConfigurationError,
    JWTVerifier,
    MCPServer,
    Verifier,
    protect,
    require_scopes,
)
from bastion.testing import KeyPair

from support.notes import MCP_HEADERS, TOKENS, StaticVerifier, principal, rpc, served

ISSUER = "https://issuer.example"


def scope_of(response: httpx2.Response) -> str | None:
    """The ``scope`` parameter of the response's ``WWW-Authenticate`` challenge."""
    challenge = response.headers["www-authenticate"]
    _, found, rest = challenge.partition('scope="')
    return rest.partition('"')[0] if found else None


def tools_server(auth: Verifier | None = None, **options: Any) -> MCPServer:
    """A server with a tool per scope (and one naming offline_access, which no client should be told to ask for)."""
    mcp = MCPServer("Notes", auth=auth or StaticVerifier(TOKENS), **options)

    @mcp.tool()
    def whoami() -> str:
        return "me"

    @mcp.tool(auth=require_scopes("notes:read"))
    def list_notes() -> list[str]:
        return ["first"]

    @mcp.tool(auth=require_scopes("notes:write"))
    def add_note(text: str) -> str:
        return f"saved {text}"

    @mcp.tool(auth=require_scopes("offline_access"))
    def odd() -> str:
        return "odd"

    return mcp


def jwt_verifier(keys: KeyPair, **options: Any) -> JWTVerifier:
    return JWTVerifier(public_key=keys.public_key, issuer=ISSUER, **options)


def unauthenticated(url: str, token: str | None = None) -> httpx2.Response:
    headers = {**MCP_HEADERS, **({"Authorization": f"Bearer {token}"} if token else {})}
    response = httpx2.post(url, json=rpc("tools/list", {}), headers=headers)
    assert response.status_code == 401
    return response


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        # Nothing required, nothing configured: what the tools need, never offline_access.
        (lambda keys: tools_server(), "notes:read notes:write"),
        # The verifier's required scopes, not every tool's.
        (lambda keys: tools_server(jwt_verifier(keys, required_scopes=["mcp"])), "mcp"),
        # The default policy's and the verifier's, together.
        (
            lambda keys: tools_server(
                jwt_verifier(keys, required_scopes=["mcp"]), default_policy=require_scopes("profile")
            ),
            "mcp profile",
        ),
        # What a first sign-in should ask for, as configured.
        (lambda keys: tools_server(initial_scopes=["notes:read"]), "notes:read"),
        # ... besides what is required anyway.
        (
            lambda keys: tools_server(jwt_verifier(keys, required_scopes=["mcp"]), initial_scopes=["notes:read"]),
            "mcp notes:read",
        ),
    ],
    ids=["tools", "required_scopes", "default_policy_and_required_scopes", "initial_scopes", "initial_and_required"],
)
def test_the_401_names_the_scopes_a_first_sign_in_should_request(
    make: Callable[[KeyPair], MCPServer], expected: str
) -> None:
    keys = KeyPair.generate("ES256")
    with served(make(keys), stateless_http=True, json_response=True) as url:
        assert scope_of(unauthenticated(url)) == expected
        # A presented bad token is told the same.
        refused = unauthenticated(url, "not-a-token")
        assert 'error="invalid_token"' in refused.headers["www-authenticate"]
        assert scope_of(refused) == expected


def test_initial_scopes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BASTION_INITIAL_SCOPES", "notes:read, profile")
    with served(tools_server(), stateless_http=True, json_response=True) as url:
        assert scope_of(unauthenticated(url)) == "notes:read profile"
    # An explicit argument wins over the variable.
    with served(tools_server(initial_scopes=["notes:write"]), stateless_http=True, json_response=True) as url:
        assert scope_of(unauthenticated(url)) == "notes:write"


@pytest.mark.parametrize("scopes", [["offline_access"], ["notes:read", "two words"], "notes:read"])
def test_initial_scopes_are_scope_names_and_never_offline_access(scopes: Any) -> None:
    with pytest.raises(ConfigurationError, match="initial_scopes"):
        tools_server(initial_scopes=scopes)


def test_protect_takes_initial_scopes() -> None:
    from bastion.testing import serve

    app = protect(tools_server().streamable_http_app(), auth=StaticVerifier(TOKENS), initial_scopes=["notes:read"])
    with serve(app) as base:
        assert scope_of(unauthenticated(base + "/mcp")) == "notes:read"


def test_a_token_without_the_verifiers_required_scopes_is_a_403_step_up_every_time() -> None:
    keys = KeyPair.generate("ES256")
    mcp = tools_server(jwt_verifier(keys, required_scopes=["mcp"]), resource_url="http://127.0.0.1/mcp")
    short = keys.create_token(issuer=ISSUER, audience="http://127.0.0.1/mcp", scopes=["notes:read", "unknown"])
    headers = {**MCP_HEADERS, "Authorization": f"Bearer {short}"}
    with served(mcp, stateless_http=True, json_response=True) as url:
        for _ in range(2):  # the second time too: a short token is never cached as valid
            response = httpx2.post(url, json=rpc("tools/list", {}), headers=headers)
            assert response.status_code == 403
            assert 'error="insufficient_scope"' in response.headers["www-authenticate"]
            # The required scope, and the granted one the server knows (not "unknown").
            assert scope_of(response) == "mcp notes:read"
        enough = keys.create_token(issuer=ISSUER, audience="http://127.0.0.1/mcp", scopes=["notes:read", "mcp"])
        listed = httpx2.post(
            url, json=rpc("tools/list", {}), headers={**MCP_HEADERS, "Authorization": f"Bearer {enough}"}
        )
        assert listed.status_code == 200


def test_the_step_up_keeps_scopes_the_hierarchy_knows() -> None:
    verifier = StaticVerifier({"admin": principal("admin", "notes:admin", "elsewhere")})
    mcp = tools_server(verifier, scope_hierarchy={"notes:admin": ["notes:read", "notes:write"]})

    @mcp.tool(auth=require_scopes("notes:export"))
    def export() -> str:
        return "all"

    with served(mcp, stateless_http=True, json_response=True) as url:
        call = rpc("tools/call", {"name": "export", "arguments": {}})
        response = httpx2.post(url, json=call, headers={**MCP_HEADERS, "Authorization": "Bearer admin"})
    assert response.status_code == 403
    assert scope_of(response) == "notes:admin notes:export"
    assert response.json()["error"]["data"] == {"scope": "notes:admin notes:export"}


def test_the_sdk_side_refusal_names_the_known_granted_scopes_too() -> None:
    """Behind protect() without an MCP path only the SDK-side check sees the call."""
    from bastion.testing import serve

    mcp = MCPServer("Notes")  # no verifier of its own: protect() authenticates

    @mcp.tool(auth=require_scopes("notes:read"))
    def list_notes() -> list[str]:
        return ["first"]

    @mcp.tool(auth=require_scopes("notes:write"))
    def add_note(text: str) -> str:
        return f"saved {text}"

    inner = mcp.streamable_http_app(stateless_http=True, json_response=True)
    app = protect(inner, auth=StaticVerifier(TOKENS), registry=mcp.registry)
    with serve(app) as base:
        call = rpc("tools/call", {"name": "add_note", "arguments": {"text": "x"}})
        response = httpx2.post(base + "/mcp", json=call, headers={**MCP_HEADERS, "Authorization": "Bearer reader"})
    error = response.json()["error"]
    assert (error["code"], error["message"]) == (-32003, "Insufficient scope")
    assert error["data"] == {"scope": "notes:read notes:write"}
