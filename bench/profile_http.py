"""Where a request's time goes on the running server, bastion on and off: py-spy under wrk load.

Usage: ``python bench/profile_http.py [--rounds 3] [--seconds 10] [--rate 250] [--connections 16]
[--modes plain off jwt] [--output DIR]``

Starts the servers of ``bench_http.py`` (the SDK's MCPServer without auth, bastion's
MCPServer with auth off, bastion's MCPServer verifying an RS256 JWT seen before), and in
interleaved rounds loads each in turn with wrk and samples its uvicorn process with py-spy
(``pip install -e ".[bench]"``, or ``pip install py-spy``) while it serves. Servers run on
core 0, wrk and py-spy on core 1 when there are two cores.

Each sample is charged to the innermost frame of a known part (uvicorn and h11, Starlette,
the SDK's transport, its session and JSON-RPC, its MCPServer, pydantic, anyio, asyncio,
logging, bastion), so a sample inside pydantic called by the SDK counts as pydantic. The
samples of a part, divided by the requests served while sampling, give its microseconds per
request; the table shows each mode's figures and the JWT server's difference from auth off.
Then the functions whose own time differs most between the two. The collapsed stacks are
written to ``DIR`` (default ``bench/.profiles``), one file per mode, for a flame graph
(``flamegraph.pl``, or https://www.speedscope.app, which imports them as they are).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_http import BODY, LUA, PIN_CLIENT, PIN_SERVER, free_port, run_wrk, wait_ready

from bastion.testing import KeyPair

HERE = Path(__file__).parent
_TWO_CORES = shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2
#: Parts of a request, matched against a frame's file path; the first match wins.
PARTS = [
    ("bastion: middleware and guard", r"(^|/)bastion/_resource/(middleware|guard|dpop|verifier)\.py"),
    ("bastion: policies", r"(^|/)bastion/_resource/(policy|registry|list_filter)\.py"),
    ("bastion: token verification", r"(^|/)bastion/(_resource/(jwt|tokens)|_jose/)"),
    ("bastion: other", r"(^|/)bastion/"),
    ("SDK: streamable HTTP transport", r"(^|/)mcp/server/streamable_http"),
    ("SDK: MCPServer, tools", r"(^|/)mcp/server/mcpserver/"),
    ("SDK: session, JSON-RPC", r"(^|/)mcp/(shared|server/lowlevel|server/session|server/context)"),
    ("SDK: other", r"(^|/)(mcp|mcp_types)/"),
    ("pydantic", r"(^|/)pydantic(_core)?/"),
    ("anyio", r"(^|/)anyio/"),
    ("Starlette", r"(^|/)(sse_)?starlette/"),
    ("uvicorn, h11", r"(^|/)(uvicorn|h11|httptools)/"),
    ("logging", r"(^|/)logging/"),
    ("contextvars, OpenTelemetry", r"(^|/)opentelemetry/|contextvars"),
    ("asyncio", r"(^|/)asyncio/"),
]
_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")
#: The event loop waiting for the network: not time spent on a request.
_IDLE = re.compile(r"select \(selectors\.py|\(select\)|epoll")


def frames(stack: str) -> list[tuple[str, str]]:
    """The (function, file) of each frame of a collapsed stack, outermost first."""
    found = []
    for frame in stack.split(";"):
        match = _FRAME.match(frame)
        found.append((match["function"], match["file"]) if match else (frame, ""))
    return found


def part_of(file: str) -> str | None:
    for name, pattern in PARTS:
        if re.search(pattern, file):
            return name
    return None


class Profile:
    """The samples of one server, summed by part and by function."""

    def __init__(self, lines: list[str], requests: float, rate: int) -> None:
        self.per_sample = 1e6 / (rate * requests)  # microseconds of one request per sample
        self.parts: collections.Counter[str] = collections.Counter()
        self.own: collections.Counter[str] = collections.Counter()
        self.idle = 0
        for line in lines:
            stack, _, count_text = line.rpartition(" ")
            if not stack:
                continue
            count = int(count_text)
            stack_frames = frames(stack)
            if _IDLE.search(stack.rsplit(";", 1)[-1]):
                self.idle += count
                continue
            leaf_function, leaf_file = stack_frames[-1]
            self.own[f"{leaf_function} ({_short(leaf_file)})"] += count
            for _, file in reversed(stack_frames):
                part = part_of(file)
                if part is not None:
                    self.parts[part] += count
                    break
            else:
                self.parts["other (C code, the interpreter)"] += count

    def micros(self, counter: collections.Counter[str], key: str) -> float:
        return counter.get(key, 0) * self.per_sample

    def busy(self) -> float:
        return sum(self.parts.values()) * self.per_sample


def _short(file: str) -> str:
    return re.sub(r"^.*/(site-packages|src|lib/python3\.\d+)/", "", file)


def sample(mode: str, url: str, pid: int, auth: str, args: argparse.Namespace, script: Path) -> tuple[list[str], float]:
    """One round: the server at ``url`` under wrk load, sampled; its stacks and the requests served."""
    pin_client = PIN_CLIENT if _TWO_CORES else []
    env = {**os.environ, "BENCH_AUTH": auth, "BENCH_BODY": json.dumps(BODY)}
    wrk = [*pin_client, "wrk", "-t1", f"-c{args.connections}", f"-d{args.seconds + 2}s", "-s", str(script), url]
    load = subprocess.Popen(wrk, env=env, stdout=subprocess.PIPE, text=True)
    with tempfile.NamedTemporaryFile(suffix=".txt") as raw:
        # --gil: only the thread running Python code is sampled, so waiting threads count for nothing;
        # --nonblocking: the server is never paused, so the load it serves is what it would serve.
        spy = [*pin_client, args.py_spy, "record", "--pid", str(pid), "--rate", str(args.rate), "--gil"]
        spy += ["--nonblocking", "--duration", str(args.seconds), "--format", "raw", "--output", raw.name]
        subprocess.run(spy, check=True, capture_output=True)
        lines = Path(raw.name).read_text().splitlines()
    report, _ = load.communicate()
    if "Non-2xx" in report:
        raise RuntimeError(f"wrk saw non-2xx answers from {mode}:\n" + report)
    match = re.search(r"Requests/sec:\s+([\d.]+)", report)
    assert match, report
    return lines, float(match.group(1)) * args.seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10, help="seconds sampled per server and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--modes", nargs="+", default=["plain", "off", "jwt"], choices=["plain", "off", "jwt"])
    parser.add_argument("--output", type=Path, default=HERE / ".profiles")
    args = parser.parse_args()
    args.py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(args.py_spy).exists():
        parser.error('py-spy is not installed: pip install -e ".[bench]" (or pip install py-spy)')
    args.output.mkdir(parents=True, exist_ok=True)

    keys = KeyPair.generate("RS256")
    token = keys.create_token(
        subject="bench", issuer="https://issuer.bench", audience="http://127.0.0.1/mcp", scopes=["x"],
        expires_in_seconds=3600,
    )  # fmt: skip
    bearer = f"Bearer {token}"
    stacks: dict[str, list[str]] = {mode: [] for mode in args.modes}
    served = dict.fromkeys(args.modes, 0.0)
    pin_server = PIN_SERVER if _TWO_CORES else []
    with tempfile.TemporaryDirectory() as tmp:
        key_file = Path(tmp, "public.pem")
        key_file.write_text(keys.public_key)
        script = Path(tmp, "post.lua")
        script.write_text(LUA)
        servers: dict[str, tuple[subprocess.Popen[bytes], str]] = {}
        try:
            for mode in args.modes:
                port = free_port()
                command = [*pin_server, sys.executable, str(HERE / "_http_server.py"), mode, str(port), str(key_file)]
                servers[mode] = (subprocess.Popen(command), f"http://127.0.0.1:{port}/mcp")
            auth = {mode: bearer if mode == "jwt" else "" for mode in args.modes}
            for mode, (_, url) in servers.items():
                wait_ready(url, {"Authorization": auth[mode]} if auth[mode] else {})
                run_wrk(url, auth[mode], 2, args.connections, str(script), PIN_CLIENT if _TWO_CORES else [])
            for round_number in range(args.rounds):
                shift = round_number % len(args.modes)
                for mode in args.modes[shift:] + args.modes[:shift]:
                    process, url = servers[mode]
                    lines, requests = sample(mode, url, process.pid, auth[mode], args, script)
                    stacks[mode] += lines
                    served[mode] += requests
        finally:
            for process, _ in servers.values():
                process.terminate()
                process.wait(timeout=10)
    profiles = {}
    for mode in args.modes:
        path = args.output / f"{mode}.txt"
        path.write_text("\n".join(stacks[mode]) + "\n")
        profiles[mode] = Profile(stacks[mode], served[mode], args.rate)
        rps = served[mode] / (args.seconds * args.rounds)
        print(f"{mode}: {rps:.0f} requests/s while sampled; collapsed stacks in {path}", file=sys.stderr)

    modes = list(profiles)
    diff = "jwt" in profiles and "off" in profiles
    names = [name for name, _ in PARTS] + ["other (C code, the interpreter)"]
    print(
        f"py-spy at {args.rate} Hz, {args.rounds} rounds of {args.seconds} s per server, wrk -t1 -c{args.connections}"
    )
    print(f"{'us per request':<36}" + "".join(f"{mode:>9}" for mode in modes) + ("  jwt-off" if diff else ""))
    for name in names:
        row = [profiles[mode].micros(profiles[mode].parts, name) for mode in modes]
        if not any(value >= 0.5 for value in row):
            continue
        change = f"{row[modes.index('jwt')] - row[modes.index('off')]:+9.1f}" if diff else ""
        print(f"{name:<36}" + "".join(f"{value:9.1f}" for value in row) + change)
    busy = [profiles[mode].busy() for mode in modes]
    total_change = f"{busy[modes.index('jwt')] - busy[modes.index('off')]:+9.1f}" if diff else ""
    print(f"{'busy, all parts':<36}" + "".join(f"{value:9.1f}" for value in busy) + total_change)
    if diff:
        jwt, off = profiles["jwt"], profiles["off"]
        functions = set(jwt.own) | set(off.own)
        changes = sorted(functions, key=lambda f: abs(jwt.micros(jwt.own, f) - off.micros(off.own, f)), reverse=True)
        print("\nown time, the functions that differ most (us per request: off, jwt, jwt-off)")
        for function in changes[:20]:
            a, b = off.micros(off.own, function), jwt.micros(jwt.own, function)
            print(f"  {a:7.1f} {b:7.1f} {b - a:+7.1f}  {function[:100]}")


if __name__ == "__main__":
    main()
