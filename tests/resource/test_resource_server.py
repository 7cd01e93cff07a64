"""The MCP endpoint as an RFC 6750 / RFC 9728 protected resource, over real HTTP."""

from __future__ import annotations

import httpx2
import pytest
from mcp.server.auth.middleware.auth_context import get_access_token as sdk_get_access_token

from bastion import JWTVerifier, MCPServer, get_access_token
from bastion.testing import KeyPair, serve

from support.notes import MCP_HEADERS, TOKENS, StaticVerifier, notes_server, rpc, served


def auth(token: str) -> dict[str, str]:
    return {**MCP_HEADERS, "Authorization": f"Bearer {token}"}


def test_missing_token_is_401_with_resource_metadata_and_no_error(stateless_url: str) -> None:
    response = httpx2.post(stateless_url, json=rpc("tools/list"), headers=MCP_HEADERS)
    assert response.status_code == 401
    bearer, dpop = response.headers.get_list("www-authenticate")
    metadata = stateless_url.replace("/mcp", "/.well-known/oauth-protected-resource/mcp")
    # Nothing is required server-wide: the scopes to request are those the policies use.
    assert bearer == f'Bearer scope="notes:read notes:write", resource_metadata="{metadata}"'
    # The same for a client that uses DPoP (RFC 9449 section 7.1), with the proof algorithms accepted.
    assert dpop.startswith(f'DPoP scope="notes:read notes:write", resource_metadata="{metadata}", algs="ES256 ')


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "BeArEr"])
def test_scheme_name_is_case_insensitive(stateless_url: str, scheme: str) -> None:
    response = httpx2.post(
        stateless_url, json=rpc("tools/list"), headers={**MCP_HEADERS, "Authorization": f"{scheme} reader"}
    )
    assert response.status_code == 200


@pytest.mark.parametrize(
    "header", ["Bearer unknown", "Bearer", "Bearer a b", "Bearer " + "x" * 20_000, "Bearer \u00e9t\u00e9"]
)
def test_refused_or_malformed_token_is_401_invalid_token(stateless_url: str, header: str) -> None:
    response = httpx2.post(
        stateless_url,
        json=rpc("tools/list"),
        headers=[*((k.encode(), v.encode()) for k, v in MCP_HEADERS.items()), (b"Authorization", header.encode())],
    )
    assert response.status_code == 401
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith('Bearer error="invalid_token"')
    assert "resource_metadata=" in challenge
    assert "unknown" not in response.text
    assert "xxxx" not in response.text


def test_other_scheme_is_treated_as_no_token(stateless_url: str) -> None:
    response = httpx2.post(
        stateless_url, json=rpc("tools/list"), headers={**MCP_HEADERS, "Authorization": "Basic dXNlcjpwYXNz"}
    )
    assert response.status_code == 401
    assert "error=" not in response.headers["www-authenticate"]


def test_several_authorization_headers_are_refused(stateless_url: str) -> None:
    headers = [(k, v) for k, v in MCP_HEADERS.items()]
    headers += [("Authorization", "Bearer reader"), ("Authorization", "Bearer writer")]
    response = httpx2.post(stateless_url, json=rpc("tools/list"), headers=headers)
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


def test_token_in_query_string_is_refused(stateless_url: str) -> None:
    response = httpx2.post(stateless_url + "?access_token=reader", json=rpc("tools/list"), headers=MCP_HEADERS)
    assert response.status_code == 400
    assert 'error="invalid_request"' in response.headers["www-authenticate"]


def test_token_in_form_body_is_refused(stateless_url: str) -> None:
    response = httpx2.post(
        stateless_url,
        content=b"access_token=reader",
        headers={"Content-Type": "application/x-www-form-urlencoded", "Authorization": "Bearer reader"},
    )
    assert response.status_code == 400
    assert 'error="invalid_request"' in response.headers["www-authenticate"]


def test_protected_resource_metadata_at_path_and_root(stateless_url: str) -> None:
    base = stateless_url.removesuffix("/mcp")
    for path in ("/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-protected-resource"):
        response = httpx2.get(base + path)
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == "*"
        doc = response.json()
        assert doc["resource"] == stateless_url
        assert doc["authorization_servers"] == ["https://issuer.example"]
        assert doc["bearer_methods_supported"] == ["header"]
        assert doc["scopes_supported"] == ["notes:read", "notes:write"]
    assert httpx2.options(base + "/.well-known/oauth-protected-resource/mcp").status_code == 204
    assert httpx2.post(base + "/.well-known/oauth-protected-resource/mcp").status_code == 405


def test_configured_resource_url_is_canonical_and_used_everywhere() -> None:
    mcp = notes_server(resource_url="HTTPS://Notes.Example.com/mcp/", resource_name="My notes")
    with served(mcp, stateless_http=True, json_response=True) as url:
        base = url.removesuffix("/mcp")
        doc = httpx2.get(base + "/.well-known/oauth-protected-resource/mcp").json()
        assert doc["resource"] == "https://notes.example.com/mcp"
        assert doc["resource_name"] == "My notes"
        response = httpx2.post(url, json=rpc("tools/list"), headers=MCP_HEADERS)
        assert (
            'resource_metadata="https://notes.example.com/.well-known/oauth-protected-resource/mcp"'
            in response.headers["www-authenticate"]
        )


def test_metadata_overrides() -> None:
    mcp = notes_server(authorization_servers=["https://as.example"], scopes_supported=["a", "offline_access", "b*"])
    with served(mcp, stateless_http=True, json_response=True) as url:
        doc = httpx2.get(url.replace("/mcp", "/.well-known/oauth-protected-resource/mcp")).json()
        assert doc["authorization_servers"] == ["https://as.example"]
        assert doc["scopes_supported"] == ["a"]


def test_step_up_is_a_real_403_naming_every_scope_needed(stateless_url: str) -> None:
    call = rpc("tools/call", {"name": "add_note", "arguments": {"text": "hi"}}, rpc_id=7)
    response = httpx2.post(stateless_url, json=call, headers=auth("reader"))
    assert response.status_code == 403
    challenge = response.headers["www-authenticate"]
    assert 'error="insufficient_scope"' in challenge
    # What the tool needs, and what the token already has: a client that replaces its
    # scopes with these keeps notes:read.
    assert 'scope="notes:read notes:write"' in challenge
    assert "resource_metadata=" in challenge
    body = response.json()
    assert body["id"] == 7
    assert body["error"]["data"] == {"scope": "notes:read notes:write"}


def test_forbidden_by_role_is_a_jsonrpc_error_without_step_up(stateless_url: str) -> None:
    call = rpc("tools/call", {"name": "admin_stats", "arguments": {}}, rpc_id=3)
    response = httpx2.post(stateless_url, json=call, headers=auth("writer"))
    assert response.status_code == 403
    assert "www-authenticate" not in response.headers
    assert response.json() == {"jsonrpc": "2.0", "id": 3, "error": {"code": -32003, "message": "Forbidden"}}


def test_allowed_call_reaches_the_tool_with_the_token(stateless_url: str) -> None:
    call = rpc("tools/call", {"name": "add_note", "arguments": {"text": "hi"}})
    response = httpx2.post(stateless_url, json=call, headers=auth("writer"))
    assert response.status_code == 200
    assert response.json()["result"]["content"][0]["text"] == "saved hi for bob"


def test_scope_hierarchy_counts(stateless_url: str) -> None:
    call = rpc("tools/call", {"name": "add_note", "arguments": {"text": "hi"}})
    response = httpx2.post(stateless_url, json=call, headers=auth("admin"))
    assert response.status_code == 200
    assert response.json()["result"]["content"][0]["text"] == "saved hi for root"


@pytest.mark.parametrize(
    ("token", "tools"),
    [
        ("nothing", ["whoami", "list_notes", "add_note"]),
        ("reader", ["whoami", "list_notes", "add_note"]),
        ("writer", ["whoami", "list_notes", "add_note"]),
        ("admin", ["whoami", "list_notes", "add_note", "admin_stats"]),
    ],
)
def test_tools_list_shows_what_the_caller_may_call_or_step_up_to(
    stateless_url: str, token: str, tools: list[str]
) -> None:
    # What more scope would unlock is listed (a host calls only what it has listed, and the
    # call is what starts the step-up); what a role refuses is not.
    response = httpx2.post(stateless_url, json=rpc("tools/list", {}), headers=auth(token))
    assert [t["name"] for t in response.json()["result"]["tools"]] == tools


@pytest.mark.parametrize(
    ("token", "tools"),
    [
        ("nothing", ["whoami"]),
        ("reader", ["whoami", "list_notes"]),
        ("writer", ["whoami", "list_notes", "add_note"]),
        ("admin", ["whoami", "list_notes", "add_note", "admin_stats"]),
    ],
)
def test_strict_tools_list_shows_only_what_the_caller_may_call(token: str, tools: list[str]) -> None:
    with served(notes_server(list_visibility="strict"), stateless_http=True, json_response=True) as url:
        response = httpx2.post(url, json=rpc("tools/list", {}), headers=auth(token))
    assert [t["name"] for t in response.json()["result"]["tools"]] == tools


@pytest.mark.parametrize("visibility", ["discoverable", "strict"])
def test_resources_templates_and_prompts_are_filtered(visibility: str) -> None:
    strict = visibility == "strict"
    with served(notes_server(list_visibility=visibility), stateless_http=True, json_response=True) as url:

        def listed(method: str, field: str, key: str, token: str) -> list[str]:
            result = httpx2.post(url, json=rpc(method, {}), headers=auth(token)).json()["result"]
            return [item[key] for item in result[field]]

        assert listed("resources/list", "resources", "uri", "nothing") == ([] if strict else ["notes://public"])
        assert listed("resources/list", "resources", "uri", "reader") == ["notes://public"]
        # A role is never a step-up: hidden in both modes.
        assert listed("resources/templates/list", "resourceTemplates", "uriTemplate", "writer") == []
        assert listed("resources/templates/list", "resourceTemplates", "uriTemplate", "admin") == [
            "notes://private/{name}"
        ]
        assert listed("prompts/list", "prompts", "name", "reader") == ([] if strict else ["compose"])
        assert listed("prompts/list", "prompts", "name", "writer") == ["compose"]


def test_list_visibility_is_discoverable_or_strict() -> None:
    from bastion import ConfigurationError

    with pytest.raises(ConfigurationError, match="list_visibility"):
        notes_server(list_visibility="hidden")


def test_resource_read_and_prompt_get_are_enforced(stateless_url: str) -> None:
    read = rpc("resources/read", {"uri": "notes://private/x"})
    assert httpx2.post(stateless_url, json=read, headers=auth("writer")).status_code == 403
    response = httpx2.post(stateless_url, json=read, headers=auth("admin"))
    assert response.json()["result"]["contents"][0]["text"] == "private x"
    get = rpc("prompts/get", {"name": "compose", "arguments": {"topic": "t"}})
    response = httpx2.post(stateless_url, json=get, headers=auth("reader"))
    assert response.status_code == 403
    assert 'scope="notes:read notes:write"' in response.headers["www-authenticate"]


def test_batch_with_a_forbidden_call_is_refused(stateless_url: str) -> None:
    batch = [rpc("tools/list", {}, 1), rpc("tools/call", {"name": "add_note", "arguments": {"text": "x"}}, 2)]
    response = httpx2.post(stateless_url, json=batch, headers=auth("reader"))
    assert response.status_code == 403


def test_body_over_the_limit_is_413() -> None:
    with served(notes_server(), stateless_http=True, json_response=True, max_request_body_size=1024) as url:
        call = rpc("tools/call", {"name": "add_note", "arguments": {"text": "x" * 4096}})
        assert httpx2.post(url, json=call, headers=auth("writer")).status_code == 413
        assert httpx2.post(url, json=rpc("tools/list", {}), headers=auth("writer")).status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[]",
        b"[1, 2]",
        b'"str"',
        b"null",
        b'{"method": ["tools/call"]}',
        b"[" * 100_000 + b"]" * 100_000,
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":{"a":1}}}',
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":"x"}',
        b"\xff\xfe",
    ],
)
def test_garbage_bodies_get_a_4xx_or_a_jsonrpc_error_never_5xx(stateless_url: str, body: bytes) -> None:
    response = httpx2.post(stateless_url, content=body, headers=auth("reader"))
    assert response.status_code < 500
    # and the server keeps serving
    assert httpx2.post(stateless_url, json=rpc("tools/list", {}), headers=auth("reader")).status_code == 200


def test_a_token_seen_before_is_not_checked_again() -> None:
    verifier = StaticVerifier(TOKENS)
    with served(notes_server(auth=verifier), stateless_http=True, json_response=True) as url:
        for _ in range(5):
            assert httpx2.post(url, json=rpc("tools/list", {}), headers=auth("reader")).status_code == 200
    assert verifier.checks == 1


async def test_sdk_client_end_to_end_in_session_mode() -> None:
    from support.notes import mcp_client

    with served(notes_server()) as url:
        async with mcp_client(url, "writer") as client:
            names = [t.name for t in (await client.list_tools()).tools]
            assert names == ["whoami", "list_notes", "add_note"]
            result = await client.call_tool("whoami", {})
            assert result.content[0].text == "bob notes:read notes:write"  # type: ignore[union-attr]


def test_session_id_alone_never_authenticates() -> None:
    init = rpc(
        "initialize",
        {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
    )
    with served(notes_server(), json_response=True) as url:
        opened = httpx2.post(url, json=init, headers={**auth("reader"), "MCP-Protocol-Version": "2025-06-18"})
        assert opened.status_code == 200
        session = opened.headers["mcp-session-id"]
        headers = {**MCP_HEADERS, "Mcp-Session-Id": session, "MCP-Protocol-Version": "2025-06-18"}
        assert httpx2.post(url, json=rpc("tools/list", {}, 2), headers=headers).status_code == 401
        assert httpx2.get(url, headers=headers).status_code == 401
        assert httpx2.delete(url, headers=headers).status_code == 401


def test_get_access_token_is_the_sdks_too() -> None:
    mcp = MCPServer("same", auth=StaticVerifier(TOKENS))

    @mcp.tool()
    def same() -> bool:
        return get_access_token() is sdk_get_access_token()

    with served(mcp, stateless_http=True, json_response=True) as url:
        call = rpc("tools/call", {"name": "same", "arguments": {}})
        response = httpx2.post(url, json=call, headers=auth("reader"))
        assert response.json()["result"]["structuredContent"] == {"result": True}


def test_default_policy_applies_to_everything_registered_without_auth() -> None:
    from bastion import require_scopes

    mcp = notes_server(default_policy=require_scopes("notes:read"))
    with served(mcp, stateless_http=True, json_response=True) as url:
        response = httpx2.post(url, json=rpc("tools/list", {}), headers=auth("nothing"))
        # Listed, since notes:read would unlock them; the role-gated tool is not.
        names = [t["name"] for t in response.json()["result"]["tools"]]
        assert names == ["whoami", "list_notes", "add_note"]
        call = rpc("tools/call", {"name": "whoami", "arguments": {}})
        response = httpx2.post(url, json=call, headers=auth("nothing"))
        assert response.status_code == 403
        assert 'scope="notes:read"' in response.headers["www-authenticate"]
        # and the 401 challenge names the scope every call needs (not every scope of the tools)
        response = httpx2.post(url, json=rpc("tools/list", {}), headers=MCP_HEADERS)
        assert 'scope="notes:read"' in response.headers["www-authenticate"]


def test_sdk_transport_checks_stay_on_behind_auth(stateless_url: str) -> None:
    foreign_origin = httpx2.post(
        stateless_url, json=rpc("tools/list", {}), headers={**auth("reader"), "Origin": "https://evil.example"}
    )
    assert foreign_origin.status_code == 403
    bad_version = httpx2.post(
        stateless_url, json=rpc("tools/list", {}), headers={**auth("reader"), "MCP-Protocol-Version": "1999-01-01"}
    )
    assert bad_version.status_code == 400


def test_without_resource_url_the_first_request_pins_the_resource_and_the_audience() -> None:
    from bastion import JWTVerifier
    from bastion.testing import KeyPair

    keys = KeyPair.generate("ES256")
    verifier = JWTVerifier(public_key=keys.public_key, issuer="https://issuer.example")
    mcp = MCPServer("dev", auth=verifier)

    @mcp.tool()
    def whoami() -> str:
        return get_access_token().subject or ""

    with served(mcp, stateless_http=True, json_response=True) as url:
        first = httpx2.post(url, json=rpc("tools/list", {}), headers=MCP_HEADERS)
        assert (
            f'resource_metadata="{url.replace("/mcp", "/.well-known/oauth-protected-resource/mcp")}"'
            in (first.headers["www-authenticate"])
        )
        mine = keys.create_token(subject="alice", issuer="https://issuer.example", audience=url)
        other = keys.create_token(
            subject="alice", issuer="https://issuer.example", audience="https://other.example/mcp"
        )
        call = rpc("tools/call", {"name": "whoami", "arguments": {}})
        assert httpx2.post(url, json=call, headers=auth(mine)).json()["result"]["structuredContent"] == {
            "result": "alice"
        }
        refused = httpx2.post(url, json=call, headers=auth(other))
        assert refused.status_code == 401
        # another Host header does not move the pinned resource
        moved = httpx2.get(
            url.replace("/mcp", "/.well-known/oauth-protected-resource/mcp"), headers={"Host": "localhost:1"}
        )
        assert moved.json()["resource"] == url


async def test_with_a_derived_resource_url_even_the_first_token_must_name_it() -> None:
    keys = KeyPair.generate("ES256")
    mcp = MCPServer("Notes", auth=JWTVerifier(public_key=keys.public_key, issuer="https://issuer.example"))

    @mcp.tool()
    def hello() -> str:
        return "hi"

    with serve(mcp.streamable_http_app(stateless_http=True, json_response=True)) as base:
        foreign = keys.create_token(audience="https://other.example/mcp")
        first = httpx2.post(
            base + "/mcp", json=rpc("tools/list"), headers={**MCP_HEADERS, "Authorization": f"Bearer {foreign}"}
        )
        assert first.status_code == 401
        assert 'error="invalid_token"' in first.headers["www-authenticate"]
        ours = keys.create_token(audience=base + "/mcp")
        second = httpx2.post(
            base + "/mcp", json=rpc("tools/list"), headers={**MCP_HEADERS, "Authorization": f"Bearer {ours}"}
        )
        assert second.status_code == 200


def test_only_ip_literals_and_localhost_are_loopback() -> None:
    from bastion._core.net import is_loopback_host

    assert is_loopback_host("127.0.0.1")
    assert is_loopback_host("[::1]")
    assert is_loopback_host("localhost")
    assert not is_loopback_host("127.evil.example")
    assert not is_loopback_host("10.0.0.1")
