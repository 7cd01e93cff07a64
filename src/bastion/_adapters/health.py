"""Liveness and readiness of an MCP server, for probes (``MCPServer.serve_health``).

``/healthz`` answers 200 whenever the process serves HTTP. ``/readyz`` answers 200
when the server can do its work: its authorization server's store answers a read, its
signing key ring is loaded (or loads), and its verifier has the remote key set or
metadata document it needs (a cached copy counts: a provider's short outage does not
take every replica out of service at once, and no probe refetches what is cached).
Otherwise 503 with ``Retry-After``. Neither answer says which check failed, nor
anything else about the deployment: they are served without authentication, so the
reason goes to the log (when readiness is lost, then once a minute while it lasts), not
to the response.

A readiness check runs at most once per ``min_interval`` (concurrent probes share
it) and within ``timeout``, so probes, however many, cost the store a read a second
at most, and a hung dependency answers "not ready" rather than hanging the probe.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from bastion._core.http import LoopLocks
from bastion._core.log import ThrottledLog
from bastion._resource.verifier import Verifier
from bastion.authserver._server import AuthorizationServer

__all__ = ["Readiness", "liveness_response"]

logger = logging.getLogger("bastion")

#: The record read to see that the store answers; it never exists.
_PROBE = ("bastion-health", "probe")

#: Seconds a client is told to wait before probing again.
RETRY_AFTER = 5

_NO_STORE = {"Cache-Control": "no-store"}


def liveness_response() -> Response:
    """``/healthz``: the process serves."""
    return JSONResponse({"status": "ok"}, headers=_NO_STORE)


class Readiness:
    """Whether one server is ready: its authorization server's store and keys, its verifier's remote documents.

    Args:
        verifier: The server's verifier (``None``: nothing to check).
        authorization_server: The authorization server it serves, if any.
        timeout: Seconds the whole check may take; longer is "not ready".
        min_interval: Seconds a result is reused for before the check runs again.
        clock: Seconds (any origin); injectable for tests.
    """

    def __init__(
        self,
        verifier: Verifier | None,
        authorization_server: AuthorizationServer | None = None,
        *,
        timeout: float = 5.0,
        min_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.verifier = verifier
        self.authorization_server = authorization_server
        self.timeout = timeout
        self.min_interval = min_interval
        self._clock = clock
        self._checked = -math.inf
        self._ready = False
        self._locks = LoopLocks()
        self._failures = ThrottledLog(logger, clock=clock)

    async def ready(self) -> bool:
        """The result of the last check, or of a new one when it is older than ``min_interval``."""
        if self._clock() < self._checked + self.min_interval:
            return self._ready
        async with self._locks.lock():
            if self._clock() < self._checked + self.min_interval:
                return self._ready  # another probe checked while this one waited
            failure = await self._failure()
            was_ready = self._ready or self._checked == -math.inf
            if failure is None:
                if not was_ready:
                    logger.info("ready again")
            elif was_ready:
                logger.warning("not ready: %s: %s", *failure)
            else:
                self._failures.warning(f"still not ready: {failure[0]}")  # once a minute, with a count
            self._ready = failure is None
            self._checked = self._clock()
            return self._ready

    async def response(self, request: Request | None = None) -> Response:
        """``/readyz``: 200, or 503 with ``Retry-After``; the same body for every reason."""
        if await self.ready():
            return JSONResponse({"status": "ok"}, headers=_NO_STORE)
        headers = {**_NO_STORE, "Retry-After": str(RETRY_AFTER)}
        return JSONResponse({"status": "unavailable"}, status_code=503, headers=headers)

    async def _failure(self) -> tuple[str, str] | None:
        """What is not ready and why, for the log; ``None`` when everything is."""
        try:
            async with asyncio.timeout(self.timeout):
                return await self._check()
        except TimeoutError:
            return "the checks took too long", f"more than {self.timeout:g} s"

    async def _check(self) -> tuple[str, str] | None:
        server = self.authorization_server
        if server is not None:
            try:
                await server.store.get(*_PROBE)
            except Exception as exc:
                return "the store failed", str(exc) or type(exc).__name__
            try:
                if not server.keys.keys:
                    await server.keys.signing_key()
            except Exception as exc:
                return "the signing keys could not be loaded", str(exc) or type(exc).__name__
        verifier = self.verifier
        if verifier is not None:
            name = type(verifier).__name__
            try:
                if not await verifier.ready():
                    return f"{name} is not ready", "no key set or metadata document could be had yet"
            except Exception as exc:
                return f"{name} failed its readiness check", str(exc) or type(exc).__name__
        return None
