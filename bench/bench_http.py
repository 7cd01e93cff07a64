"""Throughput of a stateless JSON ``tools/call`` with and without bastion, measured with wrk.

Usage: ``python bench/bench_http.py [--seconds 4] [--rounds 15] [--connections 16] [--cores pinned|shared]
[--fastmcp 4.1.6 | --no-fastmcp]``

Starts single-process uvicorn servers on 127.0.0.1 (the SDK's MCPServer with no auth;
bastion's MCPServer with auth off; bastion's MCPServer verifying an RS256 JWT; FastMCP
with its JWTVerifier checking the same token), then runs wrk against each in turn,
interleaved over several rounds, and prints the median requests per second of each and
the median of the per-round ratios.

``--cores pinned`` (the default on two or more cores) runs the servers on core 0 and wrk
alone on core 1; ``--cores shared`` lets the scheduler place them, so wrk competes with
the server it measures, as on a small machine running its own clients.

FastMCP is installed in a virtual environment of its own, created on first use under
``bench/.venvs/`` (it pins other versions of the SDK and of its dependencies than bastion's).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import venv
from pathlib import Path

import httpx2

from bastion.testing import KeyPair

HERE = Path(__file__).parent
# On a machine with two or more cores the servers share core 0 and wrk runs alone on core 1,
# so the load generator never competes with the server it measures.
_TWO_CORES = shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2
PIN_SERVER = ["taskset", "-c", "0"]
PIN_CLIENT = ["taskset", "-c", "1"]
VENVS = HERE / ".venvs"
BODY = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "hi"}}}
LUA = """
wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY")
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json, text/event-stream"
local auth = os.getenv("BENCH_AUTH")
if auth ~= nil and auth ~= "" then wrk.headers["Authorization"] = auth end
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, headers: dict[str, str]) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            response = httpx2.post(url, json=BODY, headers={**headers, "Accept": "application/json, text/event-stream"})
        except httpx2.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)  # polling a starting process, not synchronising a test
            continue
        if response.status_code != 200 or "hi" not in response.text:
            raise RuntimeError(f"server answered {response.status_code}: {response.text[:200]}")
        return


def fastmcp_python(version: str) -> Path:
    """The Python of a virtual environment holding FastMCP ``version``, created when missing."""
    home = VENVS / f"fastmcp-{version}"
    python = home / "bin" / "python"
    if not python.exists():
        print(f"installing FastMCP {version} in {home.relative_to(HERE.parent)}", file=sys.stderr)
        venv.create(home, with_pip=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", f"fastmcp=={version}"],
            check=True,
        )
    return python


def run_wrk(url: str, auth: str, seconds: int, connections: int, script: str, pin: list[str]) -> float:
    env = {**os.environ, "BENCH_AUTH": auth, "BENCH_BODY": json.dumps(BODY)}
    out = subprocess.run(
        [*pin, "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", script, url],
        env=env, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    if "Non-2xx" in out:
        raise RuntimeError("wrk saw non-2xx answers:\n" + out)
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert match, out
    return float(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument(
        "--token-to-all",
        action="store_true",
        help="send the same Authorization header to every server (the servers without auth ignore it), "
        "so the comparison excludes the cost of parsing a larger request",
    )
    parser.add_argument(
        "--cores", choices=["pinned", "shared"], default="pinned" if _TWO_CORES else "shared",
        help="servers on core 0 and wrk on core 1, or wherever the scheduler puts them",
    )  # fmt: skip
    parser.add_argument("--fastmcp", default="4.1.6", metavar="VERSION", help="the FastMCP release compared")
    parser.add_argument("--no-fastmcp", action="store_true", help="leave FastMCP out")
    args = parser.parse_args()
    if args.cores == "pinned" and not _TWO_CORES:
        parser.error("--cores pinned needs taskset and two cores")
    pin_server, pin_client = (PIN_SERVER, PIN_CLIENT) if args.cores == "pinned" else ([], [])
    fastmcp = None if args.no_fastmcp else fastmcp_python(args.fastmcp)

    keys = KeyPair.generate("RS256")
    token = keys.create_token(
        subject="bench", issuer="https://issuer.bench", audience="http://127.0.0.1/mcp", scopes=["x"],
        expires_in_seconds=3600,
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        key_file = Path(tmp, "public.pem")
        key_file.write_text(keys.public_key)
        script = str(Path(tmp, "post.lua"))
        Path(script).write_text(LUA)
        bearer = f"Bearer {token}"
        modes = {
            "plain": bearer if args.token_to_all else "",
            "off": bearer if args.token_to_all else "",
            "jwt": bearer,
        }
        if fastmcp is not None:
            modes["fastmcp"] = bearer
        servers = {}
        try:
            for mode in modes:
                port = free_port()
                if mode == "fastmcp":
                    assert fastmcp is not None
                    command = [str(fastmcp), str(HERE / "_fastmcp_server.py"), str(port), str(key_file)]
                else:
                    command = [sys.executable, str(HERE / "_http_server.py"), mode, str(port), str(key_file)]
                servers[mode] = (subprocess.Popen([*pin_server, *command]), f"http://127.0.0.1:{port}/mcp")
            for mode, (_, url) in servers.items():
                wait_ready(url, {"Authorization": modes[mode]} if modes[mode] else {})
                run_wrk(url, modes[mode], 2, args.connections, script, pin_client)  # warm-up
            results: dict[str, list[float]] = {mode: [] for mode in modes}
            order = list(servers)
            for round_number in range(args.rounds):
                # Rotate the order so no mode always runs first (or last) in a round.
                shift = round_number % len(order)
                for mode in order[shift:] + order[:shift]:
                    url = servers[mode][1]
                    results[mode].append(run_wrk(url, modes[mode], args.seconds, args.connections, script, pin_client))
        finally:
            for process, _ in servers.values():
                process.terminate()
                process.wait(timeout=10)

    median = {mode: statistics.median(values) for mode, values in results.items()}
    vs_off = [j / o for j, o in zip(results["jwt"], results["off"], strict=True)]
    vs_plain = [j / p for j, p in zip(results["jwt"], results["plain"], strict=True)]
    sent = "every server" if args.token_to_all else "the JWT servers only"
    print(f"wrk -t1 -c{args.connections} -d{args.seconds}s, {args.rounds} rounds, cores {args.cores}, ", end="")
    print(f"token sent to {sent}")
    print("median requests/s")
    print(f"  SDK MCPServer, no auth          {median['plain']:8.0f}")
    print(f"  bastion MCPServer, auth off     {median['off']:8.0f}")
    print(f"  bastion MCPServer, RS256 JWT    {median['jwt']:8.0f}")
    if "fastmcp" in median:
        print(f"  FastMCP {args.fastmcp}, RS256 JWT      {median['fastmcp']:8.0f}")
    print("per-round ratios: median (first quartile - third quartile)")
    print(f"  JWT / bastion auth off          {_spread(vs_off)}")
    print(f"  JWT / SDK no auth               {_spread(vs_plain)}")
    if "fastmcp" in results:
        vs_fastmcp = [j / f for j, f in zip(results["jwt"], results["fastmcp"], strict=True)]
        print(f"  bastion JWT / FastMCP JWT       {_spread(vs_fastmcp)}")


def _spread(values: list[float]) -> str:
    # Runs next to each other share the machine's state, so per-round ratios are steadier
    # than the ratio of the medians; the quartiles show how steady.
    q1, q2, q3 = statistics.quantiles(values, n=4)
    return f"{q2:6.3f}  ({q1:.3f} - {q3:.3f})"


if __name__ == "__main__":
    main()
