"""The ASGI middleware that makes an app a protected resource.

For each HTTP request to a protected path it authenticates the caller
(:class:`~bastion._resource.guard.ResourceGuard`), and for a JSON-RPC POST to the MCP
endpoint it reads the bounded body once, finds the target of ``tools/call``,
``resources/read`` and ``prompts/get`` and evaluates its policy, so that a
missing scope is a real HTTP 403 step-up. The verified token then travels in
``scope["user"]`` and in the SDK's auth context variable.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import parse_qs

from mcp.server.auth.middleware.auth_context import auth_context_var
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from starlette.authentication import AuthCredentials
from starlette.requests import HTTPConnection
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bastion._core.audit import enter_request, leave_request
from bastion._resource.guard import ResourceGuard, route_path, uses_dpop
from bastion._resource.jsonrpc import DEFAULT_MAX_BODY_SIZE, BodyTooLarge, read_body, replay, targets
from bastion._resource.list_filter import UNRESTRICTED
from bastion._resource.policy import Policy
from bastion._resource.tokens import AccessToken, authenticated_user

__all__ = ["DEFAULT_MAX_BODY_SIZE", "AuthMiddleware", "route_path"]

#: Tokens whose decisions are remembered (see AuthMiddleware._memo); about 300 bytes each.
_MAX_MEMOS = 1024


def _content_type(scope: Scope) -> str:
    """The request's ``Content-Type``, read from the raw headers (ASGI names are lower-case)."""
    for name, value in scope["headers"]:
        if name == b"content-type":
            return bytes(value).decode("latin-1")
    return ""


class AuthMiddleware:
    """Protect an ASGI app.

    Args:
        app: The app to protect.
        guard: Authentication, policies and challenges.
        mcp_path: The MCP endpoint, whose JSON-RPC bodies are inspected for policy
            targets (``None``: no such endpoint).
        is_protected: Which paths need a token; default: every path but the metadata.
        max_body_size: The largest JSON-RPC body read (413 past it).
        request_policy: A policy every protected request must satisfy.
    """

    def __init__(
        self,
        app: ASGIApp,
        guard: ResourceGuard,
        *,
        mcp_path: str | None = "/mcp",
        is_protected: Callable[[str], bool] | None = None,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
        request_policy: Policy | None = None,
    ) -> None:
        self.app = app
        self.guard = guard
        self.mcp_path = mcp_path.rstrip("/") if mcp_path else None
        self.is_protected = is_protected or (lambda _path: True)
        self.max_body_size = max_body_size
        self.request_policy = request_policy
        self._metadata_paths = frozenset(guard.metadata_paths())
        self._memos: dict[int, tuple[AccessToken, object, tuple[bool, AuthenticatedUser, AuthCredentials]]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, self._watch_shutdown(receive), send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        entered = enter_request(scope)  # the audit events of this request name its address and id
        try:
            await self._http(scope, receive, send)
        finally:
            leave_request(entered)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = route_path(scope)
        if path in self._metadata_paths:
            await self._serve_metadata(scope, receive, send)
            return
        if scope["method"] == "OPTIONS" or not self.is_protected(path):
            await self.app(scope, receive, send)
            return

        token = self.guard.seen(scope)  # the hot path: a bearer token verified before
        conn = HTTPConnection(scope)
        body: bytes | None = None
        if token is None:
            if self.guard.dpop is not None and uses_dpop(scope):
                # A DPoP proof digests the body (the MCP profile's content_digest): read it first.
                read = await self._read_body(scope, receive, send)
                if read is None:
                    return
                body, receive = read
            result = await self.guard.authenticate(conn, body)
            if isinstance(result, Response):
                await result(scope, receive, send)
                return
            token = result
        if self.request_policy is not None:
            decision = await self.guard.decide_policy(self.request_policy, "request", path, token, conn)
            if not decision.allowed:
                await (await self.guard.refused(conn, decision, "request", path, token))(scope, receive, send)
                return

        # When no policy can refuse this caller, neither this layer nor the SDK's need look
        # at what the request targets.
        unrestricted, user, credentials = self._memo(token)
        if scope["method"] == "POST":
            content_type = _content_type(scope)
            is_mcp = not unrestricted and self.mcp_path is not None and path.rstrip("/") == self.mcp_path
            if is_mcp or content_type.startswith("application/x-www-form-urlencoded"):
                if body is None:
                    read = await self._read_body(scope, receive, send)
                    if read is None:
                        return
                    body, receive = read
                refusal = await self._check_body(conn, token, body, is_mcp, content_type)
                if refusal is not None:
                    await refusal(scope, receive, send)
                    return

        scope["user"] = user
        scope["auth"] = credentials
        reset = auth_context_var.set(user)
        reset_unrestricted = UNRESTRICTED.set(self.guard.registry) if unrestricted else None
        try:
            await self.app(scope, receive, send)
        finally:
            if reset_unrestricted is not None:
                UNRESTRICTED.reset(reset_unrestricted)
            auth_context_var.reset(reset)

    async def _read_body(self, scope: Scope, receive: Receive, send: Send) -> tuple[bytes, Receive] | None:
        """The body, and a ``receive`` that hands it to the app again; ``None`` once a 413 is sent."""
        try:
            body, trailing = await read_body(receive, self.max_body_size)
        except BodyTooLarge:
            await PlainTextResponse("Request body too large", status_code=413)(scope, receive, send)
            return None
        return body, replay(body, trailing, receive)

    def _memo(self, token: AccessToken) -> tuple[bool, AuthenticatedUser, AuthCredentials]:
        """What every request with ``token`` gets: whether no policy can refuse it, and the SDK's user objects.

        Decided once per verified token (the cache hands out the same object) and registry
        version, not once per request; a bounded table, emptied when full.
        """
        registry = self.guard.registry
        version = registry.version
        entry = self._memos.get(id(token))
        if entry is not None and entry[0] is token and entry[1] == version:
            return entry[2]
        memo = (registry.allows_everything(token), authenticated_user(token), AuthCredentials(token.scopes))
        if len(self._memos) >= _MAX_MEMOS:
            self._memos.clear()
        # The entry holds the token, so its id is not reused while the entry lives.
        self._memos[id(token)] = (token, version, memo)
        return memo

    async def _check_body(
        self, conn: HTTPConnection, token: AccessToken, body: bytes, is_mcp: bool, content_type: str
    ) -> Response | None:
        if content_type.startswith("application/x-www-form-urlencoded"):
            # RFC 6750 section 2.2 (form-encoded body parameter) is not supported.
            try:
                fields = parse_qs(body.decode("latin-1"), max_num_fields=1000)
            except ValueError:
                fields = {}
            if "access_token" in fields:
                return self.guard.challenge(
                    conn, 400, "invalid_request", "Send the access token in the Authorization header"
                )
        if not is_mcp:
            return None
        for kind, name, rpc_id in targets(body):
            decision = await self.guard.decide(kind, name, token, conn)
            if not decision.allowed:
                return await self.guard.refused(conn, decision, kind, name, token, rpc_id=rpc_id, jsonrpc=True)
        return None

    async def _serve_metadata(self, scope: Scope, receive: Receive, send: Send) -> None:
        conn = HTTPConnection(scope)
        method = scope["method"]
        response: Response
        if method == "OPTIONS":
            response = Response(
                status_code=204,
                headers={
                    "Access-Control-Allow-Origin": "*",
                    "Access-Control-Allow-Methods": "GET, OPTIONS",
                    "Access-Control-Allow-Headers": "*",
                    "Access-Control-Max-Age": "86400",
                },
            )
        elif method in ("GET", "HEAD"):
            response = self.guard.metadata_response(conn)
        else:
            response = PlainTextResponse("Method Not Allowed", status_code=405, headers={"Allow": "GET, OPTIONS"})
        await response(scope, receive, send)

    def _watch_shutdown(self, receive: Receive) -> Receive:
        verifier = self.guard.verifier

        async def watched() -> Message:
            message = await receive()
            if message["type"] == "lifespan.shutdown":
                await verifier.aclose()
            return message

        return watched
