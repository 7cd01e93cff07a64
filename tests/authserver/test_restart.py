"""A server killed while refreshes are in flight, restarted minutes later, signs nobody out.

The authorization server runs in a process of its own (``support/restart_server.py``) on a SQLite
file. Three hundred users refresh at once; once fifty answers are in, the server is killed
with SIGKILL, so some rotations are committed whose answers never left (should a kill catch
none, the storm is repeated, a few times at most). It comes back with its clock minutes
ahead, and every client retries with the refresh token it last received: the old one when
its answer was lost."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx2

from bastion.authserver._grants.refresh_token import REFRESH_NAMESPACE
from bastion.authserver._models import hash_secret
from bastion.storage import SQLiteStore

from support.authserver import refresh
from support.notes import MCP_HEADERS, rpc

#: Run as ``python -m support.restart_server`` from the tests folder, so it imports the shared helpers.
TESTS = Path(__file__).parents[1]
SCRIPT = ["-m", "support.restart_server"]
SESSIONS = 300
#: The server is killed once this many answers were received.
KILL_AFTER = 50
#: At most this many kills to catch a rotation committed whose answer was lost.
STORMS = 5
#: How far ahead the restarted server's clock runs: well past any grace period counted in seconds.
LATER = 150.0


@dataclass
class Session:
    """One user's client: the tokens it last received."""

    subject: str
    refresh_token: str
    access_token: str | None = None

    def receive(self, response: httpx2.Response) -> dict[str, Any]:
        assert response.status_code == 200, f"{self.subject} was signed out: {response.text}"
        body: dict[str, Any] = response.json()
        self.refresh_token = body["refresh_token"]
        self.access_token = body["access_token"]
        return body


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def server_process(db: Path, port: int, offset: float, log: IO[bytes]) -> Iterator[subprocess.Popen[bytes]]:
    """``support/restart_server.py serve`` in a child process; killed at the end if still running."""
    command = [sys.executable, *SCRIPT, "serve", str(db), str(port), str(offset)]
    process = subprocess.Popen(command, cwd=TESTS, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=20)


async def wait_ready(http: httpx2.AsyncClient, base: str, process: subprocess.Popen[bytes]) -> None:
    """Poll the metadata document until the server answers (bounded)."""
    for _ in range(600):
        assert process.poll() is None, "the server exited"
        try:
            if (await http.get(base + "/.well-known/oauth-authorization-server")).status_code == 200:
                return
        except httpx2.TransportError:
            pass
        await asyncio.sleep(0.05)
    raise AssertionError("the server did not start")


def seed(db: Path, port: int) -> list[Session]:
    command = [sys.executable, *SCRIPT, "seed", str(db), str(port), str(SESSIONS)]
    done = subprocess.run(command, cwd=TESTS, capture_output=True, check=True, timeout=120)
    return [Session(subject, token) for subject, token in json.loads(done.stdout).items()]


async def committed_but_lost(db: Path, lost: list[Session]) -> int:
    """How many of the lost answers were of rotations the store had committed."""
    async with SQLiteStore(db) as store:
        count = 0
        for session in lost:
            raw = await store.get(REFRESH_NAMESPACE, hash_secret(session.refresh_token))
            count += raw is not None and json.loads(raw)["state"] == "rotated"
        return count


async def whoami(http: httpx2.AsyncClient, base: str, session: Session) -> str:
    """The subject the MCP endpoint sees for the session's newest access token."""
    headers = {**MCP_HEADERS, "Authorization": f"Bearer {session.access_token}"}
    response = await http.post(
        base + "/mcp", json=rpc("tools/call", {"name": "whoami", "arguments": {}}), headers=headers
    )
    assert response.status_code == 200, f"{session.subject}: {response.status_code} {response.text}"
    return str(response.json()["result"]["structuredContent"]["subject"])


async def storm(
    http: httpx2.AsyncClient, base: str, sessions: list[Session], process: subprocess.Popen[bytes]
) -> list[Session]:
    """Every session refreshes at once; the server is killed once ``KILL_AFTER`` answers are in.

    Returns the sessions whose answer was lost. Every answer that did arrive is a success.
    """
    # One open connection per session first, so that the refreshes leave together.
    await asyncio.gather(*(http.get(base + "/.well-known/oauth-authorization-server") for _ in sessions))
    received = 0

    async def one(session: Session) -> bool:
        nonlocal received
        try:
            response = await refresh(http, base, session.refresh_token)
        except httpx2.TransportError:
            return False
        session.receive(response)
        received += 1
        if received == KILL_AFTER:
            process.kill()  # SIGKILL: no shutdown, no answer for what is in flight
        return True

    answered = await asyncio.gather(*(one(session) for session in sessions))
    await asyncio.to_thread(process.wait, 20)
    return [session for session, ok in zip(sessions, answered, strict=True) if not ok]


async def test_a_server_killed_during_refreshes_and_restarted_later_signs_nobody_out(tmp_path: Path) -> None:
    db = tmp_path / "auth.db"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    sessions = seed(db, port)
    limits = httpx2.Limits(max_connections=SESSIONS, max_keepalive_connections=SESSIONS, keepalive_expiry=60)
    with (tmp_path / "server.log").open("wb") as log:
        async with httpx2.AsyncClient(limits=limits, timeout=60) as http:
            # Until the kill catches a rotation committed whose answer never left (almost always the first time).
            replayed = 0
            for _ in range(STORMS):
                with server_process(db, port, 0.0, log) as process:
                    await wait_ready(http, base, process)
                    lost = await storm(http, base, sessions, process)
                replayed = await committed_but_lost(db, lost)
                if replayed:
                    break
            assert replayed > 0, "no kill landed between a commit and its answer"

            with server_process(db, port, LATER, log) as process:
                await wait_ready(http, base, process)
                retried = await asyncio.gather(*(refresh(http, base, session.refresh_token) for session in sessions))
                signed_out = [response.text for response in retried if response.status_code != 200]
                assert not signed_out, f"{len(signed_out)} of {SESSIONS} sessions signed out: {signed_out[0]}"
                bodies = [session.receive(response) for session, response in zip(sessions, retried, strict=True)]
                # A committed rotation gives back its pair, its expires_in counted down across the restart.
                assert sum(body["expires_in"] <= 3600 - LATER for body in bodies) == replayed
                subjects = await asyncio.gather(*(whoami(http, base, session) for session in sessions))
                assert subjects == [session.subject for session in sessions]
                again = await asyncio.gather(*(refresh(http, base, session.refresh_token) for session in sessions))
                for session, response in zip(sessions, again, strict=True):
                    session.receive(response)
