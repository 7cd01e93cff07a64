"""FastAPI integration: dependencies that return the verified token, and a protected MCP mount.

::

    from fastapi import Depends, FastAPI
    from bastion import AccessToken, JWTVerifier
    from bastion.fastapi import Bastion

    bastion = Bastion(auth=JWTVerifier(...), resource_url="https://api.example.com")
    app = FastAPI()
    bastion.install(app)

    @app.get("/notes")
    async def notes(token: Annotated[AccessToken, Depends(bastion.require_scopes("notes:read"))]) -> list[str]:
        ...

    bastion.mount_mcp(app, mcp, path="/notes")   # the MCP endpoint at /notes/mcp, same tokens
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from starlette.requests import HTTPConnection
from starlette.responses import Response

from bastion._adapters.mcpserver import MCPServer
from bastion._resource.dpop import DPoPOptions, dpop_options
from bastion._resource.guard import ResourceGuard
from bastion._resource.metadata import WELL_KNOWN, ResourceMetadata
from bastion._resource.policy import PolicyLike, as_policy, require_auth, require_role, require_scopes
from bastion._resource.registry import PolicyRegistry
from bastion._resource.tokens import AccessToken, authenticated_user
from bastion._resource.verifier import Verifier
from bastion.authserver._server import AuthorizationServer

__all__ = ["Bastion"]

Dependency = Callable[[Request], Awaitable[AccessToken]]


class Bastion:
    """Bearer authentication for a FastAPI app.

    Args:
        auth: The verifier, or an :class:`~bastion.AuthorizationServer` (or a
            provider's OAuth proxy), whose endpoints :meth:`install` then serves too.
        resource_url: The canonical URL of the API (RFC 9728 ``resource``).
        authorization_servers: Issuers for the metadata (default: the verifier's).
        scopes_supported: Scopes for the metadata (default: those the dependencies use).
        initial_scopes: Scopes the 401 challenge names for a first sign-in, besides what
            the verifier requires (default: when nothing is required, the scopes the
            dependencies use).
        dpop: DPoP-bound tokens (RFC 9449): on by default, :class:`~bastion.DPoPOptions`
            to require or tune it, ``False`` for bearer tokens only. With an authorization
            server, used proofs are remembered in its store.
    """

    def __init__(
        self,
        auth: Verifier | AuthorizationServer,
        *,
        resource_url: str | None = None,
        authorization_servers: Sequence[str] = (),
        scopes_supported: Sequence[str] = (),
        initial_scopes: Sequence[str] | None = None,
        dpop: DPoPOptions | bool = True,
    ) -> None:
        self.authorization_server = auth if isinstance(auth, AuthorizationServer) else None
        verifier = auth.resource_verifier(resource_url) if isinstance(auth, AuthorizationServer) else auth
        self.guard = ResourceGuard(
            verifier,
            resource_url=resource_url,
            metadata=ResourceMetadata(
                authorization_servers=tuple(authorization_servers), scopes_supported=tuple(scopes_supported)
            ),
            registry=PolicyRegistry(),
            initial_scopes=initial_scopes,
            dpop=dpop_options(dpop, self.authorization_server.store if self.authorization_server else None),
        )
        if self.authorization_server is not None:
            self.guard.audit = self.authorization_server.audit  # one audit trail for both

    def install(self, app: FastAPI) -> None:
        """Serve the API's protected resource metadata and close the verifier on shutdown."""

        async def metadata(request: Request) -> Response:
            return self.guard.metadata_response(request)

        for path in self.guard.metadata_paths():
            app.add_api_route(path, metadata, methods=["GET"], include_in_schema=False)
        if self.authorization_server is not None:
            self.authorization_server.mount(app)
        self._chain_lifespan(app, self._closing)

    @asynccontextmanager
    async def _closing(self) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await self.guard.verifier.aclose()

    def require(self, policy: PolicyLike = require_auth) -> Dependency:
        """A dependency that returns the verified token when ``policy`` allows, else 401/403/503."""
        resolved = as_policy(policy)
        self.guard.registry.add_scopes(resolved.scopes())

        async def dependency(request: Request) -> AccessToken:
            result = await self.guard.authenticate(request)
            if isinstance(result, Response):
                raise _as_exception(result)
            decision = await self.guard.decide_policy(resolved, "route", request.url.path, result, request)
            if not decision.allowed:
                raise _as_exception(await self.guard.refused(request, decision, "route", request.url.path, result))
            request.scope["user"] = authenticated_user(result)
            return result

        return dependency

    def require_auth(self) -> Dependency:
        """A dependency for any authenticated caller."""
        return self.require(require_auth)

    def require_scopes(self, *scopes: str) -> Dependency:
        """A dependency for a caller whose token grants every one of ``scopes``."""
        return self.require(require_scopes(*scopes))

    def require_role(self, *roles: str) -> Dependency:
        """A dependency for a caller with at least one of ``roles``."""
        return self.require(require_role(*roles))

    def mount_mcp(self, app: FastAPI, mcp: MCPServer, path: str = "/mcp-server", **options: Any) -> None:
        """Mount ``mcp``'s protected streamable HTTP app under ``path``.

        The MCP endpoint is then ``<path>/mcp``; its metadata is also served at the
        host root (``/.well-known/oauth-protected-resource<path>/mcp``, where RFC 9728
        clients look), and the MCP session manager runs with the FastAPI app's lifespan.
        ``options`` go to ``streamable_http_app()``.
        """
        path = "/" + path.strip("/")
        sub = mcp.streamable_http_app(**options)
        app.mount(path, sub)
        guard = mcp.guard
        if guard is not None:
            mcp_path = options.get("streamable_http_path", "/mcp")

            async def metadata(request: Request) -> Response:
                mounted = HTTPConnection({**request.scope, "root_path": request.scope.get("root_path", "") + path})
                return guard.metadata_response(mounted)

            app.add_api_route(WELL_KNOWN + path + mcp_path, metadata, methods=["GET"], include_in_schema=False)
        self._chain_lifespan(app, mcp.session_manager.run)

    @staticmethod
    def _chain_lifespan(app: FastAPI, extra: Callable[[], AbstractAsyncContextManager[Any]]) -> None:
        original = app.router.lifespan_context

        @asynccontextmanager
        async def chained(application: Any) -> AsyncIterator[Any]:
            async with extra(), original(application) as state:
                yield state

        app.router.lifespan_context = chained


def _as_exception(response: Response) -> HTTPException:
    try:
        body = json.loads(bytes(response.body))
    except ValueError:  # not one of the guard's JSON answers: its text
        body = bytes(response.body).decode("utf-8", "replace")
    kept = ("www-authenticate", "cache-control", "retry-after")
    headers: dict[str, str] = {}
    for name, value in response.headers.items():
        if name.lower() in kept:
            # An exception holds one value per header: several challenges go in one field (RFC 9110 section 11.6.1).
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return HTTPException(status_code=response.status_code, detail=body, headers=headers)
