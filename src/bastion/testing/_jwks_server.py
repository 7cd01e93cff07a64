"""A JWK Set endpoint for tests, whose answers the test controls and whose requests it counts."""

from __future__ import annotations

import json
import threading
from contextlib import ExitStack
from types import TracebackType
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bastion.testing._keys import KeyPair
from bastion.testing._serve import serve

__all__ = ["JWKSServer"]


class JWKSServer:
    """Serves a JWK Set over real HTTP on 127.0.0.1; use as a context manager.

    ::

        key = KeyPair.generate()
        with JWKSServer(key) as server:
            verifier = JWTVerifier(jwks_uri=server.url, ...)
            server.set_keys(key, KeyPair.generate())   # rotation
            server.status = 500                         # outage
            assert server.requests == 1

    Attributes:
        jwks: The JWK Set document served.
        status: The HTTP status answered (the document is sent whatever it is).
        delay: Seconds to wait before answering (to exceed a client's timeout).
        body: Raw bytes sent instead of the document (garbage, huge answers).
        cache_control: The ``Cache-Control`` header, if any.
        requests: How many requests reached the endpoint.
        url: The JWK Set URL, once the server runs.
    """

    path = "/.well-known/jwks.json"

    def __init__(self, *keys: KeyPair, cache_control: str | None = None) -> None:
        self.jwks: dict[str, Any] = {"keys": []}
        self.set_keys(*keys)
        self.status = 200
        self.delay = 0.0
        self.body: bytes | None = None
        self.cache_control = cache_control
        self.url = ""
        self._requests = 0
        self._count_lock = threading.Lock()
        self._stack = ExitStack()
        self.app = Starlette(routes=[Route(self.path, self._endpoint)])

    @property
    def requests(self) -> int:
        """How many requests reached the endpoint so far."""
        return self._requests

    def set_keys(self, *keys: KeyPair) -> None:
        """Publish the public keys of these pairs (and nothing else)."""
        self.jwks = {"keys": [key.public_jwk() for key in keys]}

    def reset(self) -> None:
        """Back to a healthy, instant answer, and zero requests counted."""
        self.status = 200
        self.delay = 0.0
        self.body = None
        with self._count_lock:
            self._requests = 0

    async def _endpoint(self, request: Request) -> Response:
        with self._count_lock:
            self._requests += 1
        remaining = self.delay
        while remaining > 0:
            # Wait in slices, and stop once the client gave up, so shutdown is not held up.
            if await request.is_disconnected():
                return Response(status_code=499)
            await anyio.sleep(min(remaining, 0.02))
            remaining -= 0.02
        body = self.body if self.body is not None else json.dumps(self.jwks).encode()
        headers = {"cache-control": self.cache_control} if self.cache_control else None
        return Response(body, status_code=self.status, headers=headers, media_type="application/json")

    def __enter__(self) -> JWKSServer:
        base = self._stack.enter_context(serve(self.app))
        self.url = base + self.path
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stack.close()
