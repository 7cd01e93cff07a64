"""``/healthz`` and ``/readyz`` of a served MCP server: no token, no detail, readiness that follows the store.

The store is a real Redis server of the test's own, stopped and started again; the key
set is a real JWK Set endpoint over HTTP whose answers the test controls.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import httpx2
import pytest

from bastion import AuthorizationServer, JWKSOptions, JWTVerifier, MCPServer
from bastion._adapters.health import Readiness
from bastion.storage import RedisStore
from bastion.testing import JWKSServer, KeyPair, serve

from support.authserver import SCOPES, check_user, make_server
from support.clock import FakeClock
from support.notes import MCP_HEADERS, rpc, served
from support.proxy import free_port
from support.redis import RedisServer
from support.telemetry import Recorded, key
from support.telemetry import recorded_fixture as recorded_fixture

OK = {"status": "ok"}
UNAVAILABLE = {"status": "unavailable"}


def assert_not_ready(response: httpx2.Response) -> None:
    assert response.status_code == 503
    assert int(response.headers["retry-after"]) > 0
    assert response.headers["cache-control"] == "no-store"
    # The same few bytes whatever failed: nothing for a caller to learn about the deployment.
    assert response.json() == UNAVAILABLE
    assert len(response.content) < 30


async def test_readiness_is_false_while_the_store_is_down_and_true_again_after(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with RedisServer() as redis:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        auth = AuthorizationServer(base, store=RedisStore(redis.url), users=check_user, scopes=SCOPES)
        mcp = MCPServer("Notes", auth=auth, resource_url=base + "/mcp")
        mcp.serve_health(min_interval=0)
        with serve(mcp.streamable_http_app(stateless_http=True, json_response=True), port=port):
            async with httpx2.AsyncClient() as http:
                live = await http.get(base + "/healthz")
                assert (live.status_code, live.json()) == (200, OK)
                ready = await http.get(base + "/readyz")
                assert (ready.status_code, ready.json()) == (200, OK)
                assert ready.headers["cache-control"] == "no-store"
                # Probes carry no token; the MCP endpoint still wants one.
                assert (await http.post(base + "/mcp", json=rpc("tools/list"), headers=MCP_HEADERS)).status_code == 401

                redis.stop()
                with caplog.at_level(logging.WARNING, logger="bastion"):
                    for _ in range(3):
                        assert_not_ready(await http.get(base + "/readyz"))
                    assert (await http.get(base + "/healthz")).status_code == 200  # alive all the same

                redis.start()
                with caplog.at_level(logging.INFO, logger="bastion"):
                    again = await http.get(base + "/readyz")
                assert (again.status_code, again.json()) == (200, OK)
            await auth.store.aclose()  # while the server's event loop, which holds connections, runs
    # The reason is in the log, once however many probes failed, then the recovery.
    messages = [r.getMessage() for r in caplog.records if r.name == "bastion"]
    assert [m.partition(":")[0] for m in messages if "ready" in m] == ["not ready", "still not ready", "ready again"]
    assert messages[0].startswith("not ready: the store failed: ")


async def test_readiness_needs_the_key_set_once_then_a_cached_copy_counts() -> None:
    key_pair = KeyPair.generate()
    clock = FakeClock()
    with JWKSServer(key_pair) as jwks:
        jwks.status = 500  # the identity provider's key set is down when the server starts
        verifier = JWTVerifier(
            jwks_uri=jwks.url,
            issuer="https://issuer.example",
            audience="http://127.0.0.1/mcp",
            clock=clock,
            jwks=JWKSOptions(refetch_interval=30),
        )
        mcp = MCPServer("Notes", auth=verifier, resource_url="http://127.0.0.1/mcp")
        mcp.serve_health(min_interval=0)
        with served(mcp, stateless_http=True, json_response=True) as url:
            base = url.removesuffix("/mcp")
            async with httpx2.AsyncClient() as http:
                assert_not_ready(await http.get(base + "/readyz"))
                assert_not_ready(await http.get(base + "/readyz"))
                assert jwks.requests == 1  # probes never fetch more often than the cache allows

                jwks.status = 200
                clock.now += 31
                assert (await http.get(base + "/readyz")).status_code == 200
                assert jwks.requests == 2

                # Down again, long past the copy's lifetime: the copy still verifies tokens, so still ready.
                jwks.status = 500
                clock.now += 3600
                assert (await http.get(base + "/readyz")).status_code == 200
                assert jwks.requests == 2


async def test_probes_share_one_check_per_interval(tmp_path: Path, recorded: Recorded) -> None:
    clock = FakeClock()
    auth = make_server(tmp_path)  # built while instrumented: its store reads are counted
    readiness = Readiness(None, auth, min_interval=1.0, clock=clock)
    assert all(await asyncio.gather(*(readiness.ready() for _ in range(20))))
    reads = key({"store": "SQLiteStore", "operation": "get", "outcome": "ok"})
    # One check: the probe's read, and the key ring's (created then, as the first request would).
    assert recorded.series("bastion.store.duration")[reads] == 2
    clock.now += 1
    assert await readiness.ready()
    assert recorded.series("bastion.store.duration")[reads] == 3  # the keys are loaded: the probe's read only
    await auth.store.aclose()
