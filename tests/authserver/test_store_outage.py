"""A store outage: every answer is 503 with Retry-After, and the log gets a line a minute, not a traceback a request.

The SQLite store of a served authorization server is closed under it (what a
full or vanished disk looks like from the endpoints: every store call fails with
``StoreError``), or another process holds the database's write lock; the requests
then go through real HTTP.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from pathlib import Path

import httpx2
import pytest

from bastion import MCPServer
from bastion.storage import SQLiteStore

from support.authserver import (
    CONFIDENTIAL_SECRET,
    REDIRECT,
    basic_auth,
    clocked_server,
    code_request,
    make_server,
    oauth_error,
    serving,
)
from support.authserver import clock_fixture as clock_fixture
from support.clock import FakeClock
from support.notes import MCP_HEADERS, rpc, served
from support.pages import Browser, request_params


def assert_503(response: httpx2.Response) -> None:
    assert response.status_code == 503, response.text
    assert int(response.headers["retry-after"]) > 0


def ours(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == "bastion"]


def no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    assert all(record.exc_info is None for record in ours(caplog))
    assert "Traceback" not in caplog.text


async def test_two_hundred_requests_in_an_outage_make_one_line_then_one_with_the_count(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    server = clocked_server(tmp_path, clock)
    with serving(server) as base:
        data = await code_request(server)
        await server.store.aclose()
        async with httpx2.AsyncClient() as http:
            with caplog.at_level(logging.DEBUG, logger="bastion"):
                # At once, as the clients of a busy server would.
                for response in await asyncio.gather(*(http.post(base + "/token", data=data) for _ in range(200))):
                    assert_503(response)
                    assert oauth_error(response) == "temporarily_unavailable"
                clock.now += 61
                assert_503(await http.post(base + "/token", data=data))
    lines = [record.getMessage() for record in ours(caplog)]
    assert len(lines) == 2, lines
    assert "the store is closed" in lines[0]
    assert "(199 more in the last 61 s)" in lines[1]
    no_traceback(caplog)
    assert data["code"] not in caplog.text


async def test_every_endpoint_and_page_answers_503_with_retry_after(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    server = clocked_server(tmp_path, clock)
    with serving(server) as base:
        async with httpx2.AsyncClient() as http:
            browser = Browser(http, base)
            login_page = await browser.authorize(**request_params(REDIRECT))
            assert login_page.status_code == 200
            await server.store.aclose()
            with caplog.at_level(logging.DEBUG, logger="bastion"):
                for _ in range(3):
                    registered = await http.post(base + "/register", json={"redirect_uris": [REDIRECT]})
                    assert_503(registered)
                    assert oauth_error(registered) == "temporarily_unavailable"
                    revoked = await http.post(
                        base + "/revoke",
                        data={"token": "some-refresh-token"},
                        headers=basic_auth("confidential-client", CONFIDENTIAL_SECRET),
                    )
                    assert_503(revoked)
                    assert_503(await http.get(base + "/jwks"))
                    # The browser pages: a new authorization request, and the sign-in form already shown.
                    assert_503(await browser.authorize(**request_params(REDIRECT)))
                    signed_in = await browser.submit(login_page, username="alice", password="wrong-or-right")
                    assert_503(signed_in)
                    assert "try again later" in signed_in.text
    # One line per endpoint that met the outage, however many requests did.
    assert 1 <= len(ours(caplog)) <= 3, [record.getMessage() for record in ours(caplog)]
    no_traceback(caplog)


async def test_the_mcp_endpoint_of_a_server_whose_store_is_down_answers_503(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    server = clocked_server(tmp_path, clock)
    mcp = MCPServer("Notes", auth=server, resource_url="http://127.0.0.1/mcp")
    with served(mcp, stateless_http=True, json_response=True) as url:
        token, _ = await server.access_tokens.mint(
            client_id="public-client", subject="alice", scopes=[], resource="http://127.0.0.1/mcp", grant_id="g1"
        )
        await server.store.aclose()
        headers = {**MCP_HEADERS, "Authorization": f"Bearer {token}"}
        async with httpx2.AsyncClient() as http:
            with caplog.at_level(logging.DEBUG, logger="bastion"):
                for _ in range(20):
                    response = await http.post(url, json=rpc("tools/list"), headers=headers)
                    assert_503(response)
                    assert response.json()["error"] == "temporarily_unavailable"
                    assert "www-authenticate" not in response.headers
    warnings = [record.getMessage() for record in ours(caplog) if record.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "store" in warnings[0]
    assert token not in caplog.text
    no_traceback(caplog)


async def test_a_locked_database_is_an_outage_that_ends_without_a_restart(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    # Another process holds SQLite's write lock for longer than the store waits for it.
    server = make_server(tmp_path, clock=clock, store=SQLiteStore(tmp_path / "auth.db", clock=clock, busy_timeout=0.01))
    blocker = sqlite3.connect(tmp_path / "auth.db", isolation_level=None)
    with serving(server) as base:
        data = await code_request(server)
        blocker.execute("BEGIN IMMEDIATE")
        async with httpx2.AsyncClient() as http:
            with caplog.at_level(logging.DEBUG, logger="bastion"):
                for response in await asyncio.gather(*(http.post(base + "/token", data=data) for _ in range(20))):
                    assert_503(response)
            blocker.execute("ROLLBACK")
            recovered = await http.post(base + "/token", data=data)
    blocker.close()
    assert recovered.status_code == 200
    assert recovered.json()["token_type"] == "Bearer"
    [line] = [record.getMessage() for record in ours(caplog)]
    assert "database is locked" in line
    no_traceback(caplog)
