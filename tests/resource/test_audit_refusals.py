"""Refused calls are audit events (``call.refused``): what, why, the scopes needed; allowed calls are none."""

from __future__ import annotations

from typing import Any

import httpx2
import pytest
from mcp.shared.exceptions import MCPError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from bastion import Audit, AuditEvent, MCPServer, protect, require_scopes
from bastion.authserver import AuthorizationServer
from bastion.storage import MemoryStore
from bastion.testing import serve

from support.notes import MCP_HEADERS, TOKENS, StaticVerifier, mcp_client, notes_server, rpc, served


def collect(audit: Audit) -> list[AuditEvent]:
    events: list[AuditEvent] = []
    audit.add_sink(events.append)
    return events


def call(url: str, token: str, method: str, params: dict[str, Any], request_id: str) -> httpx2.Response:
    headers = {**MCP_HEADERS, "Authorization": f"Bearer {token}", "X-Request-Id": request_id}
    return httpx2.post(url, json=rpc(method, params), headers=headers)


def refused(kind: str, name: str, reason: str, scopes: list[str] | None = None) -> dict[str, Any]:
    facts: dict[str, Any] = {"kind": kind, "tool": name, "reason": reason}
    if scopes is not None:
        facts["scopes"] = scopes
    return facts


def test_each_refusal_at_the_mcp_endpoint_is_one_event_and_an_allowed_call_none() -> None:
    mcp = notes_server()
    events = collect(mcp.audit)
    with served(mcp, stateless_http=True, json_response=True) as url:
        answers = [
            call(url, "reader", "tools/call", {"name": "add_note", "arguments": {"text": "x"}}, "r-1"),
            call(url, "reader", "tools/call", {"name": "admin_stats", "arguments": {}}, "r-2"),
            call(url, "writer", "resources/read", {"uri": "notes://private/plans"}, "r-3"),
            call(url, "reader", "prompts/get", {"name": "compose", "arguments": {"topic": "t"}}, "r-4"),
        ]
        assert [a.status_code for a in answers] == [403, 403, 403, 403]
        for _ in range(2):  # the second with a token already verified: the hot path
            allowed = call(url, "reader", "tools/call", {"name": "list_notes", "arguments": {}}, "r-5")
            assert allowed.status_code == 200
    assert {(e.name, e.outcome, e.client_id, e.grant_id) for e in events} == {
        ("call.refused", "refused", "client-1", None)
    }
    assert [(e.subject, dict(e.facts)) for e in events] == [
        ("alice", refused("tool", "add_note", "insufficient scope", ["notes:write"])),
        ("alice", refused("tool", "admin_stats", "forbidden")),
        ("bob", refused("resource", "notes://private/plans", "forbidden")),
        ("alice", refused("prompt", "compose", "insufficient scope", ["notes:write"])),
    ]
    assert [e.request_id for e in events] == ["r-1", "r-2", "r-3", "r-4"]
    assert {e.address for e in events} == {"127.0.0.1"}
    assert all("reader" not in e.to_json() and "writer" not in e.to_json() for e in events)  # the tokens


async def test_a_call_refused_inside_the_sdk_is_an_event_too() -> None:
    # protect() checks the token only; the inner server's policies refuse in the SDK's pipeline.
    inner = notes_server(auth=None)
    events = collect(inner.audit)
    with serve(protect(inner.streamable_http_app(), auth=StaticVerifier(TOKENS), mcp_path="/mcp")) as base:
        async with mcp_client(base + "/mcp", "reader") as client:
            await client.list_tools()
            with pytest.raises(MCPError):
                await client.call_tool("add_note", {"text": "x"})
    [event] = events
    assert (event.name, event.subject, event.client_id) == ("call.refused", "alice", "client-1")
    assert dict(event.facts) == refused("tool", "add_note", "insufficient scope", ["notes:write"])
    assert event.address == "127.0.0.1"


def test_a_refused_custom_route_is_an_event_of_kind_route() -> None:
    mcp = notes_server()

    @mcp.custom_route("/export", methods=["GET"], auth=require_scopes("notes:admin"))
    async def export(request: Request) -> Response:
        return JSONResponse({})

    events = collect(mcp.audit)
    with served(mcp, stateless_http=True, json_response=True) as url:
        answer = httpx2.get(url.removesuffix("/mcp") + "/export", headers={"Authorization": "Bearer reader"})
    assert answer.status_code == 403
    [event] = events
    assert dict(event.facts) == refused("route", "/export", "insufficient scope", ["notes:admin"])
    assert event.address == "127.0.0.1"


def test_an_mcp_server_shares_its_authorization_servers_audit() -> None:
    server = AuthorizationServer("http://127.0.0.1:8000", store=MemoryStore())
    mcp = MCPServer("Notes", auth=server)
    assert mcp.audit is server.audit
    replaced = Audit()
    mcp.audit = replaced
    assert server.audit is replaced
    assert server.cimd.audit is replaced
    mine = Audit()
    server.audit = mine  # replaced on the server after the MCPServer was made, before serving
    mcp.streamable_http_app()
    assert mcp.guard is not None
    assert mcp.guard.audit is mine
    assert mcp.audit is mine
