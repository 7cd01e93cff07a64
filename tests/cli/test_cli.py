"""The bastion command: the demo server really serves and its printed passwords work; BASTION_AUTH is honoured."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from bastion._cli.main import main
from bastion.storage import open_store
from bastion.testing import MemoryTokenStorage, oauth_client

from support.notes import MCP_HEADERS, rpc
from support.oidc import OIDCProvider, skip_without_node
from support.proxy import OIDCBrowser, sdk_client


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def demo_process(*arguments: str) -> Iterator[str]:
    """``bastion demo`` with ``arguments`` in a process of its own: its banner, once it listens."""
    process = subprocess.Popen(
        [sys.executable, "-m", "bastion._cli.main", "demo", *arguments],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    lines: list[str] = []
    try:
        for line in process.stdout:  # the banner is printed once the server listens
            lines.append(line)
            if "Ctrl-C stops it" in line:
                break
        yield "".join(lines)
    finally:
        process.terminate()
        process.wait(timeout=20)
        process.stdout.close()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    db = tmp_path_factory.mktemp("demo") / "demo.db"
    with demo_process("--port", str(free_port()), "--store", f"sqlite:///{db}", "--auto-approve", "alice") as banner:
        url = re.search(r"MCP endpoint\s+(\S+)", banner)
        assert url is not None, banner
        assert re.search(r"^\s+alice\s+\S{12,}\s+role admin", banner, re.MULTILINE), banner
        assert re.search(r"^\s+bob\s+\S{12,}", banner, re.MULTILINE), banner
        assert str(db) in banner
        yield url.group(1), banner


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


async def test_demo_keeps_its_state_in_redis(redis_url: str) -> None:
    port = free_port()
    with demo_process("--port", str(port), "--store", redis_url, "--auto-approve", "alice") as banner:
        prefix = redis_url.split("prefix=")[1]
        assert f"prefix={prefix!r}" in banner, banner
        endpoint = f"http://127.0.0.1:{port}/mcp"
        async with (
            httpx2.AsyncClient(auth=oauth_client(endpoint)) as http,
            Client(streamable_http_client(endpoint, http_client=http)) as client,
        ):
            me = (await client.call_tool("whoami", {})).structured_content
            assert me is not None
            assert me["name"] == "Alice"
        store = open_store(redis_url)
        try:
            # The keys that signed, and alice's grant, are in Redis for every replica to read.
            assert await store.get("signing-key", "ring") is not None
            assert await store.scan("user-client", "alice") != []
        finally:
            await store.aclose()


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


# -- BASTION_AUTH: an OAuth proxy configured by the environment alone ------------------------

NOTES_APP = """
from bastion import MCPServer, get_access_token

mcp = MCPServer("Env notes")


@mcp.tool()
def whoami() -> str:
    return get_access_token().subject or ""
"""


@contextmanager
def running(argv: list[str], env: dict[str, str], ready: str, cwd: Path | None = None) -> Iterator[list[str]]:
    """``bastion <argv>`` in a child process, once a line of its output contains ``ready``; yields its output."""
    process = subprocess.Popen(
        [sys.executable, "-m", "bastion._cli.main", *argv],
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    lines: list[str] = []
    for line in process.stdout:
        lines.append(line)
        if ready in line:
            break
    # Keep reading, so the child never blocks on a full pipe.
    reader = threading.Thread(target=lambda: lines.extend(process.stdout or ()), daemon=True)
    reader.start()
    try:
        assert process.poll() is None, "".join(lines)
        yield lines
    finally:
        process.terminate()
        process.wait(timeout=20)
        reader.join(timeout=10)
        process.stdout.close()


def oidc_environment(provider: OIDCProvider, base: str, db: Path) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.upper().startswith("BASTION_")}
    environ.update(
        BASTION_AUTH="oidc",
        BASTION_BASE_URL=base,
        BASTION_STORE=f"sqlite:///{db}",
        BASTION_OIDC_CONFIG_URL=provider.config_url,
        BASTION_OIDC_CLIENT_ID=provider.client_id,
        BASTION_OIDC_CLIENT_SECRET=provider.client_secret,
        BASTION_OIDC_NAME="Example ID",
    )
    return environ


async def test_serve_builds_the_proxy_the_environment_describes(tmp_path: Path) -> None:
    skip_without_node()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    (tmp_path / "env_notes.py").write_text(NOTES_APP)
    with OIDCProvider(redirect_uris=[base + "/auth/callback"]) as provider:
        environ = oidc_environment(provider, base, tmp_path / "auth.db")
        argv = ["serve", "env_notes:mcp", "--port", str(port)]
        with running(argv, environ, "Uvicorn running", cwd=tmp_path) as output:
            async with httpx2.AsyncClient() as http:
                challenge = await http.post(base + "/mcp", json=rpc("tools/list"), headers=MCP_HEADERS)
                assert challenge.status_code == 401
                resource = (await http.get(base + "/.well-known/oauth-protected-resource/mcp")).json()
                assert resource["authorization_servers"] == [base + "/"]
                metadata = (await http.get(base + "/.well-known/oauth-authorization-server")).json()
                assert metadata["issuer"] == base + "/"
                assert metadata["authorization_endpoint"] == base + "/authorize"
                assert metadata["registration_endpoint"] == base + "/register"
        assert provider.client_secret not in "".join(output)
    assert (tmp_path / "auth.db").exists()


async def test_demo_signs_in_with_the_provider_the_environment_names(tmp_path: Path) -> None:
    skip_without_node()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with OIDCProvider(redirect_uris=[base + "/auth/callback"]) as provider:
        environ = oidc_environment(provider, base, tmp_path / "auth.db")
        with running(["demo", "--port", str(port)], environ, "Ctrl-C stops it") as output:
            banner = "".join(output)
            assert "Sign in with Example ID" in banner
            assert f"{base}/auth/callback" in banner
            assert "alice" not in banner
            assert "password" not in banner
            assert str(tmp_path / "auth.db") in banner
            url = base + "/mcp"
            async with httpx2.AsyncClient() as http:
                resource = (await http.get(base + "/.well-known/oauth-protected-resource/mcp")).json()
                assert resource["authorization_servers"] == [base + "/"]
                browser = OIDCBrowser(http, base + "/auth/callback", login="carol")
                client_provider = sdk_client(url, browser, MemoryTokenStorage())
                async with (
                    httpx2.AsyncClient(auth=client_provider) as session,
                    Client(streamable_http_client(url, http_client=session)) as client,
                ):
                    me = (await client.call_tool("whoami", {})).structured_content
                    assert me is not None
                    assert (me["subject"], me["name"]) == ("carol", "Carol")
                    assert {"notes:read", "notes:write"} <= set(me["scopes"])
                    added = await client.call_tool("add_note", {"text": "from the provider"})
                    assert added.content[0].text == "saved note 1 for carol"  # type: ignore[union-attr]
                    with pytest.raises(MCPError, match="Forbidden"):  # no role admin from this provider
                        await client.call_tool("admin_stats", {})
            assert "Example ID" in browser.consent_pages[0]
        assert provider.client_secret not in "".join(output)


def test_demo_with_bastion_auth_refuses_auto_approve_and_names_a_missing_variable(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BASTION_AUTH", "google")
    monkeypatch.setenv("BASTION_GOOGLE_CLIENT_SECRET", "google-secret-value")
    assert main(["demo", "--auto-approve", "alice", "--store", "memory://"]) == 2
    assert "BASTION_AUTH" in capsys.readouterr().err
    assert main(["demo", "--store", "memory://"]) == 2
    err = capsys.readouterr().err
    assert "BASTION_GOOGLE_CLIENT_ID" in err
    assert "google-secret-value" not in err


def test_keys_prints_a_new_encryption_key_the_vault_accepts(capsys: pytest.CaptureFixture[str]) -> None:
    from bastion.authserver._vault import parse_keys

    assert main(["keys"]) == 0
    first = capsys.readouterr().out.strip()
    assert main(["keys"]) == 0
    second = capsys.readouterr().out.strip()
    assert first != second
    assert [len(key) for key in parse_keys(f"{first},{second}")] == [32, 32]
