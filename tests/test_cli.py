"""The bastion command: the demo server really serves, and its printed tokens work."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from collections.abc import Iterator

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from bastion._cli import main
from bastion.testing import oauth_client

from conftest import MCP_HEADERS, rpc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    port = free_port()
    db = tmp_path_factory.mktemp("demo") / "demo.db"
    process = subprocess.Popen(
        [sys.executable, "-m", "bastion._cli", "demo", "--port", str(port), "--store", f"sqlite://{db}",
         "--auto-approve", "alice"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    assert process.stdout is not None
    lines: list[str] = []
    for line in process.stdout:  # the banner is printed once the server listens
        lines.append(line)
        if "Ctrl-C stops it" in line:
            break
    banner = "".join(lines)
    try:
        url = re.search(r"MCP endpoint\s+(\S+)", banner)
        assert url is not None, banner
        assert re.search(r"^\s+alice\s+\S{12,}\s+role admin", banner, re.MULTILINE), banner
        assert re.search(r"^\s+bob\s+\S{12,}", banner, re.MULTILINE), banner
        assert str(db) in banner
        yield url.group(1), banner
    finally:
        process.terminate()
        process.wait(timeout=20)
        process.stdout.close()


async def test_demo_serves_the_whole_oauth_flow_to_the_sdk_client(demo: tuple[str, str]) -> None:
    url, banner = demo
    assert url == url.rstrip("/")
    assert f"claude mcp add --transport http notes {url}" in banner
    provider = oauth_client(url)
    async with (
        httpx2.AsyncClient(auth=provider) as http,
        Client(streamable_http_client(url, http_client=http)) as client,
    ):
        me = (await client.call_tool("whoami", {})).structured_content
        assert me is not None
        assert me["name"] == "Alice"
        assert set(me["scopes"]) == {"notes:read", "notes:write", "offline_access"}
        assert {t.name for t in (await client.list_tools()).tools} == {
            "whoami", "list_notes", "add_note", "admin_stats"
        }  # fmt: skip
        added = await client.call_tool("add_note", {"text": "hello"})
        assert added.content[0].text == "saved note 1 for alice"  # type: ignore[union-attr]


async def test_demo_challenges_a_request_without_a_token(demo: tuple[str, str]) -> None:
    url, _ = demo
    response = httpx2.post(url, json=rpc("tools/list"), headers=MCP_HEADERS)
    assert response.status_code == 401
    assert "resource_metadata=" in response.headers["www-authenticate"]


def test_demo_refuses_a_public_bind_without_a_public_url(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--host", "0.0.0.0"]) == 2
    assert "--public-url" in capsys.readouterr().err


def test_demo_refuses_auto_approve_beyond_loopback(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["demo", "--host", "0.0.0.0", "--public-url", "https://notes.example.com", "--auto-approve", "alice"]
    assert main(argv) == 2
    assert "loopback" in capsys.readouterr().err
    argv = ["demo", "--public-url", "https://notes.example.com", "--auto-approve", "bob", "--store", "memory://"]
    assert main(argv) == 2
    assert "loopback" in capsys.readouterr().err


def test_demo_refuses_half_a_tls_configuration_and_unknown_stores(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--ssl-certfile", "cert.pem"]) == 2
    assert "--ssl-keyfile" in capsys.readouterr().err
    assert main(["demo", "--store", "postgres://db"]) == 2
    assert "store" in capsys.readouterr().err


def test_serve_refuses_what_is_not_a_server(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "json:loads"]) == 2
    assert "not a bastion.MCPServer" in capsys.readouterr().err
    assert main(["serve", "no_such_module_here:mcp"]) == 2
