"""A soak: a few hundred clients call tools and refresh over two replicas on one Redis, without one error.

Every client holds one user's session and loops: a refresh on one replica, then tool calls
spread over both with the new access token. Every answer must be right (200, the client's
own user), and the replicas' memory must stay flat: each replica's resident memory, read
from ``/proc/<pid>/status``, may grow by at most ``GROWTH`` after the warm-up (the first
third of the run). That is a bound on resources, not on time.

The run lasts ``BASTION_SOAK_SECONDS`` seconds of load (default 30, so that the suite stays
quick on two cores); set it higher for a longer soak. Marked ``soak``: it runs with the rest
of the suite, CI included, and ``-m "not soak"`` leaves it out.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx2
import pytest

from support.authserver import refresh
from support.redis import RedisServer
from support.replicas import Replica, call_tool, replicas, seed

pytestmark = pytest.mark.soak

#: Concurrent clients, one session each.
CLIENTS = 300
#: Tool calls per refresh.
CALLS_PER_REFRESH = 4
#: Seconds of load, warm-up included.
SECONDS = float(os.environ.get("BASTION_SOAK_SECONDS", "30"))
#: Seconds an idle connection is kept for the next request: less than the replicas keep it (60 s).
KEEPALIVE = 5.0
#: How much a replica's resident memory may grow after the warm-up.
GROWTH = 20 * 1024 * 1024


@dataclass
class Client:
    """One client: its number, its user, its tokens, and what went wrong for it."""

    number: int
    subject: str
    refresh_token: str
    access_token: str = ""
    requests: int = 0
    errors: list[str] = field(default_factory=list)

    def replica(self, pair: tuple[Replica, Replica]) -> Replica:
        """The replica of the next request: clients and requests alternate over both."""
        return pair[(self.number + self.requests) % 2]

    def refreshes(self) -> bool:
        """Whether the next request is a refresh: the first, then one in ``CALLS_PER_REFRESH + 1``."""
        return not self.access_token or self.requests % (CALLS_PER_REFRESH + 1) == 0


async def session(http: httpx2.AsyncClient, pair: tuple[Replica, Replica], client: Client, until: float) -> int:
    """``client`` refreshes and calls tools until ``until`` (monotonic), or its first error; the requests made."""
    requests = 0
    while time.monotonic() < until:
        replica = client.replica(pair)
        try:
            if client.refreshes():
                answer = await refresh(http, replica.base, client.refresh_token)
                if answer.status_code != 200:
                    client.errors.append(f"refresh on {replica.name}: {answer.status_code} {answer.text}")
                    return requests
                client.refresh_token = answer.json()["refresh_token"]
                client.access_token = answer.json()["access_token"]
            else:
                called = await call_tool(http, replica.base, client.access_token)
                if called.status_code != 200:
                    client.errors.append(f"whoami on {replica.name}: {called.status_code} {called.text}")
                    return requests
                subject = called.json()["result"]["structuredContent"]["subject"]
                if subject != client.subject:
                    client.errors.append(f"whoami on {replica.name} answered {subject} for {client.subject}")
                    return requests
        except httpx2.TransportError as error:
            client.errors.append(f"{type(error).__name__} from {replica.name}: {error!r}")
            return requests
        requests += 1
        client.requests += 1
    return requests


async def load(http: httpx2.AsyncClient, pair: tuple[Replica, Replica], clients: list[Client], seconds: float) -> int:
    """Every client at once for ``seconds``; how many requests they made."""
    until = time.monotonic() + seconds
    made = await asyncio.gather(*(session(http, pair, client, until) for client in clients))
    errors = [error for client in clients for error in client.errors]
    assert not errors, f"{len(errors)} clients met an error, the first: {errors[0]}"
    return sum(made)


async def test_hundreds_of_clients_over_two_replicas_meet_no_error_and_memory_stays_flat(tmp_path: Path) -> None:
    with RedisServer() as redis_server, replicas(redis_server.url, tmp_path) as (a, b):
        pair = (a, b)
        sessions = seed(redis_server.url, CLIENTS).items()
        clients = [Client(number, subject, token) for number, (subject, token) in enumerate(sessions)]
        # Idle connections are let go long before the replicas close them, so that no request
        # is sent on a connection the server is closing at that moment.
        limits = httpx2.Limits(
            max_connections=2 * CLIENTS, max_keepalive_connections=2 * CLIENTS, keepalive_expiry=KEEPALIVE
        )
        async with httpx2.AsyncClient(limits=limits, timeout=60) as http:
            started = [replica.rss() for replica in pair]
            warm_up = await load(http, pair, clients, SECONDS / 3)
            warm = [replica.rss() for replica in pair]
            rest = await load(http, pair, clients, SECONDS - SECONDS / 3)
            end = [replica.rss() for replica in pair]
    mib = 1024 * 1024
    report = ", ".join(
        f"{replica.name}: {s / mib:.1f} -> {w / mib:.1f} -> {e / mib:.1f} MiB"
        for replica, s, w, e in zip(pair, started, warm, end, strict=True)
    )
    print(f"{warm_up} requests in the warm-up, {rest} after it; resident memory {report}")
    assert rest > 0
    for replica, before, after in zip(pair, warm, end, strict=True):
        assert after - before < GROWTH, f"replica {replica.name} grew by {(after - before) / mib:.1f} MiB: {report}"
