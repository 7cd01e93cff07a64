"""The authorization server under load, on SQLite or Redis, one or two replicas: flows, refreshes, token latency.

Usage: ``python bench/bench_authserver.py [--clients 1000 1000000] [--seconds 10] [--workers 8]
[--store sqlite redis] [--replicas 1 2]``

For each client count and each store (interleaved: every store at one count, then the
next count), a fresh store is filled with that many registered public clients, written
straight into it, bypassing the API, for speed: rows into SQLite's table, or hashes of
the layout ``RedisStore`` writes, pipelined, into a ``redis-server`` the bench starts on
a free loopback port without persistence. Then ``--replicas`` uvicorn processes serving
the demo notes server and its authorization server (``bench/_as_server.py``, every
authorization approved without a page) are started on that store; two replicas share
the store and one public URL, and the load generator sends each request to the next
replica in turn, so a flow may register on one and redeem its code on the other. A
load generator of ``--workers`` concurrent asyncio tasks then measures, each for
``--seconds`` after a warm-up:

- DCR flows: ``POST /register``, ``GET /authorize`` (302 with the code), ``POST /token``
  (authorization code with PKCE S256 and ``resource``);
- CIMD flows with a new metadata document URL each time (each one fetched over https
  from a second local server), then cycling over ``--cimd-urls`` of those URLs (cached);
- flows of pre-filled clients picked at random (``/authorize`` and ``/token``): the
  token endpoint latency with few and with many clients;
- refreshes: ``--refresh-tokens`` refresh token chains, each response's refresh token
  used for the next request.

The servers (and redis-server) are pinned to core 0 and the load generator to core 1
when the machine has two cores. Latencies are measured by the load generator: request
sent to response read.

On Redis, the bench also reports the Redis work of each operation: the commands Redis
ran per operation over each measured phase (``INFO commandstats`` deltas, the commands
inside the store's Lua scripts included), and the round trips, counted with ``MONITOR``
over a few operations made one at a time after the phases, with an MCP request carrying
a token first seen and one carrying a token already seen (the verification hot path).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime
import hashlib
import ipaddress
import itertools
import os
import random
import re
import secrets
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import IO
from urllib.parse import parse_qs, urlsplit

import httpx2
import redis
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from bastion.authserver._clients import CLIENT_NAMESPACE
from bastion.authserver._models import Client
from bastion.storage import RedisStore, SQLiteStore
from bastion.storage import _redis_scripts as scripts

HERE = Path(__file__).parent
_TWO_CORES = shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2
PIN_SERVER = ["taskset", "-c", "0"] if _TWO_CORES else []
PIN_CLIENT = ["taskset", "-c", "1"] if _TWO_CORES else []
REDIRECT_URI = "http://127.0.0.1/callback"
SCOPE = "notes:read notes:write"
BATCH = 100_000
REDIS_BATCH = 10_000
REDIS_PREFIX = "bench:"
#: Operations of each kind made one at a time under MONITOR to count their round trips.
TRACED = 10


# -- pre-filled clients ------------------------------------------------------------------------


def client_id(n: int) -> str:
    """The id of pre-filled client ``n``: 32 url-safe characters, like a registered client's."""
    digest = hashlib.sha256(f"bench-client-{n}".encode()).digest()
    return base64.urlsafe_b64encode(digest[:24]).decode()


def client_record() -> tuple[bytes, bytes]:
    """The stored value of a pre-filled client, split where its client id goes."""
    marker = "@@client-id@@"
    template = Client(
        client_id=marker,
        client_name="Bench client",
        redirect_uris=(REDIRECT_URI,),
        application_type="native",
        client_id_issued_at=int(time.time()),
        kind="registered",
    ).to_json()
    head, tail = template.split(marker.encode())
    return head, tail


def prefill(path: Path, count: int) -> float:
    """Create the store's file and write ``count`` registered public clients into it; the seconds taken."""
    started = time.perf_counter()
    asyncio.run(SQLiteStore(path).aclose())  # the store's own schema
    head, tail = client_record()
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA synchronous = OFF")
        sql = "INSERT INTO records (namespace, key, value, expires_at, idx) VALUES ('client', ?, ?, NULL, NULL)"
        for start in range(0, count, BATCH):
            ids = [client_id(n) for n in range(start, min(count, start + BATCH))]
            with conn:
                conn.executemany(sql, [(cid, head + cid.encode() + tail) for cid in ids])
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return time.perf_counter() - started


def prefill_redis(client: redis.Redis, count: int) -> float:
    """Write ``count`` registered public clients into Redis as ``RedisStore`` does; the seconds taken.

    A record is a hash at ``{prefix}r:{len(namespace)}:{namespace}:{key}`` with the value
    in ``v`` and the expiry in ``e`` (``""``: none); a client has no secondary key.
    """
    started = time.perf_counter()
    head, tail = client_record()
    space = f"{REDIS_PREFIX}r:{len(CLIENT_NAMESPACE)}:{CLIENT_NAMESPACE}:".encode()
    for start in range(0, count, REDIS_BATCH):
        pipe = client.pipeline(transaction=False)
        for n in range(start, min(count, start + REDIS_BATCH)):
            cid = client_id(n).encode()
            pipe.hset(space + cid, mapping={"v": head + cid + tail, "e": ""})
        pipe.execute()
    return time.perf_counter() - started


# -- TLS for the metadata documents --------------------------------------------------------------


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_tls(directory: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a certificate it signed for 127.0.0.1: ``(cert, key, ca)`` PEM files."""
    now = datetime.datetime.now(datetime.UTC)
    valid = (now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=1))
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("bench CA"))
        .issuer_name(_name("bench CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid[0])
        .not_valid_after(valid[1])
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(_name("bench CA"))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid[0])
        .not_valid_after(valid[1])
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    files = directory / "cert.pem", directory / "key.pem", directory / "ca.pem"
    files[0].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pkcs8 = serialization.PrivateFormat.PKCS8
    files[1].write_bytes(key.private_bytes(serialization.Encoding.PEM, pkcs8, serialization.NoEncryption()))
    files[2].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    return files


# -- processes -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running(command: list[str], ready_url: str, verify: str | bool = True) -> Iterator[None]:
    """Run a server process until the block ends, once ``ready_url`` answers 200."""
    process = subprocess.Popen(command)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the server exited with status {process.returncode}")
            try:
                if httpx2.get(ready_url, verify=verify).status_code == 200:
                    break
            except httpx2.TransportError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.1)  # polling a starting process
        yield
    finally:
        process.terminate()
        process.wait(timeout=10)


@contextmanager
def redis_server(directory: Path) -> Iterator[redis.Redis]:
    """A ``redis-server`` on a free loopback port, pinned with the servers, nothing persisted; a client of it."""
    port = free_port()
    command = [*PIN_SERVER, "redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory)]
    command += ["--save", "", "--appendonly", "no", "--loglevel", "warning"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    client = redis.Redis(host="127.0.0.1", port=port)
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"redis-server exited with status {process.returncode}")
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.05)  # polling a starting process
        yield client
    finally:
        client.close()
        process.terminate()
        process.wait(timeout=10)


@contextmanager
def replicas(count: int, store: list[str], ca: Path) -> Iterator[list[str]]:
    """``count`` authorization server processes on ``store``'s arguments, one public URL; their base URLs."""
    ports = [free_port() for _ in range(count)]
    bases = [f"http://127.0.0.1:{port}" for port in ports]
    with ExitStack() as stack:
        for port, base in zip(ports, bases, strict=True):
            command = [*PIN_SERVER, sys.executable, str(HERE / "_as_server.py"), "--port", str(port)]
            command += [*store, "--cimd-ca", str(ca)]
            if count > 1:
                command += ["--public-url", bases[0]]
            stack.enter_context(running(command, base + "/.well-known/oauth-authorization-server"))
        yield bases


# -- the flows -------------------------------------------------------------------------------------


@dataclass
class Phase:
    """What one measured phase saw: completed operations and the latencies of its token requests."""

    seconds: float = 0.0
    done: int = 0
    token_ms: list[float] = field(default_factory=list)
    authorize_ms: list[float] = field(default_factory=list)
    note: str = ""
    client_cpu: float = 0.0
    #: What Redis did during the phase (Redis only).
    redis: RedisWork | None = None

    @property
    def rate(self) -> float:
        return self.done / self.seconds


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def expect(response: httpx2.Response, status: int) -> None:
    if response.status_code != status:
        raise RuntimeError(
            f"{response.request.method} {response.request.url.path}: {response.status_code} {response.text[:300]}"
        )


async def timed(phase: Phase | None, into: str, request: Awaitable[httpx2.Response]) -> httpx2.Response:
    started = time.perf_counter()
    response = await request
    if phase is not None:
        getattr(phase, into).append((time.perf_counter() - started) * 1000)
    return response


class Flows:
    """The requests of one server, sent through one HTTP client, each to the next of its replicas."""

    def __init__(self, http: httpx2.AsyncClient, bases: list[str]) -> None:
        self.http = http
        self.resource = bases[0] + "/mcp"
        self._bases = itertools.cycle(bases)

    def url(self, path: str) -> str:
        """``path`` on the next replica (round robin)."""
        return next(self._bases) + path

    async def code_flow(self, client: str, phase: Phase | None) -> dict[str, object]:
        """Authorize ``client`` (approved at once) and redeem the code; the token response."""
        verifier, challenge = pkce_pair()
        state = secrets.token_urlsafe(8)
        params = {
            "response_type": "code",
            "client_id": client,
            "redirect_uri": REDIRECT_URI,
            "scope": SCOPE,
            "state": state,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "resource": self.resource,
        }
        response = await timed(phase, "authorize_ms", self.http.get(self.url("/authorize"), params=params))
        expect(response, 302)
        query = parse_qs(urlsplit(response.headers["location"]).query)
        if query.get("state") != [state] or "code" not in query:
            raise RuntimeError(f"/authorize redirected without a code: {response.headers['location'][:300]}")
        data = {
            "grant_type": "authorization_code",
            "code": query["code"][0],
            "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier,
            "client_id": client,
            "resource": self.resource,
        }
        response = await timed(phase, "token_ms", self.http.post(self.url("/token"), data=data))
        expect(response, 200)
        body: dict[str, object] = response.json()
        return body

    async def register(self) -> str:
        metadata = {
            "client_name": "Bench client",
            "redirect_uris": [REDIRECT_URI],
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
        }
        response = await self.http.post(self.url("/register"), json=metadata)
        expect(response, 201)
        return str(response.json()["client_id"])

    async def refresh(self, client: str, token: str, phase: Phase | None) -> str:
        data = {"grant_type": "refresh_token", "refresh_token": token, "client_id": client}
        response = await timed(phase, "token_ms", self.http.post(self.url("/token"), data=data))
        expect(response, 200)
        return str(response.json()["refresh_token"])

    async def call_tool(self, token: str) -> None:
        """An MCP ``tools/call`` of ``whoami`` with ``token``."""
        body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "whoami", "arguments": {}}}
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json, text/event-stream"}
        response = await self.http.post(self.url("/mcp"), json=body, headers=headers)
        expect(response, 200)
        if "error" in response.json() or response.json()["result"].get("isError"):
            raise RuntimeError(f"tools/call failed: {response.text[:300]}")


Operation = Callable[[int, Phase | None], Awaitable[None]]
#: What Redis has done so far.
Probe = Callable[[], "RedisWork"]


async def measure(
    operation: Operation, workers: int, seconds: float, warmup: float, probe: Probe | None = None
) -> Phase:
    """Run ``operation`` in ``workers`` concurrent loops: ``warmup`` seconds unrecorded, then ``seconds``.

    With ``probe``, the phase also records what Redis did while it was measured.
    """

    async def loop(worker: int, until: float, phase: Phase | None) -> int:
        done = 0
        while time.perf_counter() < until:
            await operation(worker, phase)
            done += 1
        return done

    if warmup > 0:
        until = time.perf_counter() + warmup
        await asyncio.gather(*(loop(w, until, None) for w in range(workers)))
    phase = Phase()
    before = probe() if probe is not None else None
    cpu = time.process_time()
    started = time.perf_counter()
    until = started + seconds
    counts = await asyncio.gather(*(loop(w, until, phase) for w in range(workers)))
    phase.seconds = time.perf_counter() - started
    phase.client_cpu = (time.process_time() - cpu) / phase.seconds
    phase.done = sum(counts)
    if probe is not None and before is not None:
        phase.redis = probe() - before
    return phase


async def run_server_phases(
    bases: list[str], documents: str, count: int, args: argparse.Namespace, redis_client: redis.Redis | None = None
) -> tuple[dict[str, Phase], dict[str, Trace]]:
    """Every phase against one server (its replicas); on Redis, the round trips of each kind of operation too."""
    probe = None if redis_client is None else partial(RedisWork.of, redis_client)
    limits = httpx2.Limits(max_connections=args.workers, max_keepalive_connections=args.workers)
    async with httpx2.AsyncClient(timeout=60, limits=limits) as http:
        flows = Flows(http, bases)
        phases: dict[str, Phase] = {}
        rng = random.Random(count)

        async def dcr(worker: int, phase: Phase | None) -> None:
            await flows.code_flow(await flows.register(), phase)

        phases["dcr"] = await measure(dcr, args.workers, args.seconds, args.warmup, probe)

        fresh = itertools.count()

        async def cimd_new(worker: int, phase: Phase | None) -> None:
            await flows.code_flow(f"{documents}/clients/{next(fresh)}", phase)

        phases["cimd_new"] = await measure(cimd_new, args.workers, args.seconds, args.warmup, probe)
        known = min(args.cimd_urls, next(fresh))
        cycle = itertools.cycle(range(known))

        async def cimd_cached(worker: int, phase: Phase | None) -> None:
            await flows.code_flow(f"{documents}/clients/{next(cycle)}", phase)

        phases["cimd_cached"] = await measure(cimd_cached, args.workers, args.seconds, args.warmup, probe)
        phases["cimd_cached"].note = f"{known} URLs, cycled"

        async def prefilled(worker: int, phase: Phase | None) -> None:
            await flows.code_flow(client_id(rng.randrange(count)), phase)

        phases["prefilled"] = await measure(prefilled, args.workers, args.seconds, args.warmup, probe)

        chains: list[list[str]] = []
        for _ in range(args.refresh_tokens):
            client = client_id(rng.randrange(count))
            chains.append([client, str((await flows.code_flow(client, None))["refresh_token"])])
        turns = [itertools.cycle(chains[w :: args.workers]) for w in range(args.workers)]

        async def refresh(worker: int, phase: Phase | None) -> None:
            chain = next(turns[worker])
            chain[1] = await flows.refresh(chain[0], chain[1], phase)

        phases["refresh"] = await measure(refresh, args.workers, args.seconds, args.warmup, probe)
        traces = {} if redis_client is None else await trace_round_trips(flows, documents, count, redis_client)
        return phases, traces


# -- Redis's work per operation --------------------------------------------------------------------


@dataclass
class RedisWork:
    """The commands Redis ran, by name (those run by scripts included), and the CPU seconds it used."""

    commands: Counter[str]
    cpu: float

    @classmethod
    def of(cls, client: redis.Redis) -> RedisWork:
        """What ``client``'s Redis has done since it started (``INFO commandstats`` and ``cpu``), INFO left out."""
        stats = client.info("commandstats")
        calls = Counter({name.removeprefix("cmdstat_"): int(stat["calls"]) for name, stat in stats.items()})
        del calls["info"]
        cpu = client.info("cpu")
        return cls(calls, float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]))

    def __sub__(self, earlier: RedisWork) -> RedisWork:
        return RedisWork(self.commands - earlier.commands, self.cpu - earlier.cpu)


async def round_trip_us(url: str, count: int, times: int = 2000) -> tuple[float, float]:
    """Median µs of a ``RedisStore.get`` of a client and of a ``RedisStore.put`` (one script), one at a time."""
    store = RedisStore(url)
    try:
        gets, puts = [], []
        for n in range(times):
            started = time.perf_counter()
            await store.get(CLIENT_NAMESPACE, client_id(n % count))
            gets.append(time.perf_counter() - started)
            started = time.perf_counter()
            await store.put("bench-probe", str(n), b"x" * 200, ttl=60)
            puts.append(time.perf_counter() - started)
        return statistics.median(gets) * 1e6, statistics.median(puts) * 1e6
    finally:
        await store.aclose()


@dataclass
class Trace:
    """The commands MONITOR saw for ``done`` operations of one kind made one at a time."""

    done: int
    sent: Counter[str] = field(default_factory=Counter)  # by the replicas: one round trip each
    scripted: Counter[str] = field(default_factory=Counter)  # run inside the store's Lua scripts
    #: The store operations behind the round trips, as ``namespace operation`` (``client get``).
    operations: Counter[str] = field(default_factory=Counter)


# A MONITOR line: `1700000000.123456 [0 127.0.0.1:50000] "EVALSHA" "..."`, or `[0 lua]` for a script's command.
MONITOR_LINE = re.compile(r"^\d+\.\d+ \[\d+ (?P<source>[^\]]+)\] (?P<args>.*)$")
MONITOR_ARG = re.compile(r'"((?:[^"\\]|\\.)*)"')
MARK = "bench-mark"
#: The store's operation of each script, by the SHA-1 that EVALSHA names it with.
SCRIPTS = {hashlib.sha1(getattr(scripts, name).encode()).hexdigest(): name.lower() for name in scripts.__all__}
#: A record's or index set's key: the namespace's length, then the namespace.
STORE_KEY = re.compile(re.escape(REDIS_PREFIX) + r"[ri]:(?P<length>\d+):(?P<rest>.*)$", re.DOTALL)


def store_operation(command: str, args: list[str]) -> str:
    """``namespace operation`` for a command RedisStore sends: a script or the ``HMGET`` of a get."""
    if command == "evalsha" and len(args) >= 3:
        operation, key = SCRIPTS.get(args[0], "script"), args[2]
    elif command == "hmget" and args:
        operation, key = "get", args[0]
    else:
        return command
    found = STORE_KEY.match(key)
    namespace = found["rest"][: int(found["length"])] if found else "?"
    return f"{namespace} {operation}"


async def trace_round_trips(flows: Flows, documents: str, count: int, client: redis.Redis) -> dict[str, Trace]:
    """Make ``TRACED`` operations of each kind one at a time under ``MONITOR``; what Redis saw for each kind.

    Markers (``ECHO``) sent between the kinds split the log. ``mcp_first`` is an MCP request
    with a token its replica has not seen; ``mcp_seen`` one with a token every replica has.
    """
    rng = random.Random(-count)
    chains = []
    for _ in range(TRACED):
        client_id_ = client_id(rng.randrange(count))
        chains.append([client_id_, str((await flows.code_flow(client_id_, None))["refresh_token"])])
    fresh = [str((await flows.code_flow(client_id(rng.randrange(count)), None))["access_token"]) for _ in range(TRACED)]
    seen = str((await flows.code_flow(client_id(rng.randrange(count)), None))["access_token"])
    for _ in range(TRACED):
        await flows.call_tool(seen)  # on every replica, several times
    new_urls = [f"{documents}/clients/{10**9 + n}" for n in range(TRACED)]

    async def refresh(n: int) -> None:
        chains[n][1] = await flows.refresh(chains[n][0], chains[n][1], None)

    async def dcr(n: int) -> None:
        await flows.code_flow(await flows.register(), None)

    async def cimd_new(n: int) -> None:
        await flows.code_flow(new_urls[n], None)

    async def cimd_cached(n: int) -> None:
        await flows.code_flow(new_urls[n], None)  # fetched by cimd_new just before

    async def prefilled(n: int) -> None:
        await flows.code_flow(client_id(rng.randrange(count)), None)

    async def mcp_first(n: int) -> None:
        await flows.call_tool(fresh[n])

    async def mcp_seen(n: int) -> None:
        await flows.call_tool(seen)

    kinds: dict[str, Callable[[int], Awaitable[None]]] = {
        "dcr": dcr,
        "cimd_new": cimd_new,
        "cimd_cached": cimd_cached,
        "prefilled": prefilled,
        "refresh": refresh,
        "mcp_first": mcp_first,
        "mcp_seen": mcp_seen,
    }
    with tempfile.TemporaryFile() as log:
        kwargs = client.connection_pool.connection_kwargs
        command = ["redis-cli", "-h", str(kwargs["host"]), "-p", str(kwargs["port"]), "monitor"]
        monitor = await asyncio.create_subprocess_exec(*command, stdout=log)
        try:
            await wait_for_line(log, b"OK")
            for name, operation in kinds.items():
                client.echo(f"{MARK} {name}")
                for n in range(TRACED):
                    await operation(n)
            client.echo(f"{MARK} end")
            await wait_for_line(log, f'"{MARK} end"'.encode())
        finally:
            monitor.terminate()
            await monitor.wait()
        log.seek(0)
        return parse_monitor(log.read().decode("utf-8", "replace"))


async def wait_for_line(log: IO[bytes], needle: bytes) -> None:
    """Wait until the MONITOR log being written holds ``needle``."""
    deadline = time.monotonic() + 10
    while True:
        log.seek(0)
        if needle in log.read():
            return
        if time.monotonic() > deadline:
            raise RuntimeError("MONITOR did not answer")
        await asyncio.sleep(0.02)  # polling a file another process writes


def parse_monitor(text: str) -> dict[str, Trace]:
    """The commands of each marked section of a MONITOR log."""
    traces: dict[str, Trace] = {}
    current: Trace | None = None
    for line in text.splitlines():
        match = MONITOR_LINE.match(line)
        if match is None:
            continue
        command, *args = MONITOR_ARG.findall(match["args"]) or [""]
        name = command.lower()
        if name == "echo" and args and args[0].startswith(MARK):
            kind = args[0].removeprefix(MARK).strip()
            current = None if kind == "end" else traces.setdefault(kind, Trace(done=TRACED))
        elif current is not None and match["source"].endswith("lua"):
            current.scripted[name] += 1
        elif current is not None:
            current.sent[name] += 1
            current.operations[store_operation(name, args)] += 1
    return traces


# -- reporting -----------------------------------------------------------------------------------


def percentiles(values: list[float]) -> tuple[float, float, float]:
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return cuts[49], cuts[89], cuts[98]


LABELS = {
    "dcr": "DCR flows (register, authorize, token)",
    "cimd_new": "CIMD flows, new URL each (fetch)",
    "cimd_cached": "CIMD flows, cached documents",
    "prefilled": "flows of pre-filled clients",
    "refresh": "refreshes",
}


@dataclass(frozen=True)
class Setup:
    """A store and a number of replicas sharing it."""

    store: str
    replicas: int

    def __str__(self) -> str:
        return f"{self.store}, {self.replicas} replica{'s' if self.replicas > 1 else ''}"


TRACE_LABELS = {
    **LABELS,
    "mcp_first": "MCP tools/call, token first seen",
    "mcp_seen": "MCP tools/call, token seen before",
}


def report(count: int, setup: Setup, filled: str, phases: dict[str, Phase], traces: dict[str, Trace]) -> None:
    print(f"\n{count:,} pre-filled clients, {setup} ({filled})")
    width = 40 + len(" · redis, 2 replicas")
    heads = f"{'per s':>8} {'token p50':>10} {'p90':>8} {'p99':>8} {'authorize p50':>14} {'load gen CPU':>13}"
    print(f"  {'':{width}} {heads}")
    for name, phase in phases.items():
        p50, p90, p99 = percentiles(phase.token_ms)
        authorize = f"{statistics.median(phase.authorize_ms):11.1f} ms" if phase.authorize_ms else ""
        figures = f"{phase.rate:8.1f} {p50:7.1f} ms {p90:5.1f} ms {p99:5.1f} ms {authorize:>14}"
        line = f"  {LABELS[name] + ' · ' + str(setup):{width}} {figures} {phase.client_cpu:12.0%}"
        print(line + (f"   ({phase.note})" if phase.note else ""))
    if traces:
        report_redis_work(setup, phases, traces)


def report_redis_work(setup: Setup, phases: dict[str, Phase], traces: dict[str, Trace]) -> None:
    """Redis's commands per operation: over the measured phase, and as round trips of single operations."""
    print(f"  Redis per operation, {setup}: commands run and Redis's CPU in the measured phase (INFO")
    print(f"  commandstats, cpu); with {TRACED} operations one at a time (MONITOR), round trips by command and")
    print("  commands run inside the store's scripts")
    width = 40
    heads = f"{'commands':>9} {'Redis CPU':>10} {'round trips':>12} {'in scripts':>11}   round trips by command"
    print(f"  {'':{width}} {heads}")
    for name, trace in traces.items():
        phase = phases.get(name)
        measured = " " * 20
        if phase is not None and phase.redis is not None and phase.done:
            commands = sum(phase.redis.commands.values()) / phase.done
            measured = f"{commands:9.1f} {phase.redis.cpu / phase.done * 1e6:7.0f} µs"
        sent, scripted = sum(trace.sent.values()) / trace.done, sum(trace.scripted.values()) / trace.done
        by_command = ", ".join(f"{command.upper()} {n / trace.done:g}" for command, n in trace.sent.most_common())
        print(f"  {TRACE_LABELS[name]:{width}} {measured} {sent:12.1f} {scripted:11.1f}   {by_command or '-'}")
    print("  the store operations behind those round trips, per operation (namespace, operation):")
    for name, trace in traces.items():
        operations = ", ".join(f"{op} {n / trace.done:g}" for op, n in trace.operations.items())
        print(f"  {TRACE_LABELS[name]:{width}} {operations or '-'}")


def run_setup(
    setup: Setup, count: int, tmp: Path, ca: Path, documents: str, args: argparse.Namespace
) -> dict[str, Phase]:
    """Fill a fresh store with ``count`` clients, start the replicas on it, run every phase; report them."""
    if setup.store == "sqlite":
        db = Path(tmp, f"auth-{count}.db")
        fill_seconds = prefill(db, count)
        db_bytes = db.stat().st_size
        with replicas(setup.replicas, ["--db", str(db)], ca) as bases:
            phases, traces = asyncio.run(run_server_phases(bases, documents, count, args))
        report(count, setup, f"filled in {fill_seconds:.1f} s, file {db_bytes / 2**20:.0f} MiB", phases, traces)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        return phases
    with redis_server(tmp) as client:
        fill_seconds = prefill_redis(client, count)
        memory = int(client.info("memory")["used_memory"])
        url = f"redis://127.0.0.1:{client.connection_pool.connection_kwargs['port']}/0?prefix={REDIS_PREFIX}"
        with replicas(setup.replicas, ["--store", url], ca) as bases:
            phases, traces = asyncio.run(run_server_phases(bases, documents, count, args, client))
        get_us, put_us = asyncio.run(round_trip_us(url, count))
    report(count, setup, f"filled in {fill_seconds:.1f} s, Redis used_memory {memory / 2**20:.0f} MiB", phases, traces)
    print(f"  one RedisStore call from the load generator, median: get {get_us:.0f} µs, put (a script) {put_us:.0f} µs")
    return phases


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, nargs="+", default=[1000, 1_000_000])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--warmup", type=float, default=2)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--cimd-urls", type=int, default=1000)
    parser.add_argument("--refresh-tokens", type=int, default=50)
    parser.add_argument("--store", nargs="+", choices=["sqlite", "redis"], default=["sqlite"])
    parser.add_argument("--replicas", type=int, nargs="+", choices=[1, 2], default=[1])
    args = parser.parse_args()
    if _TWO_CORES:
        os.sched_setaffinity(0, {1})

    pinned = "servers and redis-server pinned to core 0, load generator to core 1"
    print(
        f"{args.workers} workers, {args.seconds:g} s per phase after {args.warmup:g} s warm-up, "
        + (pinned if _TWO_CORES else "nothing pinned")
    )
    setups = [Setup(store, n) for n in args.replicas for store in args.store]
    results: dict[Setup, dict[int, dict[str, Phase]]] = {setup: {} for setup in setups}
    with tempfile.TemporaryDirectory() as tmp:
        cert, key, ca = make_tls(Path(tmp))
        docs_port = free_port()
        documents = f"https://127.0.0.1:{docs_port}"
        docs_command = [*PIN_CLIENT, sys.executable, str(HERE / "_as_server.py"), "--port", str(docs_port)]
        docs_command += ["--documents", "--cert", str(cert), "--key", str(key)]
        with running(docs_command, documents + "/clients/0", verify=str(ca)):
            for count in args.clients:
                for setup in setups:
                    results[setup][count] = run_setup(setup, count, Path(tmp), ca, documents, args)

    for setup, by_count in results.items():
        if len(by_count) >= 2:
            few, many = min(by_count), max(by_count)
            print(f"\ntoken endpoint latency, {setup}, {many:,} clients / {few:,} clients (target <= 2):")
            for name in ("prefilled", "refresh", "dcr"):
                a, b = percentiles(by_count[few][name].token_ms), percentiles(by_count[many][name].token_ms)
                print(f"  {LABELS[name]:40} p50 {b[0] / a[0]:.2f}   p99 {b[2] / a[2]:.2f}")


if __name__ == "__main__":
    main()
