"""bastion's middleware alone, for a token seen before: ``cd bench && python bench_middleware.py``.

The JWT app of bench_http.py with the app inside its ``AuthMiddleware`` replaced by one
that does nothing, driven with the same stateless ``tools/call`` request: what is left is
the middleware's own work per request (the token found from the raw headers and the
cache, the per-token decision, the SDK's user objects and context variables). The best of
7 rounds of 5,000 requests counts.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from _http_server import ISSUER, RESOURCE, build
from bench_inprocess import BODY, _find_middleware
from starlette.types import Message, Receive, Scope, Send

from bastion.testing import KeyPair

ROUNDS = 7
REQUESTS = 5000


def jwt_app() -> tuple[Any, str]:
    """The JWT app of bench_http.py and a token it accepts."""
    keys = KeyPair.generate("RS256")
    token = keys.create_token(subject="bench", issuer=ISSUER, audience=RESOURCE, scopes=["x"])
    with tempfile.TemporaryDirectory() as tmp:
        key_file = Path(tmp, "public.pem")
        key_file.write_text(keys.public_key)
        return build("jwt", str(key_file)), token


async def main() -> None:
    app, token = jwt_app()
    app.middleware_stack = app.build_middleware_stack()
    middleware = _find_middleware(app)
    if middleware is None:
        raise RuntimeError("the JWT app has no AuthMiddleware")

    async def nothing(scope: Scope, receive: Receive, send: Send) -> None:
        return None

    middleware.app = nothing
    headers = [
        (b"host", b"127.0.0.1:8000"),
        (b"content-type", b"application/json"),
        (b"accept", b"application/json, text/event-stream"),
        (b"content-length", str(len(BODY)).encode()),
        (b"authorization", f"Bearer {token}".encode()),
    ]
    template: Scope = {
        "type": "http", "method": "POST", "path": "/mcp", "root_path": "", "headers": headers,
        "query_string": b"", "scheme": "http", "server": ("127.0.0.1", 80), "client": ("127.0.0.1", 50000),
    }  # fmt: skip

    async def receive() -> Message:
        return {"type": "http.request", "body": BODY, "more_body": False}

    async def send(message: Message) -> None:
        return None

    for _ in range(500):  # the token verified once, then seen
        await middleware(dict(template), receive, send)
    best = float("inf")
    for _ in range(ROUNDS):
        start = time.perf_counter()
        for _ in range(REQUESTS):
            await middleware(dict(template), receive, send)
        best = min(best, (time.perf_counter() - start) / REQUESTS * 1e6)
    print(f"bastion's AuthMiddleware alone, a token seen before: {best:.2f} us per request")


if __name__ == "__main__":
    asyncio.run(main())
