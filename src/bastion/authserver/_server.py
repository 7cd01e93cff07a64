"""``AuthorizationServer``: bastion's own OAuth 2.1 authorization server.

This module puts the server together: its configuration (the grouped settings
of ``_settings``) and the shared services (store, keys, clients, codes, grants,
tokens), each in a module of its own; each endpoint lives in its own module and
receives the server. :meth:`AuthorizationServer.routes` gives the Starlette routes, which
``bastion.MCPServer`` mounts beside the MCP endpoint when ``auth=`` is an
authorization server.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from os import PathLike
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.routing import BaseRoute

from bastion._core.audit import Audit
from bastion._core.errors import ConfigurationError, UpstreamUnavailable
from bastion._core.log import ThrottledLog
from bastion._core.net import is_loopback_host, is_loopback_url
from bastion._resource.metadata import canonical_resource
from bastion._resource.tokens import AccessToken
from bastion.authserver._access import AccessTokenIssuer, AuthServerVerifier
from bastion.authserver._admin import Admin
from bastion.authserver._audit_log import DEFAULT_RETENTION, AuditStore, retention_from_env
from bastion.authserver._branding import Branding
from bastion.authserver._browser.login import LoginStep
from bastion.authserver._cimd import CIMDResolver
from bastion.authserver._clients import ClientRegistry
from bastion.authserver._codes import CodeStore
from bastion.authserver._dpop import TokenProofs
from bastion.authserver._edge import AuthServerEdge
from bastion.authserver._errors import InvalidScope, InvalidTarget
from bastion.authserver._fetch import SafeFetcher
from bastion.authserver._grant_operations import GrantOperations
from bastion.authserver._grant_records import GrantStore
from bastion.authserver._issuer import canonical_issuer, default_store
from bastion.authserver._keyring import KeyRing
from bastion.authserver._models import Client, User, as_scopes
from bastion.authserver._revocations import RevocationFeed
from bastion.authserver._routes import build_routes
from bastion.authserver._settings import DPoPSettings, Registration, Signing, TokenLifetimes
from bastion.storage import ObservedStore, Store

__all__ = ["AuthorizationServer", "UserCheck"]

logger = logging.getLogger("bastion")

#: The username/password check: ``(username, password) -> User | subject | None``, sync or async.
UserCheck = Callable[[str, str], "Awaitable[User | str | None] | User | str | None"]

#: Scopes the server always understands, whatever the configuration says.
BUILTIN_SCOPES = {"offline_access": "Stay signed in"}


class AuthorizationServer(GrantOperations):
    """An OAuth 2.1 authorization server for MCP clients, durable on a :class:`~bastion.storage.Store`.

    Args:
        issuer: Its issuer URL (same origin as the MCP server, or its own). When
            omitted, the origin of the ``MCPServer``'s resource URL.
        store: Where clients, codes, tokens, consents and keys live. Default: the
            store ``BASTION_STORE`` names (``redis://host:6379/0`` for several replicas),
            else a SQLite file under the user's data directory, named after the issuer
            (``~/.local/share/bastion/notes.example.com.db``).
        users: The username/password check of the built-in login page.
        login: A login step instead of ``users`` (the proxy plugs an upstream
            identity provider in here).
        scopes: The scopes clients may ask for, with the description shown on the
            consent page (a mapping), or just their names.
        default_scopes: Scopes granted when a client asks for none.
        clients: Pre-registered clients: :class:`Client` objects, or the path of a
            JSON file holding a list of client metadata objects.
        resources: The resource URLs tokens may be issued for; the ``MCPServer``
            adds its own.
        lifetimes: How long access tokens, refresh tokens (and the grace of a
            rotated one) and codes live: a :class:`TokenLifetimes`.
        registration: Whether ``/register`` is open and how often, whether URL
            client ids are accepted, and the outbound HTTP policy for their
            documents and ``jwks_uri`` (in development, loopback origins fetched
            anyway: refused unless the issuer is loopback): a :class:`Registration`.
        signing: The access tokens' signing algorithm and key rotation: a :class:`Signing`.
        dpop: How DPoP proofs (RFC 9449) bind tokens to a client's key: required or not,
            the algorithms, server nonces: a :class:`DPoPSettings`. A client sending a
            proof gets DPoP-bound tokens, one sending none bearer tokens, by default.
        branding: The service's name, logo, accent colour and support link on the
            sign-in, consent and account pages: a :class:`Branding`.
        identity_assertion_issuers: For ID-JAG: trusted identity provider issuer
            -> its JWKS URL.
        auto_approve: Sign every authorization in as this user and approve it
            without pages. Development only: refused unless the issuer is loopback.
        clock: Seconds since the epoch; injectable for tests.

    Every security decision (sign-ins, consents, codes, tokens, revocations, refused
    registrations...) is an event of :attr:`audit`, written to the ``bastion.audit``
    logger; ``server.audit.add_sink(fn)`` sends them to ``fn`` too, and
    :meth:`keep_audit` (or ``BASTION_AUDIT_RETENTION``) keeps them in the store for
    ``bastion audit``.
    """

    def __init__(
        self,
        issuer: str | None = None,
        *,
        store: Store | None = None,
        users: UserCheck | None = None,
        login: LoginStep | None = None,
        scopes: Mapping[str, str] | Sequence[str] | None = None,
        default_scopes: Sequence[str] | None = None,
        clients: Iterable[Client] | str | PathLike[str] | None = None,
        resources: Sequence[str] = (),
        lifetimes: TokenLifetimes | None = None,
        registration: Registration | None = None,
        signing: Signing | None = None,
        dpop: DPoPSettings | None = None,
        branding: Branding | None = None,
        identity_assertion_issuers: Mapping[str, str] | None = None,
        auto_approve: User | str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.issuer: str | None = None if issuer is None else canonical_issuer(issuer)
        self.store: Store = default_store(self.issuer) if store is None else store
        self.store = ObservedStore.when_instrumented(self.store)  # timed, when bastion.instrument() came first
        self.clock = clock
        self._audit = Audit(clock=clock)
        #: Where the endpoints report a store outage: once a minute with a count, not per request.
        self.outages = ThrottledLog(logger, clock=clock)
        if isinstance(scopes, Mapping):
            self.scopes: dict[str, str] = {str(k): str(v) for k, v in scopes.items()}
        else:
            self.scopes = {name: name for name in scopes or ()}
        for name in self.scopes:
            if not name or any(c in name for c in ' "\\') or not name.isprintable():
                raise ConfigurationError(f"invalid scope name {name!r} (RFC 6749 section 3.3)")
        self.default_scopes = as_scopes(default_scopes)
        unknown = [s for s in self.default_scopes if s not in self.scopes]
        if unknown:
            raise ConfigurationError(f"default_scopes names unknown scopes: {unknown}")
        self.resources: list[str] = [canonical_resource(r) for r in resources]
        self.lifetimes = lifetimes if lifetimes is not None else TokenLifetimes()
        self.registration = registration if registration is not None else Registration()
        self.signing = signing if signing is not None else Signing()
        self.dpop = dpop if dpop is not None else DPoPSettings()
        self.branding = branding if branding is not None else Branding()
        self.identity_assertion_issuers = dict(identity_assertion_issuers or {})
        if users is not None and login is not None:
            raise ConfigurationError("give users= or login=, not both")
        self.users = users
        self.login_step = login
        if isinstance(auto_approve, str):
            auto_approve = User(subject=auto_approve, name=auto_approve)
        self.auto_approve = auto_approve
        self.grants = GrantStore(self.store, self.lifetimes, clock)
        self.codes = CodeStore(self.store, ttl=self.lifetimes.code, on_replay=self._code_replayed)
        self.fetcher: SafeFetcher = self.registration.build_fetcher()
        self.cimd = CIMDResolver(self.fetcher, self.store, clock=clock, audit=self._audit)
        self.clients = ClientRegistry(
            self.store,
            () if clients is None else clients,
            metadata_documents=self.cimd if self.registration.metadata_documents else None,
        )
        self.keys = KeyRing(
            self.store,
            algorithm=self.signing.algorithm,
            rotation=self.signing.rotation,
            overlap=self.lifetimes.access_token + 300.0,
            clock=clock,
        )
        self.access_tokens = AccessTokenIssuer(self, self.keys)
        #: The token endpoint's DPoP proofs: their checks, used ``jti`` values, nonces.
        self.dpop_proofs = TokenProofs(self)
        # Every verifier made, so a revocation clears every cache; weak, not to keep a dropped one alive.
        self._verifiers: weakref.WeakSet[AuthServerVerifier] = weakref.WeakSet()
        self.revocations = RevocationFeed(self.store, self.on_revocation)
        self._verifier: AuthServerVerifier | None = None
        self._any_resource_verifier: AuthServerVerifier | None = None
        self._static_clients = clients
        self._admin: Admin | None = None
        self._started = False
        self._check_auto_approve()
        self._check_development_origins(self.issuer)
        if self.fetcher.development is not None:
            logger.warning(
                "DEVELOPMENT ONLY: client metadata documents are fetched from the loopback origins %s, "
                "their certificates checked against %s; never enable this on a server others use",
                ", ".join(self.fetcher.development.names),
                self.fetcher.development.ca_file,
            )
        retention = retention_from_env()
        if retention is not None:
            self.keep_audit(retention)

    @property
    def audit(self) -> Audit:
        """Where this server's audit events go (the ``bastion.audit`` logger, and sinks).

        Add a sink with ``server.audit.add_sink(fn)``, or assign an :class:`~bastion.Audit`
        of your own before the server serves; an ``MCPServer`` serving this server
        reports its refused calls here too.
        """
        return self._audit

    @audit.setter
    def audit(self, audit: Audit) -> None:
        self._audit = audit
        self.cimd.audit = audit

    def keep_audit(self, retention: float = DEFAULT_RETENTION) -> AuditStore:
        """Keep every audit event in the store for ``retention`` seconds (30 days by default).

        ``bastion audit --store URL`` reads them back, by user, client and time. Called
        again (or after ``BASTION_AUDIT_RETENTION``), it changes the retention of the
        events kept from then on rather than keeping each one twice.
        """
        kept = AuditStore(self.store, retention)  # checks the retention
        for sink in self.audit.sinks:
            if isinstance(sink, AuditStore) and sink.store is self.store:
                sink.retention = kept.retention
                return sink
        self.audit.add_sink(kept)
        return kept

    @property
    def admin(self) -> Admin:
        """The administration of this server: its clients, grants, consents and signing keys (:class:`Admin`)."""
        if self._admin is None:
            self._admin = Admin(self)
        return self._admin

    @property
    def verifier(self) -> AuthServerVerifier:
        """A verifier of this server's access tokens, for one resource server in this process.

        It accepts a token for any of the server's resources until the resource server
        (``bastion.protect``) gives it its URL, then only tokens for that resource: each
        endpoint needs a verifier of its own (:meth:`resource_verifier`).
        """
        if self._verifier is None:
            self._verifier = self.resource_verifier()
        return self._verifier

    @property
    def any_resource_verifier(self) -> AuthServerVerifier:
        """Verifies this server's access tokens for any of its resources (``/introspect``, ``/revoke``).

        Never bound to one resource, so not for protecting an endpoint.
        """
        if self._any_resource_verifier is None:
            self._any_resource_verifier = self.resource_verifier()
        return self._any_resource_verifier

    def resource_verifier(self, resource: str | None = None) -> AuthServerVerifier:
        """A new verifier of this server's tokens for ``resource`` only; ``MCPServer`` and ``Bastion`` take one each.

        An endpoint accepts only the tokens issued for itself (MCP 2025-11-25, "Access Token
        Privilege Restriction"). Without ``resource`` the verifier takes the resource server's
        URL when that sets it (the URL derived from the first request, in development). The
        resource is added to :attr:`resources`.
        """
        verifier = AuthServerVerifier(self, self.keys, resource)
        self._verifiers.add(verifier)
        return verifier

    # -- configuration hooks ----------------------------------------------------------------

    def _check_auto_approve(self) -> None:
        if self.auto_approve is not None and self.issuer is not None:
            host = urlsplit(self.issuer).hostname or ""
            if not is_loopback_host(host):
                raise ConfigurationError("auto_approve is for development on loopback only")

    def _check_development_origins(self, issuer: str | None) -> None:
        # Fetching from this machine on a client's say-so is safe only when nobody else can reach the server.
        if self.fetcher.development is not None and issuer is not None and not is_loopback_url(issuer):
            raise ConfigurationError(
                "development metadata origins are for development on loopback only: the issuer must be loopback"
            )

    def set_issuer(self, issuer: str) -> None:
        """Adopt ``issuer`` unless one was configured (``MCPServer`` calls this)."""
        if self.issuer is None:
            issuer = canonical_issuer(issuer)
            if urlsplit(issuer).path != "/":
                raise ConfigurationError("a derived issuer is the server's origin")
            self._check_development_origins(issuer)
            self.issuer = issuer
            self._check_auto_approve()

    def add_resource(self, resource: str) -> None:
        """Accept ``resource`` as a token audience (``MCPServer`` adds its resource URL)."""
        canonical = canonical_resource(resource)
        if canonical not in self.resources:
            self.resources.append(canonical)

    def require_issuer(self) -> str:
        """The issuer; a :class:`ConfigurationError` when none is known yet."""
        if self.issuer is None:
            raise ConfigurationError("the authorization server has no issuer: pass issuer=")
        return self.issuer

    # -- policy helpers shared by the endpoints ------------------------------------------------

    def resolve_resource(self, requested: str | None) -> str:
        """The audience for a token request: the ``resource`` parameter, checked (RFC 8707).

        Without one, the only known resource (or the issuer when there is none).

        Raises:
            InvalidTarget: the resource is not one this server issues tokens for.
        """
        if requested is None:
            if len(self.resources) >= 1:
                return self.resources[0]
            return self.require_issuer()
        try:
            canonical = canonical_resource(requested)
        except ConfigurationError:
            raise InvalidTarget("the resource is not an absolute URL without a fragment") from None
        if canonical in self.resources:
            return canonical
        raise InvalidTarget("the resource is not served by this authorization server")

    def resolve_scopes(self, requested: str | None, client: Client | None = None) -> tuple[str, ...]:
        """The scopes to grant for a request: known, allowed for the client, de-duplicated.

        Raises:
            InvalidScope: a scope is unknown or beyond what the client registered for.
        """
        scopes = as_scopes(requested) if requested else self.default_scopes
        known = self.scopes.keys() | BUILTIN_SCOPES.keys()
        unknown = [s for s in scopes if s not in known]
        if unknown:
            raise InvalidScope("a requested scope is not known", detail=f"unknown scope {unknown[0][:60]!r}")
        allowed = client.allowed_scopes() if client is not None else None
        if allowed is not None:
            beyond = [s for s in scopes if s not in allowed and s not in BUILTIN_SCOPES]
            if beyond:
                raise InvalidScope(f"the client is not registered for scope {beyond[0][:60]!r}")
        return scopes

    def scope_description(self, scope: str) -> str:
        """The text the consent page shows for ``scope``."""
        return self.scopes.get(scope) or BUILTIN_SCOPES.get(scope) or scope

    async def upstream_token(self, access: AccessToken) -> str:
        """The upstream identity provider's token behind ``access``: only an OAuth proxy has one.

        Raises:
            UpstreamUnavailable: always, here; ``bastion.proxy.OAuthProxy`` overrides this.
        """
        raise UpstreamUnavailable("this access token was not issued by an OAuth proxy")

    async def exchange_token(self, access: AccessToken, audience: str | None, scopes: Sequence[str]) -> str:
        """An upstream token for another API, acting for the user of ``access``: only an OAuth proxy can.

        Raises:
            UpstreamUnavailable: always, here; ``bastion.proxy.OAuthProxy`` overrides this.
        """
        raise UpstreamUnavailable("this access token was not issued by an OAuth proxy")

    # -- endpoints' URLs --------------------------------------------------------------------------

    def path(self, suffix: str) -> str:
        """The path of an endpoint under the issuer (``/token``, or ``/tenant/token``)."""
        if self.issuer is None:
            return suffix
        return urlsplit(self.issuer).path.rstrip("/") + suffix

    def url(self, suffix: str) -> str:
        """The absolute URL of an endpoint under the issuer."""
        return self.require_issuer().rstrip("/") + suffix

    # -- routes ----------------------------------------------------------------------------------

    def routes(self) -> list[BaseRoute]:
        """The Starlette routes of every endpoint, under the issuer's path."""
        return build_routes(self)

    def mount(self, app: Starlette) -> None:
        """Serve the endpoints from ``app`` too (``MCPServer`` does this with its own app)."""
        app.router.routes.extend(self.routes())
        self.mount_edge(app)

    def app(self) -> Starlette:
        """The authorization server as an ASGI app of its own (its issuer on another origin)."""
        app = Starlette(routes=self.routes())
        self.mount_edge(app)
        return app

    def mount_edge(self, app: Starlette) -> None:
        """Add the middleware the endpoints need (CORS, development issuer) to ``app``."""
        app.add_middleware(AuthServerEdge, server=self)

    def __repr__(self) -> str:
        return f"AuthorizationServer(issuer={self.issuer!r})"
