"""``AuthorizationServer``: bastion's own OAuth 2.1 authorization server.

This module holds the configuration and the shared services (store, keys,
clients, codes, tokens); each endpoint lives in its own module and receives the
server. :meth:`AuthorizationServer.routes` gives the Starlette routes, which
``bastion.MCPServer`` mounts beside the MCP endpoint when ``auth=`` is an
authorization server.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from os import PathLike
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.routing import BaseRoute

if TYPE_CHECKING:
    from bastion.authserver._browser.consent import RememberedConsent
    from bastion.authserver._browser.login import LoginStep

from bastion._core.errors import ConfigurationError, UpstreamUnavailable
from bastion._core.log import ThrottledLog
from bastion._core.net import is_loopback_host
from bastion._resource.metadata import canonical_resource
from bastion._resource.tokens import AccessToken
from bastion.authserver._access import AccessTokenIssuer, AuthServerVerifier
from bastion.authserver._cimd import CIMDResolver
from bastion.authserver._clients import ClientRegistry
from bastion.authserver._codes import CodeStore
from bastion.authserver._errors import InvalidScope, InvalidTarget
from bastion.authserver._fetch import SafeFetcher
from bastion.authserver._issuer import canonical_issuer, default_store_path, store_name
from bastion.authserver._keyring import KeyRing
from bastion.authserver._models import Client, User, as_scopes
from bastion.storage import SQLiteStore, Store

__all__ = ["AuthorizationServer", "UserCheck"]

logger = logging.getLogger("bastion")

#: The username/password check: ``(username, password) -> User | subject | None``, sync or async.
UserCheck = Callable[[str, str], "Awaitable[User | str | None] | User | str | None"]

#: Scopes the server always understands, whatever the configuration says.
BUILTIN_SCOPES = {"offline_access": "Stay signed in (refresh tokens)"}

REVOKED_NAMESPACE = "revoked-grant"
GRANT_NAMESPACE = "grant"
#: Which clients a user has grants with (secondary key: the subject), for the consents page.
USER_CLIENT_NAMESPACE = "user-client"


def grant_index(subject: str, client_id: str) -> str:
    """The secondary key of the grants one user gave one client."""
    return f"{subject}\x00{client_id}"


class AuthorizationServer:
    """An OAuth 2.1 authorization server for MCP clients, durable on a :class:`~bastion.storage.Store`.

    Args:
        issuer: Its issuer URL (same origin as the MCP server, or its own). When
            omitted, the origin of the ``MCPServer``'s resource URL.
        store: Where clients, codes, tokens, consents and keys live. Default: a
            SQLite file under the user's data directory, named after the issuer
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
        access_token_ttl: Seconds an access token lives (default one hour).
        refresh_token_ttl: Seconds a refresh token lives unused (default 30 days).
        refresh_grace: The longest a rotated refresh token stays redeemable, in
            seconds from its rotation (default 7 days). Presented again before
            its successor was first used, it returns the same successor pair (a
            client whose answer was lost retries safely, however long the server
            was down); after the successor's first use, or past this bound, it
            revokes the family (RFC 9700 section 4.14.2). ``0``: any later
            presentation revokes.
        code_ttl: Seconds an authorization code lives.
        signing_algorithm: ``ES256`` (default), ``RS256`` or ``EdDSA``.
        key_rotation: Seconds between signing key rotations.
        dynamic_registration: Whether ``/register`` (RFC 7591) is open.
        registration_rate_limit: Registrations per minute per client address (0: no limit).
        client_metadata_documents: Whether URL client ids (CIMD) are accepted.
        fetcher: The outbound HTTP policy for CIMD and ``jwks_uri`` fetches.
        identity_assertion_issuers: For ID-JAG: trusted identity provider issuer
            -> its JWKS URL.
        auto_approve: Sign every authorization in as this user and approve it
            without pages. Development only: refused unless the issuer is loopback.
        clock: Seconds since the epoch; injectable for tests.
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
        access_token_ttl: float = 3600.0,
        refresh_token_ttl: float = 30 * 86400.0,
        refresh_grace: float = 7 * 86400.0,
        code_ttl: float = 60.0,
        signing_algorithm: str = "ES256",
        key_rotation: float = 30 * 86400.0,
        dynamic_registration: bool = True,
        registration_rate_limit: int = 20,
        client_metadata_documents: bool = True,
        fetcher: SafeFetcher | None = None,
        identity_assertion_issuers: Mapping[str, str] | None = None,
        auto_approve: User | str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.issuer: str | None = None if issuer is None else canonical_issuer(issuer)
        if store is None:
            # One file per issuer, so two servers on one machine never share clients or keys.
            store = SQLiteStore(default_store_path(store_name(self.issuer) if self.issuer else "bastion"))
        self.store: Store = store
        self.clock = clock
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
        for name, value in (
            ("access_token_ttl", access_token_ttl),
            ("refresh_token_ttl", refresh_token_ttl),
            ("code_ttl", code_ttl),
            ("key_rotation", key_rotation),
        ):
            if not value > 0:
                raise ConfigurationError(f"{name} must be a positive number of seconds")
        if refresh_grace < 0:
            raise ConfigurationError("refresh_grace must not be negative")
        self.access_token_ttl = float(access_token_ttl)
        self.refresh_token_ttl = float(refresh_token_ttl)
        self.refresh_grace = float(refresh_grace)
        self.code_ttl = float(code_ttl)
        self.signing_algorithm = signing_algorithm
        self.key_rotation = float(key_rotation)
        self.dynamic_registration = dynamic_registration
        self.registration_rate_limit = registration_rate_limit
        self.client_metadata_documents = client_metadata_documents
        self.identity_assertion_issuers = dict(identity_assertion_issuers or {})
        if users is not None and login is not None:
            raise ConfigurationError("give users= or login=, not both")
        self.users = users
        self.login_step = login
        if isinstance(auto_approve, str):
            auto_approve = User(subject=auto_approve, name=auto_approve)
        self.auto_approve = auto_approve
        self.codes = CodeStore(self.store, ttl=self.code_ttl, revoke_grant=self.revoke_grant)
        self.fetcher = fetcher if fetcher is not None else SafeFetcher()
        self.cimd = CIMDResolver(self.fetcher, self.store, clock=clock)
        self.clients = ClientRegistry(
            self.store,
            () if clients is None else clients,
            metadata_documents=self.cimd if client_metadata_documents else None,
        )
        self.keys = KeyRing(
            self.store,
            algorithm=signing_algorithm,
            rotation=self.key_rotation,
            overlap=self.access_token_ttl + 300.0,
            clock=clock,
        )
        self.access_tokens = AccessTokenIssuer(self, self.keys)
        # Every verifier made, so a revocation clears every cache; weak, not to keep a dropped one alive.
        self._verifiers: weakref.WeakSet[AuthServerVerifier] = weakref.WeakSet()
        self._verifier: AuthServerVerifier | None = None
        self._any_resource_verifier: AuthServerVerifier | None = None
        self._static_clients = clients
        self._started = False
        self._check_auto_approve()

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

    def set_issuer(self, issuer: str) -> None:
        """Adopt ``issuer`` unless one was configured (``MCPServer`` calls this)."""
        if self.issuer is None:
            issuer = canonical_issuer(issuer)
            if urlsplit(issuer).path != "/":
                raise ConfigurationError("a derived issuer is the server's origin")
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

    # -- grants -------------------------------------------------------------------------------

    async def revoke_grant(self, grant_id: str) -> None:
        """Revoke a grant: its refresh tokens go, and its access tokens are refused from now on."""
        from bastion.authserver._grants.refresh_token import REFRESH_NAMESPACE

        await self.store.put(REVOKED_NAMESPACE, grant_id, b"1", self.refresh_token_ttl + self.access_token_ttl)
        await self.store.delete_index(REFRESH_NAMESPACE, grant_id)
        await self.store.delete(GRANT_NAMESPACE, grant_id)
        self.on_revocation()

    async def is_revoked(self, grant_id: str) -> bool:
        """Whether the grant was revoked."""
        return await self.store.get(REVOKED_NAMESPACE, grant_id) is not None

    def on_revocation(self) -> None:
        """Forget verified tokens in this process, so a revoked one is refused at once."""
        for verifier in list(getattr(self, "_verifiers", ())):
            verifier.cache.clear()

    async def new_grant(self, user: User, client_id: str, *, ttl: float | None = None) -> str:
        """Record a new grant (one user's approval for one client) and return its id.

        Refresh tokens and access tokens carry the grant id, so revoking the grant
        (on code replay, refresh token reuse, or withdrawn consent) reaches them all.
        """
        grant_id = secrets.token_urlsafe(16)
        fields: dict[str, object] = {"subject": user.subject, "client_id": client_id, "created": int(self.clock())}
        if isinstance(user.claims.get("uref"), str):
            fields["uref"] = user.claims["uref"]  # the proxy's sealed upstream tokens behind this grant
        record = json.dumps(fields)
        await self.store.put(
            GRANT_NAMESPACE,
            grant_id,
            record.encode(),
            self.refresh_token_ttl if ttl is None else ttl,
            index=grant_index(user.subject, client_id),
        )
        if user.subject != client_id:  # not a client acting for itself (client_credentials)
            await self._note_user_client(user.subject, client_id, self.refresh_token_ttl if ttl is None else ttl)
        return grant_id

    async def withdraw_consent(self, subject: str, client_id: str) -> bool:
        """Forget the consent ``subject`` gave ``client_id`` and revoke its grants.

        The next authorization of that client asks the user again. ``True`` when
        there was a consent or a grant to withdraw.
        """
        from bastion.authserver._browser.consent import withdraw_consent

        return await withdraw_consent(self, subject, client_id)

    async def consents(self, subject: str) -> list[RememberedConsent]:
        """The consents ``subject`` has given and not withdrawn (client, scopes, resources, when)."""
        from bastion.authserver._browser.consent import consents

        return await consents(self, subject)

    async def check_grant(self, user: User) -> None:
        """Called before a refresh is granted; a proxy refuses when the upstream session is gone."""

    async def extend_grant(self, grant_id: str) -> None:
        """Keep a grant's record as long as its refresh tokens live (called on each rotation)."""
        raw = await self.store.get(GRANT_NAMESPACE, grant_id)
        if raw is None:
            return
        record = json.loads(raw)
        index = grant_index(record["subject"], record["client_id"])
        await self.store.put(GRANT_NAMESPACE, grant_id, raw, self.refresh_token_ttl, index=index)
        if record["subject"] != record["client_id"]:
            await self._note_user_client(record["subject"], record["client_id"], self.refresh_token_ttl)

    async def _note_user_client(self, subject: str, client_id: str, ttl: float) -> None:
        key = grant_index(subject, client_id)
        previous = await self.store.get(USER_CLIENT_NAMESPACE, key)
        since = json.loads(previous)["since"] if previous is not None else int(self.clock())
        record = json.dumps({"client_id": client_id, "since": since}).encode()
        await self.store.put(USER_CLIENT_NAMESPACE, key, record, ttl, index=subject)

    async def signed_in_clients(self, subject: str) -> list[tuple[str, int]]:
        """The clients ``subject`` has live grants with (remembered consent or not), and since when."""
        found: list[tuple[str, int]] = []
        for _, raw in await self.store.scan(USER_CLIENT_NAMESPACE, subject):
            record = json.loads(raw)
            if await self.store.scan(GRANT_NAMESPACE, grant_index(subject, record["client_id"])):
                found.append((record["client_id"], int(record["since"])))
        return sorted(found)

    async def revoke_user_client(self, subject: str, client_id: str) -> int:
        """Revoke every grant ``subject`` gave ``client_id``; how many there were."""
        grants = await self.store.scan(GRANT_NAMESPACE, grant_index(subject, client_id))
        for grant_id, _ in grants:
            await self.revoke_grant(grant_id)
        await self.store.delete(USER_CLIENT_NAMESPACE, grant_index(subject, client_id))
        return len(grants)

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
        from bastion.authserver._routes import build_routes

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
        from bastion.authserver._edge import AuthServerEdge

        app.add_middleware(AuthServerEdge, server=self)

    def __repr__(self) -> str:
        return f"AuthorizationServer(issuer={self.issuer!r})"
