"""Replicas of one deployment on one Redis, each a process of its own (``support/replica_server.py``).

Every replica is configured with the same public URL (``PUBLIC``), as behind a load
balancer, and the tests talk to each one on its own port: nothing a replica answers may
depend on which one answered. ``PUBLIC`` is a loopback URL nothing listens on, so a
replica that took its issuer or resource from the request, or called itself through the
public URL, would be caught.

Also here: a browser's authorization spread over replicas, a tool call, and polling a
condition with a deadline.
"""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx2

from support.authserver import PASSWORDS, pkce_pair
from support.notes import MCP_HEADERS, rpc
from support.pages import callback_query, only_form
from support.proxy import free_port
from support.replica_server import authorization_server

__all__ = [
    "ISSUER",
    "PUBLIC",
    "REDIRECT",
    "Replica",
    "authorize",
    "call_tool",
    "claims",
    "eventually",
    "listening",
    "redeem",
    "register",
    "replicas",
    "seed",
    "sign_in_across",
]

#: The public URL of the deployment, the same for every replica; nothing listens there.
PUBLIC = "http://127.0.0.1:9"
#: The issuer as the replicas publish it (RFC 8414: the root issuer with its slash).
ISSUER = PUBLIC + "/"
#: The loopback redirect URI the tests' clients register (no one listens there either).
REDIRECT = "http://127.0.0.1:47000/callback"
#: Run as ``python -m support.replica_server`` from the tests folder, so it imports the shared helpers.
TESTS = Path(__file__).parents[1]
SCRIPT = [sys.executable, "-m", "support.replica_server"]
#: Seconds a replica has to start answering.
START_TIMEOUT = 60.0


@dataclass
class Replica:
    """One replica process: where it listens, and its process."""

    name: str
    base: str
    process: subprocess.Popen[bytes]

    def rss(self) -> int:
        """The process's resident memory in bytes (``VmRSS`` of ``/proc/<pid>/status``)."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS in /proc/<pid>/status")


def _wait_ready(replica: Replica, deadline: float) -> None:
    """Poll the metadata document until the replica answers (bounded)."""
    with httpx2.Client(timeout=5) as http:
        while True:
            assert replica.process.poll() is None, f"replica {replica.name} exited"
            try:
                if http.get(replica.base + "/.well-known/oauth-authorization-server").status_code == 200:
                    return
            except httpx2.TransportError:
                pass
            assert time.monotonic() < deadline, f"replica {replica.name} did not start"
            time.sleep(0.05)  # polling a readiness condition, not waiting for an event


@contextmanager
def replicas(redis_url: str, logs: Path, count: int = 2) -> Iterator[list[Replica]]:
    """``count`` replicas on ``redis_url``, all with the public URL ``PUBLIC``, each on a port of its own.

    Their output goes to ``logs/replica-<name>.log``; each is killed at the end.
    """
    with ExitStack() as stack:
        started: list[Replica] = []
        for number in range(count):
            name = "ABCDEFGH"[number]
            port = free_port()
            log = stack.enter_context((logs / f"replica-{name}.log").open("ab"))
            process = subprocess.Popen(
                [*SCRIPT, "serve", redis_url, str(port), PUBLIC],
                cwd=TESTS,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            stack.callback(_kill, process)
            started.append(Replica(name, f"http://127.0.0.1:{port}", process))
        deadline = time.monotonic() + START_TIMEOUT
        for replica in started:
            _wait_ready(replica, deadline)
        yield started


def _kill(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
    process.wait(timeout=20)


def seed(redis_url: str, sessions: int) -> dict[str, str]:
    """``sessions`` users signed in to the public client on ``redis_url``: subject -> refresh token."""
    command = [*SCRIPT, "seed", redis_url, PUBLIC, str(sessions)]
    done = subprocess.run(command, cwd=TESTS, capture_output=True, check=True, timeout=120)
    issued: dict[str, str] = json.loads(done.stdout)
    return issued


# -- what clients do --------------------------------------------------------------------------------


async def register(http: httpx2.AsyncClient, base: str) -> str:
    """A native public client registered at ``base`` (RFC 7591); its ``client_id``."""
    body = {
        "client_name": "Replica Test Client",
        "redirect_uris": [REDIRECT],
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "application_type": "native",
    }
    response = await http.post(base + "/register", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["client_id"])


async def authorize(
    http: httpx2.AsyncClient, start: str, sign_in_at: str, consent_at: str, client_id: str, challenge: str
) -> str:
    """Alice's browser authorizes ``client_id``: each page posted to the replica named; the code.

    The authorization request goes to ``start``, the sign-in form (unless the browser is
    signed in already) to ``sign_in_at``, the consent page is shown and answered by
    ``consent_at``: what a load balancer without sticky sessions does to a browser.
    """
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "state": "replica-state",
        "scope": "notes:read notes:write",
        "resource": PUBLIC + "/mcp",
    }
    consent = await http.get(start + "/authorize?" + urlencode(params))
    assert consent.status_code == 200, consent.text
    form = only_form(consent)
    if "password" in form.fields:  # not signed in yet on this browser
        values = {**form.fields, "username": "alice", "password": PASSWORDS["alice"]}
        signed_in = await http.post(sign_in_at + form.action, data=values)
        assert signed_in.status_code == 303, signed_in.text
        consent = await http.get(consent_at + signed_in.headers["location"])
        assert consent.status_code == 200, consent.text
    form = only_form(consent)
    approved = await http.post(consent_at + form.action, data={**form.fields, "decision": "approve"})
    query = callback_query(approved)
    assert query["iss"] == ISSUER
    assert query["state"] == "replica-state"
    return query["code"]


async def redeem(http: httpx2.AsyncClient, base: str, client_id: str, code: str, verifier: str) -> httpx2.Response:
    """The answer of the token endpoint at ``base`` to the authorization code grant."""
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "code_verifier": verifier,
        "redirect_uri": REDIRECT,
        "client_id": client_id,
    }
    return await http.post(base + "/token", data=data)


async def sign_in_across(http: httpx2.AsyncClient, first: str, second: str, client_id: str) -> dict[str, Any]:
    """Alice's tokens for ``client_id``: authorized on ``second`` (sign-in on ``first``), redeemed on ``first``."""
    verifier, challenge = pkce_pair()
    code = await authorize(http, second, first, second, client_id, challenge)
    response = await redeem(http, first, client_id, code, verifier)
    assert response.status_code == 200, response.text
    tokens: dict[str, Any] = response.json()
    return tokens


async def call_tool(http: httpx2.AsyncClient, base: str, token: str, name: str = "whoami") -> httpx2.Response:
    """The answer of the MCP endpoint at ``base`` to ``tools/call`` of ``name`` with the bearer ``token``."""
    headers = {**MCP_HEADERS, "Authorization": f"Bearer {token}"}
    return await http.post(base + "/mcp", json=rpc("tools/call", {"name": name, "arguments": {}}), headers=headers)


async def eventually(condition: Callable[[], Awaitable[bool]], within: float, what: str) -> None:
    """Poll ``condition`` until it holds; fail when it has not within ``within`` seconds.

    A condition wait with a generous deadline, not a timing assertion: the deadline only
    bounds how long a broken server keeps the test waiting.
    """
    deadline = time.monotonic() + within
    while not await condition():
        assert time.monotonic() < deadline, f"not within {within} s: {what}"
        await asyncio.sleep(0.02)  # polling a condition, not waiting for an event


def claims(access_token: str) -> dict[str, Any]:
    """The claims of a JWT, unverified (the replicas verify it)."""
    payload = access_token.split(".")[1]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return decoded


async def listening(http: httpx2.AsyncClient, started: Sequence[Replica], redis_url: str) -> None:
    """Return once every replica applies the revocations published by others.

    A replica subscribes when it first verifies a token, and once subscribed forgets what
    it cached before (a revocation may have been published before it listened). Here each
    replica verifies a token, the token's grant is revoked from this process, and each
    replica refuses the token: its subscription is live, and later cache entries stay.
    """
    tokens = await sign_in_across(http, started[0].base, started[-1].base, "public-client")
    for replica in started:
        response = await call_tool(http, replica.base, tokens["access_token"])
        assert response.status_code == 200, f"replica {replica.name}: {response.status_code} {response.text}"
    server = authorization_server(redis_url, PUBLIC)
    try:
        await server.revoke_grant(claims(tokens["access_token"])["gid"])
    finally:
        await server.store.aclose()
    for replica in started:

        async def refused(replica: Replica = replica) -> bool:
            return (await call_tool(http, replica.base, tokens["access_token"])).status_code == 401

        await eventually(refused, 10.0, f"replica {replica.name} hears revocations")
