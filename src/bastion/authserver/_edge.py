"""What sits in front of the endpoints: the issuer derived in development, and CORS for browser clients.

Browser-based MCP clients (the MCP Inspector, web apps) call the token,
registration and revocation endpoints with ``fetch``: those answer CORS
preflights and carry ``Access-Control-Allow-Origin: *``. No cookie is ever read
on them, so allowing any origin grants nothing a non-browser client lacks. A
browser may send the ``DPoP`` header and read the ``DPoP-Nonce`` answer (RFC 9449
section 8: the nonce must be exposed to the page's script).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bastion._core import telemetry
from bastion._core.audit import enter_request, leave_request
from bastion._core.net import is_loopback_host

if TYPE_CHECKING:
    from bastion.authserver._server import AuthorizationServer

__all__ = ["AuthServerEdge"]

logger = logging.getLogger("bastion")

_API = ("/token", "/register", "/revoke", "/introspect")


class AuthServerEdge:
    """ASGI middleware for the authorization server's routes (and whatever else the app serves)."""

    def __init__(self, app: ASGIApp, server: AuthorizationServer) -> None:
        self.app = app
        self.server = server
        self._routes: tuple[str | None, frozenset[str]] | None = None  # (issuer, its routes), for metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        entered = enter_request(scope)  # the audit events of this request name its address and id
        try:
            observer = telemetry.active
            route = None if observer is None else self._route(scope["path"])
            if observer is None or route is None:
                await self._http(scope, receive, send)
            else:
                await observer.serve(scope, receive, send, self._http, route)  # timed, in a span
        finally:
            leave_request(entered)

    def _route(self, path: str) -> str | None:
        """``path`` when it is one of the server's endpoints (the app serves others too)."""
        issuer = self.server.issuer
        if self._routes is None or self._routes[0] != issuer:
            paths = (getattr(route, "path", None) for route in self.server.routes())
            self._routes = (issuer, frozenset(p for p in paths if isinstance(p, str)))
        return path if path in self._routes[1] else None

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        server = self.server
        if server.issuer is None and not self._derive_issuer(scope):
            response = Response(
                "This server has no issuer configured: set it, or use a loopback address in development.\n",
                status_code=400,
                media_type="text/plain",
            )
            await response(scope, receive, send)
            return
        path: str = scope["path"]
        if not any(path == server.path(suffix) for suffix in _API):
            await self.app(scope, receive, send)
            return
        if scope["method"] == "OPTIONS":
            response = Response(
                status_code=204,
                headers={
                    "Access-Control-Allow-Origin": "*",
                    "Access-Control-Allow-Methods": "POST, OPTIONS",
                    "Access-Control-Allow-Headers": "Authorization, Content-Type, DPoP, MCP-Protocol-Version",
                    "Access-Control-Max-Age": "86400",
                },
            )
            await response(scope, receive, send)
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"access-control-allow-origin", b"*"))
                headers.append((b"access-control-expose-headers", b"DPoP-Nonce, WWW-Authenticate"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_cors)

    def _derive_issuer(self, scope: Scope) -> bool:
        """Take the issuer from a loopback request's Host (development); ``False`` for any other host."""
        host = Headers(scope=scope).get("host", "")
        hostname = host.rsplit(":", 1)[0] if not host.startswith("[") else host.split("]")[0] + "]"
        if not host or not is_loopback_host(hostname) or not all(c.isalnum() or c in ".:[]-" for c in host):
            return False
        issuer = f"{scope.get('scheme', 'http')}://{host}"
        logger.warning("the authorization server has no issuer configured; using %s (development only)", issuer)
        self.server.set_issuer(issuer)
        return True
