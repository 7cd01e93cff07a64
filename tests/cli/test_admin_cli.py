"""The administration commands against real stores and a real running server.

The end-to-end tests run ``bastion demo`` in a process of its own on a SQLite file or
on Redis, sign in through the SDK's OAuth client, and then run ``bastion clients``,
``bastion grants`` and ``bastion token`` in other processes on the same store, as an
operator would: the running server must refuse a revoked token on its next calls.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client as MCPClient
from mcp.client.streamable_http import streamable_http_client

from bastion._cli.main import main
from bastion.authserver import AuthorizationServer, Client, User
from bastion.authserver._grants.refresh_token import RefreshTokens
from bastion.authserver._models import hash_secret
from bastion.storage import open_store
from bastion.testing import MemoryTokenStorage, oauth_client

from support.demo import demo_process
from support.notes import MCP_HEADERS, rpc

#: Seconds a server on the store has to refuse a revoked token (SQLite: a poll every
#: quarter second; Redis: pub/sub), with room for a slow machine.
DEADLINE = 10.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def bastion(*argv: str) -> tuple[int, str, str]:
    """``bastion <argv>`` in a process of its own: its exit status, stdout and stderr."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bastion._cli.main", *argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@pytest.fixture(params=["sqlite", "redis"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "redis":
        return str(request.getfixturevalue("redis_url"))
    return f"sqlite:///{tmp_path / 'auth.db'}"


@pytest.fixture
def demo(store_url: str) -> Iterator[str]:
    with demo_process(store_url) as url:
        yield url


async def call(http: httpx2.AsyncClient, url: str, token: str, tool: str = "whoami") -> httpx2.Response:
    headers = {**MCP_HEADERS, "Authorization": f"Bearer {token}"}
    return await http.post(url, json=rpc("tools/call", {"name": tool, "arguments": {}}), headers=headers)


async def answer_once(
    http: httpx2.AsyncClient, url: str, token: str, done: Callable[[httpx2.Response], bool]
) -> httpx2.Response:
    """The server's first answer to ``token`` that is ``done``, or its last one at the deadline."""
    deadline = time.monotonic() + DEADLINE
    while True:
        response = await call(http, url, token)
        if done(response) or time.monotonic() > deadline:
            return response
        await asyncio.sleep(0.05)  # polling the server, with a deadline


async def refused_soon(http: httpx2.AsyncClient, url: str, token: str) -> httpx2.Response:
    """The answer to ``token`` once it is no longer 200: a revocation reaches the server through the store."""
    return await answer_once(http, url, token, lambda response: response.status_code != 200)


def structured(response: httpx2.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()["result"]["structuredContent"]
    return result


# -- end to end: a client signs in, the operator lists and revokes ------------------------------


async def test_an_operator_sees_the_client_and_revokes_the_user(demo: str, store_url: str) -> None:
    storage = MemoryTokenStorage()
    async with (
        httpx2.AsyncClient(auth=oauth_client(demo, client_name="Notes Desktop", storage=storage)) as http,
        MCPClient(streamable_http_client(demo, http_client=http)) as client,
    ):
        me = (await client.call_tool("whoami", {})).structured_content
        assert me is not None
        assert me["subject"] == "alice"
    assert storage.tokens is not None
    assert storage.client_info is not None
    client_id = storage.client_info.client_id
    access, refresh = storage.tokens.access_token, storage.tokens.refresh_token
    assert client_id is not None
    assert refresh is not None

    status, out, err = await bastion("clients", "list", "--json", "--store", store_url)
    assert status == 0, err
    [listed] = json.loads(out)
    assert listed["client_id"] == client_id
    assert listed["client_name"] == "Notes Desktop"
    assert listed["kind"] == "registered"
    assert "client_secret_hash" not in listed

    status, out, err = await bastion("grants", "list", "--user", "alice", "--json", "--store", store_url)
    assert status == 0, err
    [grant] = json.loads(out)
    assert grant["client_id"] == client_id
    assert "offline_access" in grant["scopes"]
    assert refresh not in out

    async with httpx2.AsyncClient() as http:
        assert (await call(http, demo, access)).status_code == 200  # cached by the server now

        status, out, err = await bastion("grants", "revoke", "--user", "alice", "--store", store_url)
        assert (status, out.strip()) == (0, "revoked 1 grant"), err

        response = await refused_soon(http, demo, access)
        assert response.status_code == 401
        assert 'error="invalid_token"' in response.headers["www-authenticate"]
        token_url = demo.removesuffix("/mcp") + "/token"
        form = {"grant_type": "refresh_token", "refresh_token": refresh, "client_id": client_id}
        refreshed = await http.post(token_url, data=form)
        assert refreshed.status_code == 400
        assert refreshed.json()["error"] == "invalid_grant"

    status, out, _ = await bastion("grants", "list", "--user", "alice", "--json", "--store", store_url)
    assert (status, json.loads(out)) == (0, [])


async def test_a_minted_token_is_accepted_by_the_server_and_follows_a_rotation(demo: str, store_url: str) -> None:
    mint = ["token", "--user", "alice", "--scopes", "notes:read", "--resource", demo, "--store", store_url]
    status, out, err = await bastion(*mint, "--name", "Alice", "--json")
    assert status == 0, err
    minted = json.loads(out)
    assert minted["token_type"] == "Bearer"
    assert minted["issuer"] == demo.removesuffix("/mcp") + "/"
    async with httpx2.AsyncClient() as http:
        me = structured(await call(http, demo, minted["access_token"]))
        assert (me["subject"], me["name"], me["client_id"]) == ("alice", "Alice", "bastion-cli")
        assert me["scopes"] == ["notes:read"]

        status, out, err = await bastion("keys", "rotate", "--json", "--store", store_url)
        assert status == 0, err
        old, new = json.loads(out)
        assert (old["signing"], new["signing"]) == (False, True)

        status, second, err = await bastion(*mint)
        assert status == 0, err
        header = json.loads(_b64(second.strip().split(".")[0]))
        assert header["kid"] == new["kid"]
        # The server re-reads the ring for an unknown kid (at most once a second).
        accepted = await answer_once(http, demo, second.strip(), lambda response: response.status_code == 200)
        assert structured(accepted)["subject"] == "alice"
        assert structured(await call(http, demo, minted["access_token"]))["subject"] == "alice"  # the old one too

        status, _, err = await bastion("grants", "revoke", minted["grant_id"], "--store", store_url)
        assert status == 0, err
        assert (await refused_soon(http, demo, minted["access_token"])).status_code == 401


def _b64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


# -- the commands on a store, in this process --------------------------------------------------

SECRET = "registered-client-secret-0123456789abcdef"
RESOURCE = "http://127.0.0.1:8000/mcp"


async def _prepared(url: str) -> str:
    """A registered client with a secret, and alice's and bob's grants to it; alice's grant id."""
    store = open_store(url)
    try:
        server = AuthorizationServer("http://127.0.0.1:8000", store=store, resources=[RESOURCE])
        await server.clients.save(
            Client(
                client_id="app-1",
                client_name="Notes Web",
                redirect_uris=("https://notes.example/cb", "https://notes.example/cb2"),
                token_endpoint_auth_method="client_secret_basic",
                client_secret_hash=hash_secret(SECRET),
                client_id_issued_at=1_700_000_000,
                kind="registered",
            )
        )
        grant_id = await server.new_grant(User("alice"), "app-1")
        await RefreshTokens(server).issue(
            client_id="app-1", user=User("alice"), scopes=("notes:read",), resources=(RESOURCE,), grant_id=grant_id
        )
        await server.new_grant(User("bob"), "app-1")
        return grant_id
    finally:
        await store.aclose()


@pytest.fixture
def prepared(store_url: str) -> str:
    return asyncio.run(_prepared(store_url))


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_clients_are_listed_as_a_table_and_as_json(
    capsys: pytest.CaptureFixture[str], store_url: str, prepared: str
) -> None:
    status, out, _ = run(capsys, "clients", "list", "--store", store_url)
    assert status == 0
    header, row = out.splitlines()
    assert header.split() == ["CLIENT", "ID", "KIND", "NAME", "AUTH", "REGISTERED", "REDIRECT", "URIS"]
    assert row.split()[:5] == ["app-1", "registered", "Notes", "Web", "client_secret_basic"]
    assert header.index("KIND") == row.index("registered")  # aligned
    assert "https://notes.example/cb (+1)" in row
    status, out, _ = run(capsys, "clients", "show", "app-1", "--json", "--store", store_url)
    shown = json.loads(out)
    assert (status, shown["client_id"], shown["live_grants"]) == (0, "app-1", 2)
    assert shown["redirect_uris"] == ["https://notes.example/cb", "https://notes.example/cb2"]
    status, out, _ = run(capsys, "clients", "show", "app-1", "--store", store_url)
    assert re.search(r"^client_name:\s+Notes Web$", out, re.MULTILINE)
    for text in (out, json.dumps(shown)):
        assert SECRET not in text
        assert hash_secret(SECRET) not in text
    status, _, err = run(capsys, "clients", "show", "nope", "--store", store_url)
    assert (status, err.strip()) == (1, "bastion clients show: no client 'nope' is known")


def test_deleting_a_client_revokes_its_grants(
    capsys: pytest.CaptureFixture[str], store_url: str, prepared: str
) -> None:
    status, out, _ = run(capsys, "clients", "delete", "app-1", "--store", store_url)
    assert (status, out.strip()) == (0, "deleted client app-1; 2 grants revoked")
    assert run(capsys, "clients", "list", "--json", "--store", store_url)[1].strip() == "[]"
    assert run(capsys, "grants", "list", "--json", "--store", store_url)[1].strip() == "[]"
    status, _, err = run(capsys, "clients", "delete", "app-1", "--store", store_url)
    assert status == 1
    assert "no client 'app-1' is registered" in err


def test_a_static_client_is_not_deleted(capsys: pytest.CaptureFixture[str], store_url: str, tmp_path: Path) -> None:
    asyncio.run(_prepared(store_url))
    clients = tmp_path / "clients.json"
    clients.write_text(json.dumps([{"client_id": "desk", "redirect_uris": ["http://127.0.0.1/cb"]}]))
    status, out, _ = run(capsys, "clients", "list", "--clients", str(clients), "--json", "--store", store_url)
    assert [(c["client_id"], c["kind"]) for c in json.loads(out)] == [("app-1", "registered"), ("desk", "static")]
    status, _, err = run(capsys, "clients", "delete", "desk", "--clients", str(clients), "--store", store_url)
    assert status == 1
    assert "configured in code or a clients file" in err


def test_grants_are_listed_and_revoked_by_id_user_or_client(
    capsys: pytest.CaptureFixture[str], store_url: str, prepared: str
) -> None:
    status, out, _ = run(capsys, "grants", "list", "--store", store_url)
    lines = out.splitlines()
    assert lines[0].split() == ["GRANT", "ID", "USER", "CLIENT", "SCOPES", "CREATED", "REFRESH"]
    assert sorted(line.split()[1] for line in lines[1:]) == ["alice", "bob"]
    assert f"{prepared}  alice  app-1   notes:read" in out
    status, out, _ = run(capsys, "grants", "list", "--user", "bob", "--json", "--store", store_url)
    [bob] = json.loads(out)
    assert (bob["subject"], bob["scopes"], bob["refreshable"]) == ("bob", [], False)
    assert run(capsys, "grants", "list", "--client", "other", "--store", store_url)[1].strip() == "no grants"

    assert run(capsys, "grants", "revoke", prepared, "--store", store_url)[:2] == (0, "revoked 1 grant\n")
    status, _, err = run(capsys, "grants", "revoke", prepared, "--store", store_url)
    assert (status, err.strip()) == (1, f"bastion grants revoke: no live grant {prepared!r}")
    assert run(capsys, "grants", "revoke", "--client", "app-1", "--json", "--store", store_url)[1] == (
        '{\n  "revoked": 1\n}\n'
    )
    assert run(capsys, "grants", "revoke", "--user", "alice", "--store", store_url)[1] == "revoked 0 grants\n"


def test_grants_revoke_needs_exactly_one_target(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'auth.db'}"
    for argv in (["grants", "revoke"], ["grants", "revoke", "g1", "--user", "alice"]):
        status, _, err = run(capsys, *argv, "--store", store)
        assert status == 2
        assert "give a grant id, or --user and/or --client" in err


def test_the_store_must_be_named_and_reachable(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("BASTION_STORE", raising=False)
    status, _, err = run(capsys, "clients", "list")
    assert (status, err.strip()) == (
        2,
        "bastion clients list: give the server's store with --store URL or BASTION_STORE",
    )
    for url, message in [
        ("postgres://db/auth", "unknown store URL scheme 'postgres'"),
        (f"sqlite:///{tmp_path / 'missing.db'}", f"there is no store file at {tmp_path / 'missing.db'}"),
        ("redis://127.0.0.1:1/0", "Redis"),
        ("memory://", "memory:// holds nothing"),
    ]:
        status, out, err = run(capsys, "grants", "list", "--store", url)
        assert status == 2, url
        assert err.startswith("bastion grants list: ")
        assert message in err
        assert "Traceback" not in err
        assert len(err.strip().splitlines()) == 1
        assert out == ""


def test_bastion_store_names_the_store(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, store_url: str, prepared: str
) -> None:
    monkeypatch.setenv("BASTION_STORE", store_url)
    status, out, _ = run(capsys, "grants", "list", "--client", "app-1", "--json")
    assert status == 0
    assert {g["subject"] for g in json.loads(out)} == {"alice", "bob"}


def test_consents_are_listed_and_withdrawn(capsys: pytest.CaptureFixture[str], store_url: str) -> None:
    async def remember() -> None:
        from bastion.authserver._browser.consent import remember_consent
        from bastion.authserver._browser.flows import Flow

        store = open_store(store_url)
        server = AuthorizationServer("http://127.0.0.1:8000", store=store, resources=[RESOURCE])
        flow = Flow(
            "f", "c", "app-1", "Notes", "https://notes.example/cb", True, None, "x" * 43, ("notes:read",), RESOURCE
        )
        await remember_consent(server, "alice", flow)
        await store.aclose()

    asyncio.run(remember())
    status, out, _ = run(capsys, "consents", "list", "--store", store_url)
    assert status == 0
    assert out.splitlines()[0].split() == ["USER", "CLIENT", "SCOPES", "RESOURCES", "GIVEN"]
    assert out.splitlines()[1].split()[:4] == ["alice", "app-1", "notes:read", RESOURCE]
    status, out, _ = run(capsys, "consents", "withdraw", "--user", "alice", "--client", "app-1", "--store", store_url)
    assert (status, out.strip()) == (0, "withdrew alice's consent for app-1 and revoked its grants")
    assert run(capsys, "consents", "list", "--json", "--store", store_url)[1].strip() == "[]"
    status, _, err = run(capsys, "consents", "withdraw", "--user", "alice", "--client", "app-1", "--store", store_url)
    assert status == 1
    assert "'alice' has no consent or grant for 'app-1'" in err


def test_keys_are_listed_and_rotated(capsys: pytest.CaptureFixture[str], store_url: str, prepared: str) -> None:
    status, out, _ = run(capsys, "keys", "list", "--store", store_url)
    assert (status, out.strip()) == (0, "no signing key yet (the server makes one when it first signs)")
    assert run(capsys, "keys", "rotate", "--store", store_url)[0] == 0
    status, out, _ = run(capsys, "keys", "rotate", "--store", store_url)
    header, first, second = out.splitlines()
    assert header.split() == ["KID", "ALG", "CREATED", "STATUS"]
    assert first.split()[-1] == "published"
    assert second.split()[-1] == "signing"
    assert second.split()[1] == "ES256"


def test_keys_alone_still_prints_an_encryption_key(capsys: pytest.CaptureFixture[str]) -> None:
    from bastion.authserver._vault import parse_keys

    status, legacy, err = run(capsys, "keys")
    assert status == 0
    assert "bastion encryption-key" in err
    status, key, err = run(capsys, "encryption-key")
    assert (status, err) == (0, "")
    assert [len(k) for k in parse_keys(f"{legacy.strip()},{key.strip()}")] == [32, 32]


def test_a_token_for_an_issuer_beyond_loopback_needs_force(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'auth.db'}"
    asyncio.run(_prepared(store))
    argv = ["token", "--user", "alice", "--resource", "https://notes.example.com/mcp", "--store", store]
    status, out, err = run(capsys, *argv)
    assert (status, out) == (2, "")
    assert "https://notes.example.com/ is not a loopback issuer" in err
    assert "--force" in err
    status, out, err = run(capsys, *argv, "--force", "--json")
    assert status == 0, err
    assert json.loads(out)["issuer"] == "https://notes.example.com/"
    status, _, err = run(capsys, "token", "--user", "alice", "--resource", "notes", "--store", store)
    assert status == 2
    assert "resource URL must be an absolute http(s) URL" in err
