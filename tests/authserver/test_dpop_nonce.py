"""Server-provided DPoP nonces over real HTTP (RFC 9449 section 8), across replicas sharing a store.

Two authorization servers on one store are two replicas of one deployment (one public
URL, so one ``htu``): a nonce one of them hands out is accepted by the other, on SQLite
(the workers of one host) and on Redis (replicas on several hosts).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx2
import pytest

from bastion._jose.proof_key import ProofKey
from bastion.authserver import AuthorizationServer, DPoPSettings
from bastion.storage import RedisStore, SQLiteStore, Store

from support.authserver import clock_fixture as clock_fixture
from support.authserver import code_request, make_server, oauth_error, serving
from support.authserver import http_fixture as http_fixture
from support.clock import FakeClock

PERIOD = 300.0
NONCES = DPoPSettings(nonce=True, nonce_period=PERIOD)


@pytest.fixture(params=["sqlite", "redis"])
async def stores(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[tuple[Store, Store]]:
    """Two store clients on one backend: two processes' views of one deployment's store."""
    if request.param == "sqlite":
        pair: tuple[Store, Store] = (
            SQLiteStore(tmp_path / "auth.db", clock=clock),
            SQLiteStore(tmp_path / "auth.db", clock=clock),
        )
    else:
        url = request.getfixturevalue("redis_url")
        pair = (RedisStore(url, clock=clock), RedisStore(url, clock=clock))
    yield pair
    for store in pair:
        await store.aclose()


@asynccontextmanager
async def replicas(
    stores: tuple[Store, Store], clock: FakeClock
) -> AsyncIterator[tuple[str, AuthorizationServer, str, AuthorizationServer]]:
    """Replicas A and B served, both with A's URL as their issuer: ``(public URL, A, B's URL, B)``."""
    a = make_server(Path("."), store=stores[0], clock=clock, dpop=NONCES)
    with serving(a) as public:
        b = make_server(Path("."), store=stores[1], clock=clock, dpop=NONCES, issuer=public)
        with serving(b) as b_url:
            try:
                yield public, a, b_url, b
            finally:
                # While the servers' loops still run: a Redis connection is closed on its own loop.
                for store in stores:
                    await store.aclose()


def proof(key: ProofKey, public: str, clock: FakeClock, nonce: str | None = None) -> dict[str, str]:
    return {"DPoP": key.proof("POST", public + "/token", nonce=nonce, now=clock.now)}


async def test_a_nonce_from_one_replica_is_accepted_by_the_other(
    stores: tuple[Store, Store], clock: FakeClock, http: httpx2.AsyncClient
) -> None:
    key = ProofKey.generate()
    async with replicas(stores, clock) as (public, a, b_url, b):
        data = await code_request(a)
        challenged = await http.post(public + "/token", data=data, headers=proof(key, public, clock))
        assert challenged.status_code == 400
        assert oauth_error(challenged) == "use_dpop_nonce"
        assert challenged.json()["error_description"] == "Authorization server requires nonce in DPoP proof"
        nonce = challenged.headers["dpop-nonce"]

        # The challenge spent nothing: the same code, with a proof carrying the nonce, at the other replica.
        answer = await http.post(b_url + "/token", data=data, headers=proof(key, public, clock, nonce))
        assert answer.status_code == 200, answer.text
        assert answer.json()["token_type"] == "DPoP"
        assert answer.headers["dpop-nonce"] == nonce  # the same period: the same nonce, from either replica

        second = await http.post(
            public + "/token", data=await code_request(b), headers=proof(key, public, clock, nonce)
        )
        assert second.status_code == 200, second.text


async def test_nonces_rotate_and_the_previous_one_is_still_accepted(
    stores: tuple[Store, Store], clock: FakeClock, http: httpx2.AsyncClient
) -> None:
    key = ProofKey.generate()
    async with replicas(stores, clock) as (public, a, b_url, b):
        nonce = (await http.post(public + "/token", data={}, headers=proof(key, public, clock))).headers["dpop-nonce"]
        clock.advance(PERIOD)
        previous = await http.post(
            b_url + "/token", data=await code_request(b), headers=proof(key, public, clock, nonce)
        )
        assert previous.status_code == 200, previous.text
        fresh = previous.headers["dpop-nonce"]
        assert fresh != nonce  # the 200 hands out the next nonce (section 8.2)

        clock.advance(PERIOD)
        stale = await http.post(public + "/token", data=await code_request(a), headers=proof(key, public, clock, nonce))
        assert stale.status_code == 400
        assert oauth_error(stale) == "use_dpop_nonce"
        assert stale.headers["dpop-nonce"] not in (nonce, fresh)


async def test_a_made_up_nonce_is_refused_with_the_right_one(
    stores: tuple[Store, Store], clock: FakeClock, http: httpx2.AsyncClient
) -> None:
    key = ProofKey.generate()
    async with replicas(stores, clock) as (public, a, _, _b):
        guessed = await http.post(
            public + "/token", data=await code_request(a), headers=proof(key, public, clock, "guessed-nonce")
        )
        assert guessed.status_code == 400
        assert oauth_error(guessed) == "use_dpop_nonce"
        retry = await http.post(
            public + "/token",
            data=await code_request(a),
            headers=proof(key, public, clock, guessed.headers["dpop-nonce"]),
        )
        assert retry.status_code == 200, retry.text


async def test_every_answer_to_a_proof_carries_the_nonce_and_a_request_without_one_gets_a_bearer_token(
    stores: tuple[Store, Store], clock: FakeClock, http: httpx2.AsyncClient
) -> None:
    key = ProofKey.generate()
    async with replicas(stores, clock) as (public, a, _, _b):
        nonce = (await http.post(public + "/token", data={}, headers=proof(key, public, clock))).headers["dpop-nonce"]
        refused = await http.post(
            public + "/token", data=await code_request(a, code="not-a-code"), headers=proof(key, public, clock, nonce)
        )
        assert oauth_error(refused) == "invalid_grant"
        assert refused.headers["dpop-nonce"] == nonce
        bearer = await http.post(public + "/token", data=await code_request(a))
        assert bearer.status_code == 200
        assert bearer.json()["token_type"] == "Bearer"
        assert "dpop-nonce" not in bearer.headers
