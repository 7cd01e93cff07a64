"""The authorization server under load, with the SQLite store: flows, refreshes, token latency.

Usage: ``python bench/bench_authserver.py [--clients 1000 1000000] [--seconds 10] [--workers 8]``

For each client count, a fresh SQLite file is filled with that many registered public
clients (written straight into the table, bypassing the API, for speed), then one
uvicorn process serving the demo notes server and its authorization server
(``bench/_as_server.py``, every authorization approved without a page) is started on
that file. A load generator of ``--workers`` concurrent asyncio tasks then measures,
each for ``--seconds`` after a warm-up:

- DCR flows: ``POST /register``, ``GET /authorize`` (302 with the code), ``POST /token``
  (authorization code with PKCE S256 and ``resource``);
- CIMD flows with a new metadata document URL each time (each one fetched over https
  from a second local server), then cycling over ``--cimd-urls`` of those URLs (cached);
- flows of pre-filled clients picked at random (``/authorize`` and ``/token``): the
  token endpoint latency with few and with many clients;
- refreshes: ``--refresh-tokens`` refresh token chains, each response's refresh token
  used for the next request.

The servers are pinned to core 0 and the load generator to core 1 when the machine has
two cores. Latencies are measured by the load generator: request sent to response read.
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
import secrets
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx2
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from bastion.authserver._models import Client
from bastion.storage import SQLiteStore

HERE = Path(__file__).parent
_TWO_CORES = shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2
PIN_SERVER = ["taskset", "-c", "0"] if _TWO_CORES else []
PIN_CLIENT = ["taskset", "-c", "1"] if _TWO_CORES else []
REDIRECT_URI = "http://127.0.0.1/callback"
SCOPE = "notes:read notes:write"
BATCH = 100_000


# -- pre-filled clients ------------------------------------------------------------------------


def client_id(n: int) -> str:
    """The id of pre-filled client ``n``: 32 url-safe characters, like a registered client's."""
    digest = hashlib.sha256(f"bench-client-{n}".encode()).digest()
    return base64.urlsafe_b64encode(digest[:24]).decode()


def prefill(path: Path, count: int) -> float:
    """Create the store's file and write ``count`` registered public clients into it; the seconds taken."""
    started = time.perf_counter()
    asyncio.run(SQLiteStore(path).aclose())  # the store's own schema
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
    """The requests of one server, sent through one HTTP client."""

    def __init__(self, http: httpx2.AsyncClient, base: str) -> None:
        self.http = http
        self.base = base
        self.resource = base + "/mcp"

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
        response = await timed(phase, "authorize_ms", self.http.get(self.base + "/authorize", params=params))
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
        response = await timed(phase, "token_ms", self.http.post(self.base + "/token", data=data))
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
        response = await self.http.post(self.base + "/register", json=metadata)
        expect(response, 201)
        return str(response.json()["client_id"])

    async def refresh(self, client: str, token: str, phase: Phase | None) -> str:
        data = {"grant_type": "refresh_token", "refresh_token": token, "client_id": client}
        response = await timed(phase, "token_ms", self.http.post(self.base + "/token", data=data))
        expect(response, 200)
        return str(response.json()["refresh_token"])


Operation = Callable[[int, Phase | None], Awaitable[None]]


async def measure(operation: Operation, workers: int, seconds: float, warmup: float) -> Phase:
    """Run ``operation`` in ``workers`` concurrent loops: ``warmup`` seconds unrecorded, then ``seconds``."""

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
    cpu = time.process_time()
    started = time.perf_counter()
    until = started + seconds
    counts = await asyncio.gather(*(loop(w, until, phase) for w in range(workers)))
    phase.seconds = time.perf_counter() - started
    phase.client_cpu = (time.process_time() - cpu) / phase.seconds
    phase.done = sum(counts)
    return phase


async def run_server_phases(base: str, documents: str, count: int, args: argparse.Namespace) -> dict[str, Phase]:
    """Every phase against one server."""
    limits = httpx2.Limits(max_connections=args.workers, max_keepalive_connections=args.workers)
    async with httpx2.AsyncClient(timeout=60, limits=limits) as http:
        flows = Flows(http, base)
        phases: dict[str, Phase] = {}
        rng = random.Random(count)

        async def dcr(worker: int, phase: Phase | None) -> None:
            await flows.code_flow(await flows.register(), phase)

        phases["dcr"] = await measure(dcr, args.workers, args.seconds, args.warmup)

        fresh = itertools.count()

        async def cimd_new(worker: int, phase: Phase | None) -> None:
            await flows.code_flow(f"{documents}/clients/{next(fresh)}", phase)

        phases["cimd_new"] = await measure(cimd_new, args.workers, args.seconds, args.warmup)
        known = min(args.cimd_urls, next(fresh))
        cycle = itertools.cycle(range(known))

        async def cimd_cached(worker: int, phase: Phase | None) -> None:
            await flows.code_flow(f"{documents}/clients/{next(cycle)}", phase)

        phases["cimd_cached"] = await measure(cimd_cached, args.workers, args.seconds, args.warmup)
        phases["cimd_cached"].note = f"{known} URLs, cycled"

        async def prefilled(worker: int, phase: Phase | None) -> None:
            await flows.code_flow(client_id(rng.randrange(count)), phase)

        phases["prefilled"] = await measure(prefilled, args.workers, args.seconds, args.warmup)

        chains: list[list[str]] = []
        for _ in range(args.refresh_tokens):
            client = client_id(rng.randrange(count))
            chains.append([client, str((await flows.code_flow(client, None))["refresh_token"])])
        turns = [itertools.cycle(chains[w :: args.workers]) for w in range(args.workers)]

        async def refresh(worker: int, phase: Phase | None) -> None:
            chain = next(turns[worker])
            chain[1] = await flows.refresh(chain[0], chain[1], phase)

        phases["refresh"] = await measure(refresh, args.workers, args.seconds, args.warmup)
        return phases


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


def report(count: int, fill_seconds: float, db_bytes: int, phases: dict[str, Phase]) -> None:
    print(f"\n{count:,} pre-filled clients (filled in {fill_seconds:.1f} s, file {db_bytes / 2**20:.0f} MiB)")
    print(f"  {'':40} {'per s':>8} {'token p50':>10} {'p90':>8} {'p99':>8} {'authorize p50':>14} {'load gen CPU':>13}")
    for name, phase in phases.items():
        p50, p90, p99 = percentiles(phase.token_ms)
        authorize = f"{statistics.median(phase.authorize_ms):11.1f} ms" if phase.authorize_ms else ""
        figures = f"{phase.rate:8.1f} {p50:7.1f} ms {p90:5.1f} ms {p99:5.1f} ms {authorize:>14}"
        line = f"  {LABELS[name]:40} {figures} {phase.client_cpu:12.0%}"
        print(line + (f"   ({phase.note})" if phase.note else ""))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, nargs="+", default=[1000, 1_000_000])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--warmup", type=float, default=2)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--cimd-urls", type=int, default=1000)
    parser.add_argument("--refresh-tokens", type=int, default=50)
    args = parser.parse_args()
    if _TWO_CORES:
        os.sched_setaffinity(0, {1})

    print(
        f"{args.workers} workers, {args.seconds:g} s per phase after {args.warmup:g} s warm-up, "
        + ("server pinned to core 0, load generator to core 1" if _TWO_CORES else "nothing pinned")
    )
    results: dict[int, dict[str, Phase]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        cert, key, ca = make_tls(Path(tmp))
        docs_port = free_port()
        documents = f"https://127.0.0.1:{docs_port}"
        docs_command = [*PIN_CLIENT, sys.executable, str(HERE / "_as_server.py"), "--port", str(docs_port)]
        docs_command += ["--documents", "--cert", str(cert), "--key", str(key)]
        with running(docs_command, documents + "/clients/0", verify=str(ca)):
            for count in args.clients:
                db = Path(tmp, f"auth-{count}.db")
                fill_seconds = prefill(db, count)
                db_bytes = db.stat().st_size
                port = free_port()
                base = f"http://127.0.0.1:{port}"
                command = [*PIN_SERVER, sys.executable, str(HERE / "_as_server.py"), "--port", str(port)]
                command += ["--db", str(db), "--cimd-ca", str(ca)]
                with running(command, base + "/.well-known/oauth-authorization-server"):
                    results[count] = asyncio.run(run_server_phases(base, documents, count, args))
                report(count, fill_seconds, db_bytes, results[count])
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{db}{suffix}").unlink(missing_ok=True)

    if len(results) >= 2:
        few, many = min(results), max(results)
        print(f"\ntoken endpoint latency, {many:,} clients / {few:,} clients (target <= 2):")
        for name in ("prefilled", "refresh", "dcr"):
            a, b = percentiles(results[few][name].token_ms), percentiles(results[many][name].token_ms)
            print(f"  {LABELS[name]:40} p50 {b[0] / a[0]:.2f}   p99 {b[2] / a[2]:.2f}")


if __name__ == "__main__":
    main()
