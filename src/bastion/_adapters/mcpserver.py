"""``bastion.MCPServer``: the SDK's ``MCPServer`` as an OAuth 2.1 protected resource."""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast
from urllib.parse import urlsplit

from mcp.server.auth.middleware.auth_context import auth_context_var
from mcp.server.mcpserver import MCPServer as SDKMCPServer
from mcp.server.transport_security import DEFAULT_MAX_REQUEST_BODY_SIZE
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response

from bastion._adapters.health import Readiness, liveness_response
from bastion._adapters.scrape import metrics_endpoint
from bastion._config.auth import from_env
from bastion._config.settings import server_settings
from bastion._core.audit import Audit
from bastion._core.errors import AuthenticationError, AuthorizationError, ConfigurationError, KeysUnavailable
from bastion._core.net import is_loopback_host
from bastion._resource.dpop import DPoPOptions, dpop_options
from bastion._resource.guard import ResourceGuard
from bastion._resource.list_filter import ListVisibility, PolicyEnforcement
from bastion._resource.metadata import ResourceMetadata, advertised_scopes
from bastion._resource.middleware import AuthMiddleware
from bastion._resource.policy import PolicyLike, ScopeHierarchy, as_policy, require_auth
from bastion._resource.registry import PolicyRegistry
from bastion._resource.tokens import AccessToken, authenticated_user
from bastion._resource.verifier import Verifier
from bastion.authserver._server import AuthorizationServer

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = ["MCPServer"]

logger = logging.getLogger("bastion")

_F = TypeVar("_F", bound=Callable[..., Any])
_Endpoint = Callable[[Request], Awaitable[Response]]


def _name_the_service(server: AuthorizationServer, name: str | None) -> None:
    """Name the service on the sign-in pages after this MCP server, unless its branding names it."""
    if name is None or server.branding.service_name is not None:
        return
    with contextlib.suppress(ConfigurationError):  # a name the pages cannot show: they keep the issuer's host
        server.branding = replace(server.branding, service_name=name)


class MCPServer(SDKMCPServer[Any]):
    """An MCP server whose HTTP endpoint is an OAuth 2.1 protected resource.

    Everything the SDK's ``MCPServer`` does still works; this adds:

    Args:
        name: The server's name.
        auth: The verifier of bearer tokens (for example a :class:`~bastion.JWTVerifier`),
            or an :class:`~bastion.AuthorizationServer`, which is then served by this
            server too and verifies its own tokens. When omitted and ``BASTION_AUTH``
            is set, built by :func:`bastion.from_env`.
        resource_url: The canonical URL of the MCP endpoint (RFC 8707/9728). Omit it in
            development to derive it from each request (a warning is logged once).
            Defaults to ``BASTION_RESOURCE_URL``.
        default_policy: The policy of tools, resources and prompts registered without
            ``auth=`` (default: any authenticated caller).
        scope_hierarchy: Which scopes imply which, e.g. ``{"notes:admin": ["notes:read"]}``.
        authorization_servers: The issuers advertised in the resource metadata
            (default: the verifier's issuer).
        scopes_supported: The scopes advertised (default: every scope the policies use).
        resource_name: A human-readable name for the metadata document.
        resource_documentation: A URL of documentation for the metadata document.
        initial_scopes: The scopes a first sign-in should ask for: the 401 challenge names
            them, with what ``default_policy`` and the verifier require. Default:
            ``BASTION_INITIAL_SCOPES``; without it, and when nothing is required, every
            scope the policies use. Never ``offline_access``.
        list_visibility: What ``tools/list`` and the other lists show a caller:
            ``"discoverable"`` (default) what it may use and what more scope would unlock
            (so a client can call it and step up); ``"strict"`` only what it may use now.
            What a role or a custom policy refuses is never listed.
        allow_unauthenticated: Serve HTTP without authentication on a host other than
            loopback (``host="0.0.0.0"``), for a server that something in front of it
            authenticates (``protect()``, a gateway). Without ``auth=`` and
            ``BASTION_AUTH``, building the HTTP app logs a warning, and refuses a
            non-loopback host unless this is ``True``. Default:
            ``BASTION_ALLOW_UNAUTHENTICATED``.
        dpop: DPoP-bound tokens (RFC 9449, the MCP DPoP profile): on by default, so a
            token bound to a key is accepted with a proof of that key and bearer tokens
            as before; :class:`~bastion.DPoPOptions` to require DPoP or tune it,
            ``False`` to accept bearer tokens only. Default: ``BASTION_DPOP`` (``on``,
            ``required``, ``off``). With an authorization server, used proofs are
            remembered in its store, shared by its replicas.
        **kwargs: Everything the SDK's ``MCPServer`` takes.

    Refused calls are audit events (``call.refused``) of :attr:`audit`: the authorization
    server's when ``auth=`` is one, so one trail holds both.
    """

    def __init__(
        self,
        name: str | None = None,
        *args: Any,
        auth: Verifier | AuthorizationServer | None = None,
        resource_url: str | None = None,
        default_policy: PolicyLike = require_auth,
        scope_hierarchy: Mapping[str, Iterable[str]] | None = None,
        authorization_servers: Sequence[str] | None = None,
        scopes_supported: Sequence[str] | None = None,
        resource_name: str | None = None,
        resource_documentation: str | None = None,
        initial_scopes: Sequence[str] | None = None,
        list_visibility: ListVisibility = "discoverable",
        allow_unauthenticated: bool | None = None,
        dpop: DPoPOptions | bool | None = None,
        **kwargs: Any,
    ) -> None:
        if auth is not None and not isinstance(auth, (Verifier, AuthorizationServer)):
            raise ConfigurationError(
                "auth= takes a bastion verifier (JWTVerifier, IntrospectionVerifier, APIKeyVerifier, ...) "
                "or an AuthorizationServer; for the SDK's AuthSettings use mcp.server.MCPServer"
            )
        super().__init__(name, *args, **kwargs)
        settings = server_settings()  # BASTION_* through the validated settings
        if auth is None and settings.auth is not None:
            auth = from_env()
        resource_url = resource_url or settings.resource_url
        if initial_scopes is None:
            initial_scopes = settings.initial_scopes
        if allow_unauthenticated is None:
            allow_unauthenticated = settings.allow_unauthenticated
        self.allow_unauthenticated = allow_unauthenticated
        self.authorization_server: AuthorizationServer | None = None
        if isinstance(auth, AuthorizationServer):
            self.authorization_server = auth
            _name_the_service(auth, resource_name or name)
            if resource_url is not None:
                auth.set_issuer(_origin(resource_url))
            auth = auth.resource_verifier(resource_url)  # this endpoint's tokens only
        self.verifier: Verifier | None = auth
        self.registry = PolicyRegistry(default_policy, ScopeHierarchy(scope_hierarchy))
        self._resource_url = resource_url
        self._initial_scopes = initial_scopes
        if dpop is None:
            dpop = DPoPOptions(required=True) if settings.dpop == "required" else settings.dpop == "on"
        store = self.authorization_server.store if self.authorization_server is not None else None
        self._dpop = dpop_options(dpop, store)
        self._metadata = ResourceMetadata(
            authorization_servers=tuple(authorization_servers or ()),
            scopes_supported=tuple(scopes_supported or ()),
            resource_name=resource_name or name,
            resource_documentation=resource_documentation,
        )
        self._audit = self.authorization_server.audit if self.authorization_server is not None else Audit()
        self._guard: ResourceGuard | None = None
        if auth is not None:
            self._guard = self._make_guard(resource_path="/mcp")
        self._enforcement = PolicyEnforcement(
            self.registry,
            enforce_default=auth is not None,
            list_visibility=list_visibility,
            known_scopes=self._known_scopes,
        )
        self._enforcement.audit = self._audit
        self.middleware.append(self._enforcement)

    @property
    def audit(self) -> Audit:
        """Where refused calls are reported; with an authorization server, the server's :attr:`audit`.

        Add a sink (``mcp.audit.add_sink(fn)``) or assign another :class:`~bastion.Audit`
        before serving: an assignment reaches the authorization server too.
        """
        if self.authorization_server is not None:
            return self.authorization_server.audit
        return self._audit

    @audit.setter
    def audit(self, audit: Audit) -> None:
        self._audit = audit
        if self.authorization_server is not None:
            self.authorization_server.audit = audit
        self._share_audit()

    def _share_audit(self) -> None:
        audit = self.audit
        self._enforcement.audit = audit
        if self._guard is not None:
            self._guard.audit = audit

    def _make_guard(self, resource_path: str) -> ResourceGuard:
        assert self.verifier is not None
        guard = ResourceGuard(
            self.verifier,
            resource_url=self._resource_url,
            resource_path=resource_path,
            metadata=self._metadata,
            registry=self.registry,
            initial_scopes=self._initial_scopes,
            dpop=self._dpop,
        )
        guard.audit = self.audit
        return guard

    def _known_scopes(self) -> frozenset[str]:
        if self._guard is not None:
            return self._guard.known_scopes()
        # No verifier of its own: an outer layer (protect()) may still have put a token in context.
        advertised = advertised_scopes(self._metadata.scopes_supported or self.registry.scopes())
        return frozenset(advertised) | self.registry.hierarchy.scopes()

    # -- registration with policies -----------------------------------------

    def tool(
        self, name: str | None = None, *args: Any, auth: PolicyLike | None = None, **kwargs: Any
    ) -> Callable[[_F], _F]:
        """Register a tool, as the SDK does; ``auth=`` sets who may list and call it."""
        register = super().tool(name, *args, **kwargs)

        def decorator(fn: _F) -> _F:
            register(fn)
            self.registry.set("tool", name or fn.__name__, auth)
            return fn

        return decorator

    def add_tool(self, fn: Callable[..., Any], name: str | None = None, *args: Any, **kwargs: Any) -> None:
        """Add a tool, as the SDK does; ``auth=`` sets who may list and call it."""
        auth: PolicyLike | None = kwargs.pop("auth", None)
        super().add_tool(fn, name, *args, **kwargs)
        if auth is not None:
            self.registry.set("tool", name or fn.__name__, auth)

    def resource(self, uri: str, *, auth: PolicyLike | None = None, **kwargs: Any) -> Callable[[_F], _F]:
        """Register a resource or template, as the SDK does; ``auth=`` sets who may list and read it."""
        register = super().resource(uri, **kwargs)

        def decorator(fn: _F) -> _F:
            register(fn)
            self.registry.set_resource(uri, auth)
            return fn

        return decorator

    def prompt(
        self, name: str | None = None, *args: Any, auth: PolicyLike | None = None, **kwargs: Any
    ) -> Callable[[_F], _F]:
        """Register a prompt, as the SDK does; ``auth=`` sets who may list and get it."""
        register = super().prompt(name, *args, **kwargs)

        def decorator(fn: _F) -> _F:
            register(fn)
            self.registry.set("prompt", name or fn.__name__, auth)
            return fn

        return decorator

    def custom_route(
        self,
        path: str,
        methods: list[str],
        name: str | None = None,
        include_in_schema: bool = True,
        *,
        auth: PolicyLike | None = None,
    ) -> Callable[[_Endpoint], _Endpoint]:
        """Add an HTTP route, as the SDK does. Without ``auth=`` the route is public;
        with it, the caller needs a valid token that satisfies the policy."""
        register = cast(
            Callable[[_Endpoint], _Endpoint],
            super().custom_route(path, methods, name=name, include_in_schema=include_in_schema),
        )
        if auth is None:
            return register
        policy = as_policy(auth)
        self.registry.add_scopes(policy.scopes())

        def decorator(fn: _Endpoint) -> _Endpoint:
            @functools.wraps(fn)
            async def guarded(request: Request) -> Response:
                guard = self._require_guard()
                result = await guard.authenticate(request)
                if isinstance(result, Response):
                    return result
                decision = await guard.decide_policy(policy, "route", path, result, request)
                if not decision.allowed:
                    return await guard.refused(request, decision, "route", path, result)
                return await _call_as(result, fn, request, guard)

            register(guarded)
            return fn

        return decorator

    @property
    def guard(self) -> ResourceGuard | None:
        """The resource guard (authentication, policies, challenges), or ``None`` without auth."""
        return self._guard

    def _require_guard(self) -> ResourceGuard:
        if self._guard is None:
            raise ConfigurationError("a route with auth= needs a verifier: pass auth= to MCPServer")
        return self._guard

    # -- operations -----------------------------------------------------------

    def serve_metrics(self, path: str = "/metrics", *, registry: CollectorRegistry | None = None) -> None:
        """Serve bastion's metrics to Prometheus at ``path`` (call before running the server).

        Without ``registry``, bastion's own Prometheus registry, turning on
        ``bastion.instrument(prometheus=True)`` unless bastion is instrumented already
        (needs ``mcp-bastion[prometheus]``); with it, that registry (the one your own
        ``PrometheusMetricReader`` writes to). The endpoint takes no token: make it
        reachable only from inside the deployment.
        """
        endpoint = metrics_endpoint(registry, self.authorization_server)
        self.custom_route(path, ["GET"], include_in_schema=False)(endpoint)

    def serve_health(
        self, *, healthz: str = "/healthz", readyz: str = "/readyz", timeout: float = 5.0, min_interval: float = 1.0
    ) -> Readiness:
        """Answer liveness at ``healthz`` and readiness at ``readyz``, without authentication (call before running).

        ``readyz`` is 503 with ``Retry-After`` while the authorization server's store or
        signing keys, or the verifier's key set or metadata document, cannot be had; the
        response never says which (the log does). A check runs at most once per
        ``min_interval`` seconds and within ``timeout``.
        """
        readiness = Readiness(self.verifier, self.authorization_server, timeout=timeout, min_interval=min_interval)

        async def alive(request: Request) -> Response:
            return liveness_response()

        self.custom_route(healthz, ["GET"], include_in_schema=False)(alive)
        self.custom_route(readyz, ["GET"], include_in_schema=False)(readiness.response)
        return readiness

    # -- serving ------------------------------------------------------------

    def streamable_http_app(self, **kwargs: Any) -> Starlette:
        """The SDK's streamable HTTP app, protected. Takes every option the SDK's does.

        Raises:
            ConfigurationError: there is no verifier, ``host`` is not loopback, and
                ``allow_unauthenticated`` is not set.
        """
        if self.verifier is None:
            self._serving_unauthenticated(kwargs.get("host", "127.0.0.1"), "")
            return super().streamable_http_app(**kwargs)
        app = super().streamable_http_app(**kwargs)
        path = kwargs.get("streamable_http_path", "/mcp")
        guard = self._make_guard(resource_path=path)
        self._guard = guard
        self._share_audit()  # the authorization server's audit may have been replaced since
        if self.authorization_server is not None:
            self.authorization_server.mount(app)
        app.add_middleware(
            AuthMiddleware,
            guard=guard,
            mcp_path=path,
            is_protected=lambda p: p.rstrip("/") == path.rstrip("/"),
            max_body_size=kwargs.get("max_request_body_size", DEFAULT_MAX_REQUEST_BODY_SIZE),
        )
        return app

    def sse_app(self, **kwargs: Any) -> Starlette:
        """The SDK's SSE app, which bastion does not protect (use the streamable HTTP transport).

        Raises:
            ConfigurationError: ``host`` is not loopback and ``allow_unauthenticated`` is not set.
        """
        self._serving_unauthenticated(kwargs.get("host", "127.0.0.1"), "the SSE transport of ")
        return super().sse_app(**kwargs)

    def _serving_unauthenticated(self, host: str, what: str) -> None:
        """Warn that nothing authenticates; refuse a host beyond loopback unless that was meant."""
        served = f"{what}MCPServer {self.name!r}"
        if not self.allow_unauthenticated and not is_loopback_host(host):
            raise ConfigurationError(
                f"{served} has no authentication and would serve every tool to anyone who can reach {host!r}: "
                "pass auth= (or set BASTION_AUTH), or allow_unauthenticated=True (BASTION_ALLOW_UNAUTHENTICATED=1) "
                "when something in front of it authenticates"
            )
        if self.allow_unauthenticated:
            logger.warning(
                "%s has no authentication of its own (allow_unauthenticated): unless something in front of it "
                "authenticates, every tool, resource and prompt is open to anyone who can reach it",
                served,
            )
        else:
            logger.warning(
                "%s has NO AUTHENTICATION: every tool, resource and prompt is open to anyone who can reach it. "
                "Pass auth= or set BASTION_AUTH; only loopback hosts are served this way",
                served,
            )

    def run(self, transport: Literal["stdio", "sse", "streamable-http", "http"] = "stdio", **kwargs: Any) -> None:
        """Run the server; ``transport="http"`` is the streamable HTTP transport, protected."""
        if transport == "http":
            transport = "streamable-http"
        if self.verifier is not None and transport != "streamable-http":
            logger.warning("bearer authentication applies to HTTP only; transport %r is not protected", transport)
        super().run(transport, **kwargs)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


async def _call_as(token: AccessToken, fn: _Endpoint, request: Request, guard: ResourceGuard) -> Response:
    request.scope["user"] = authenticated_user(token)
    reset = auth_context_var.set(request.scope["user"])
    try:
        return await fn(request)
    except (AuthenticationError, AuthorizationError) as exc:
        return await guard.refused_error(request, exc, token, "route")
    except KeysUnavailable as exc:
        return guard.unavailable(exc)
    finally:
        auth_context_var.reset(reset)
