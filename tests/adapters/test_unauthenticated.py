"""An MCPServer with no authentication says so loudly, and serves only loopback unless told otherwise."""

from __future__ import annotations

import logging

import httpx2
import pytest

from bastion import ConfigurationError, MCPServer
from bastion._config.settings import server_settings
from bastion.testing import serve

from support.notes import MCP_HEADERS, rpc

REFUSED = (
    "MCPServer 'Open notes' has no authentication and would serve every tool to anyone who can reach '0.0.0.0': "
    "pass auth= (or set BASTION_AUTH), or allow_unauthenticated=True (BASTION_ALLOW_UNAUTHENTICATED=1) when "
    "something in front of it authenticates"
)


@pytest.fixture(autouse=True)
def no_bastion_auth(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BASTION_AUTH", raising=False)
    monkeypatch.delenv("BASTION_ALLOW_UNAUTHENTICATED", raising=False)


def open_notes(**options: object) -> MCPServer:
    mcp = MCPServer("Open notes", **options)  # type: ignore[arg-type]

    @mcp.tool()
    def read_notes() -> str:
        return "every note"

    return mcp


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The warnings but those naming unknown variables (the test run's own may be set)."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "bastion" and r.levelno == logging.WARNING and not r.getMessage().startswith("unknown variable")
    ]


async def test_on_loopback_it_serves_with_a_loud_warning(caplog: pytest.LogCaptureFixture) -> None:
    mcp = open_notes()
    with caplog.at_level(logging.WARNING, logger="bastion"):
        app = mcp.streamable_http_app(host="127.0.0.1", stateless_http=True, json_response=True)
    assert warnings(caplog) == [
        "MCPServer 'Open notes' has NO AUTHENTICATION: every tool, resource and prompt is open to anyone who "
        "can reach it. Pass auth= or set BASTION_AUTH; only loopback hosts are served this way"
    ]
    with serve(app) as base:
        async with httpx2.AsyncClient() as http:
            call = rpc("tools/call", {"name": "read_notes", "arguments": {}})
            answer = await http.post(f"{base}/mcp", json=call, headers=MCP_HEADERS)
    assert answer.json()["result"]["content"][0]["text"] == "every note"


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_every_loopback_host_is_served(host: str) -> None:
    open_notes().streamable_http_app(host=host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "notes.example.com", "127.evil.example"])
def test_a_host_beyond_loopback_is_refused_in_one_line(host: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        open_notes().streamable_http_app(host=host)
    assert str(caught.value) == REFUSED.replace("'0.0.0.0'", repr(host))


def test_run_refuses_before_binding() -> None:
    # Building the app comes first in run(): nothing listens, the error is the first thing said.
    with pytest.raises(ConfigurationError) as caught:
        open_notes().run("http", host="0.0.0.0", port=1)
    assert str(caught.value) == REFUSED


def test_the_sse_transport_is_never_protected_so_it_is_refused_too() -> None:
    with pytest.raises(ConfigurationError, match=r"^the SSE transport of MCPServer 'Open notes' has no auth"):
        open_notes().sse_app(host="0.0.0.0")
    open_notes().sse_app(host="127.0.0.1")


def test_opting_in_serves_any_host_and_still_says_so(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="bastion"):
        open_notes(allow_unauthenticated=True).streamable_http_app(host="0.0.0.0")
    assert warnings(caplog) == [
        "MCPServer 'Open notes' has no authentication of its own (allow_unauthenticated): unless something in "
        "front of it authenticates, every tool, resource and prompt is open to anyone who can reach it"
    ]


@pytest.mark.parametrize("value", ["1", "true", "YES"])
def test_opting_in_through_the_environment(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BASTION_ALLOW_UNAUTHENTICATED", value)
    assert server_settings().allow_unauthenticated
    open_notes().streamable_http_app(host="0.0.0.0")
    # The argument wins over the variable.
    with pytest.raises(ConfigurationError):
        open_notes(allow_unauthenticated=False).streamable_http_app(host="0.0.0.0")


def test_a_malformed_opt_in_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BASTION_ALLOW_UNAUTHENTICATED", "perhaps")
    with pytest.raises(ConfigurationError, match=r"^BASTION_ALLOW_UNAUTHENTICATED: "):
        open_notes()


def test_a_server_with_a_verifier_is_neither_warned_about_nor_refused(caplog: pytest.LogCaptureFixture) -> None:
    from bastion import APIKeyVerifier

    with caplog.at_level(logging.WARNING, logger="bastion"):
        mcp = open_notes(auth=APIKeyVerifier({"sk-key": "ci"}), resource_url="https://notes.example/mcp")
        mcp.streamable_http_app(host="0.0.0.0")
    assert warnings(caplog) == []
