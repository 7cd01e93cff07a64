"""The bastion command: the demo server really serves, and its printed tokens work."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from collections.abc import Iterator

import httpx2
import pytest
from mcp.shared.exceptions import MCPError

from bastion._cli import main

from conftest import MCP_HEADERS, mcp_client, rpc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def demo() -> Iterator[tuple[str, str, str]]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "bastion._cli", "demo", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    lines: list[str] = []
    for line in process.stdout:  # the banner is printed once the server listens
        lines.append(line)
        if "Ctrl-C stops it" in line:
            break
    banner = "".join(lines)
    try:
        url = re.search(r"MCP endpoint\s+(\S+)", banner)
        tokens = re.findall(r"^\s+(eyJ\S+)$", banner, re.MULTILINE)
        assert url is not None, banner
        assert len(tokens) == 2, banner
        assert f"curl -s {url.group(1)} -H 'Authorization: Bearer {tokens[0]}'" in banner
        yield url.group(1), tokens[0], tokens[1]
    finally:
        process.terminate()
        process.wait(timeout=20)
        process.stdout.close()


async def test_demo_tokens_call_tools_and_bob_is_stepped_up(demo: tuple[str, str, str]) -> None:
    url, alice, bob = demo
    assert url == url.rstrip("/")
    async with mcp_client(url, alice) as client:
        assert {t.name for t in (await client.list_tools()).tools} == {
            "whoami", "list_notes", "add_note", "admin_stats"
        }  # fmt: skip
        added = await client.call_tool("add_note", {"text": "hello"})
        assert added.content[0].text == "saved note 1 for alice"  # type: ignore[union-attr]
        assert (await client.call_tool("list_notes", {})).structured_content == {"result": ["hello"]}
    async with mcp_client(url, bob) as client:
        assert {t.name for t in (await client.list_tools()).tools} == {"whoami", "list_notes"}
        with pytest.raises(MCPError, match="Insufficient scope"):
            await client.call_tool("add_note", {"text": "x"})
    response = httpx2.post(url, json=rpc("tools/call", {"name": "add_note", "arguments": {"text": "x"}}),
                           headers={**MCP_HEADERS, "Authorization": f"Bearer {bob}"})  # fmt: skip
    assert response.status_code == 403
    assert 'scope="notes:write"' in response.headers["www-authenticate"]


def test_demo_refuses_a_public_bind_without_a_public_url(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--host", "0.0.0.0"]) == 2
    assert "--public-url" in capsys.readouterr().err


def test_serve_refuses_what_is_not_a_server(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "json:loads"]) == 2
    assert "not a bastion.MCPServer" in capsys.readouterr().err
    assert main(["serve", "no_such_module_here:mcp"]) == 2
