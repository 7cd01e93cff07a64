"""The cost of bastion per request, measured in-process (no network, no load generator).

Usage: ``python bench/bench_inprocess.py [--requests 3000] [--rounds 5]``

Drives each of the three ASGI apps of bench_http.py (the SDK's MCPServer with no auth,
bastion's with auth off, bastion's verifying an RS256 JWT seen before) directly with
stateless JSON ``tools/call`` requests, interleaved over several rounds, and reports
the median time per request of each. For the JWT app it also times bastion's
middleware on its own (the time spent outside the app it wraps). Without sockets, a
load generator and a second process, this is steadier than the wrk benchmark.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from _http_server import ISSUER, RESOURCE, build
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bastion._resource.middleware import AuthMiddleware
from bastion.testing import KeyPair

BODY = json.dumps(
    {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "hi"}}}
).encode()


class _Timed:
    """Wraps the app inside bastion's middleware to split its time from the middleware's."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.inner = 0.0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = time.perf_counter()
        try:
            await self.app(scope, receive, send)
        finally:
            self.inner += time.perf_counter() - start


def _find_middleware(app: Any) -> AuthMiddleware | None:
    node = app.middleware_stack if hasattr(app, "middleware_stack") else None
    while node is not None:
        if isinstance(node, AuthMiddleware):
            return node
        node = getattr(node, "app", None)
    return None


async def _drive(app: Any, authorization: bytes | None, requests: int, warm_up: int) -> tuple[float, float | None]:
    headers = [
        (b"host", b"127.0.0.1:8000"),
        (b"content-type", b"application/json"),
        (b"accept", b"application/json, text/event-stream"),
        (b"content-length", str(len(BODY)).encode()),
    ]
    if authorization:
        headers.append((b"authorization", authorization))
    template: Scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": "/mcp", "raw_path": b"/mcp", "query_string": b"", "root_path": "", "headers": headers,
        "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 80),
    }  # fmt: skip
    startup: asyncio.Queue[Message] = asyncio.Queue()
    replies: asyncio.Queue[Message] = asyncio.Queue()
    await startup.put({"type": "lifespan.startup"})
    lifespan = asyncio.create_task(
        app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, startup.get, replies.put)
    )
    await replies.get()
    middleware = _find_middleware(app)
    timed = None
    if middleware is not None:
        timed = _Timed(middleware.app)
        middleware.app = timed
    start = 0.0
    for number in range(warm_up + requests):
        if number == warm_up:
            start = time.perf_counter()
            if timed is not None:
                timed.inner = 0.0
        body_sent = False
        statuses: list[int] = []

        async def receive() -> Message:
            nonlocal body_sent
            if not body_sent:
                body_sent = True
                return {"type": "http.request", "body": BODY, "more_body": False}
            await asyncio.Event().wait()  # the client never disconnects
            raise AssertionError("unreachable")

        async def send(message: Message, statuses: list[int] = statuses) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        await app(dict(template), receive, send)
        assert statuses == [200], statuses
    total = (time.perf_counter() - start) / requests
    own = None if timed is None else total - timed.inner / requests
    await startup.put({"type": "lifespan.shutdown"})
    await replies.get()
    await lifespan
    return total, own


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    keys = KeyPair.generate("RS256")
    token = keys.create_token(subject="bench", issuer=ISSUER, audience=RESOURCE, scopes=["x"])
    times: dict[str, list[float]] = {"plain": [], "off": [], "jwt": []}
    own: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        key_file = Path(tmp, "public.pem")
        key_file.write_text(keys.public_key)
        for _ in range(args.rounds):
            for mode in times:
                app = build(mode, str(key_file))  # a fresh app: a session manager runs once
                authorization = f"Bearer {token}".encode() if mode == "jwt" else None
                total, middleware = asyncio.run(_drive(app, authorization, args.requests, 300))
                times[mode].append(total)
                if middleware is not None:
                    own.append(middleware)
    median = {mode: statistics.median(values) * 1e6 for mode, values in times.items()}
    print(f"{args.requests} requests x {args.rounds} rounds, median microseconds per request")
    print(f"  SDK MCPServer, no auth          {median['plain']:8.1f}")
    print(f"  bastion MCPServer, auth off     {median['off']:8.1f}")
    print(f"  bastion MCPServer, RS256 JWT    {median['jwt']:8.1f}")
    print(f"  of which bastion's middleware   {statistics.median(own) * 1e6:8.1f}")
    print(f"  throughput JWT / auth off       {median['off'] / median['jwt']:8.3f}")
    print(f"  throughput JWT / SDK no auth    {median['plain'] / median['jwt']:8.3f}")


if __name__ == "__main__":
    main()
