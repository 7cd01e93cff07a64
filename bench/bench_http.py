"""Throughput of a stateless JSON ``tools/call`` with and without bastion, measured with wrk.

Usage: ``python bench/bench_http.py [--seconds 10] [--rounds 3] [--connections 16]``

Starts three single-process uvicorn servers on 127.0.0.1 (the SDK's MCPServer with
no auth; bastion's MCPServer with auth off; bastion's MCPServer verifying an RS256
JWT), then runs wrk against each in turn, interleaved over several rounds, and
prints the median requests per second of each and the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx2

from bastion.testing import KeyPair

HERE = Path(__file__).parent
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


def run_wrk(url: str, auth: str, seconds: int, connections: int, script: str) -> float:
    env = {**os.environ, "BENCH_AUTH": auth, "BENCH_BODY": json.dumps(BODY)}
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", script, url],
        env=env, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    if "Non-2xx" in out:
        raise RuntimeError("wrk saw non-2xx answers:\n" + out)
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert match, out
    return float(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()

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
        modes = {"plain": "", "off": "", "jwt": f"Bearer {token}"}
        servers = {}
        try:
            for mode in modes:
                port = free_port()
                servers[mode] = (
                    subprocess.Popen([sys.executable, str(HERE / "_http_server.py"), mode, str(port), str(key_file)]),
                    f"http://127.0.0.1:{port}/mcp",
                )
            for mode, (_, url) in servers.items():
                wait_ready(url, {"Authorization": modes[mode]} if modes[mode] else {})
                run_wrk(url, modes[mode], 2, args.connections, script)  # warm-up
            results: dict[str, list[float]] = {mode: [] for mode in modes}
            for _ in range(args.rounds):
                for mode, (_, url) in servers.items():
                    results[mode].append(run_wrk(url, modes[mode], args.seconds, args.connections, script))
        finally:
            for process, _ in servers.values():
                process.terminate()
                process.wait(timeout=10)

    median = {mode: statistics.median(values) for mode, values in results.items()}
    print(f"wrk -t1 -c{args.connections} -d{args.seconds}s, {args.rounds} rounds, median requests/s")
    print(f"  SDK MCPServer, no auth          {median['plain']:8.0f}   {results['plain']}")
    print(f"  bastion MCPServer, auth off     {median['off']:8.0f}   {results['off']}")
    print(f"  bastion MCPServer, RS256 JWT    {median['jwt']:8.0f}   {results['jwt']}")
    print(f"  JWT / auth off                  {median['jwt'] / median['off']:8.3f}")
    print(f"  JWT / SDK no auth               {median['jwt'] / median['plain']:8.3f}")


if __name__ == "__main__":
    main()
