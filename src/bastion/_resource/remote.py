"""An identity provider that MCP clients register with themselves: no proxy, only verification.

Identity providers that support dynamic client registration (RFC 7591) or client ID
metadata documents for MCP clients (Keycloak, WorkOS AuthKit, Auth0 with DCR,
Descope, Scalekit...) need no authorization server of ours. The protected resource
metadata (RFC 9728) names the provider in ``authorization_servers``; clients
discover it, register and sign in there, and come back with its tokens, which
:class:`RemoteAuthorization` verifies: as JWTs with the keys at the ``jwks_uri`` of
the provider's metadata (RFC 8414, OpenID Connect Discovery 1.0), or with any
verifier given, such as token introspection (RFC 7662).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

from joserfc.jwa import JWSAlgModel
from joserfc.jwk import Key
from starlette.requests import HTTPConnection
from starlette.types import Scope

from bastion._core.errors import ConfigurationError, KeysUnavailable
from bastion._core.log import ThrottledLog
from bastion._core.net import is_loopback_host
from bastion._jose.jwks import JWKSCache, shared_cache
from bastion._resource.discovery import (
    DiscoveryCache,
    DiscoveryUnavailable,
    discovery_urls,
    same_issuer,
    shared_discovery,
)
from bastion._resource.jwt import ClaimNames, JWTVerifier
from bastion._resource.tokens import AccessToken
from bastion._resource.verifier import Verifier

__all__ = ["RemoteAuthorization"]

logger = logging.getLogger("bastion")

Clock = Callable[[], float]

#: The least seconds between two warnings that the provider's metadata cannot be had.
_WARNING_INTERVAL = 30.0


class RemoteAuthorization(Verifier):
    """Tokens of an identity provider that MCP clients register with directly.

    Pass it as ``auth=`` of :class:`~bastion.MCPServer`: the resource metadata then
    names ``issuer`` as the authorization server, and tokens are verified by
    ``verifier`` or, by default, as JWTs signed with the keys the provider
    publishes. The provider's metadata is discovered at the first token, not
    before, and cached (see :class:`~bastion._resource.discovery.DiscoveryCache`).

    ::

        auth = RemoteAuthorization("https://auth.example.com/realms/mcp")
        mcp = MCPServer("Notes", auth=auth, resource_url="https://notes.example.com/mcp")

    Args:
        issuer: The provider's issuer identifier, exactly as its tokens and metadata
            name it (a bare origin may differ by a final ``/``).
        verifier: How tokens are verified, e.g. an :class:`~bastion.IntrospectionVerifier`.
            Default: a :class:`~bastion.JWTVerifier` trusting ``issuer`` and the keys at the
            discovered ``jwks_uri``.
        audience: The audience the default verifier requires. Default: the MCP
            server's resource URL (RFC 8707), which the server hands over.
        scopes_supported: The scopes to advertise in the resource metadata.
        config_url: Where the provider's metadata is. Default: the RFC 8414 and
            OpenID Connect Discovery locations of ``issuer``, tried in turn.
        algorithms: The ``alg`` values the default verifier accepts (default: every
            asymmetric algorithm).
        roles_claim: The claim holding roles for the default verifier (a dotted path
            reaches into objects, e.g. ``realm_access.roles``); ``None`` reads none.
        clock: Seconds since the epoch, for the caches and the default verifier; for tests.

    Raises:
        ConfigurationError: the issuer is not an https URL, or options of the default
            verifier are given together with a verifier.
    """

    def __init__(
        self,
        issuer: str,
        verifier: Verifier | None = None,
        *,
        audience: str | Sequence[str] | None = None,
        scopes_supported: Sequence[str] = (),
        config_url: str | None = None,
        algorithms: Sequence[str] | None = None,
        roles_claim: str | None = "roles",
        clock: Clock = time.time,
    ) -> None:
        _check_issuer(issuer)
        if verifier is not None:
            if not isinstance(verifier, Verifier):
                raise ConfigurationError(f"verifier must be a bastion verifier, got {type(verifier).__name__}")
            if audience is not None or algorithms is not None or roles_claim != "roles":
                raise ConfigurationError(
                    "audience, algorithms and roles_claim configure the default JWT verifier; "
                    "set them on the verifier given instead"
                )
        self.issuer = issuer
        self.issuers: tuple[str, ...] = (issuer,)
        self.scopes_supported: tuple[str, ...] = tuple(scopes_supported)
        self._clock = clock
        urls = (config_url,) if config_url is not None else discovery_urls(issuer)
        # Built now (no I/O), so configuration errors and plain-http warnings come at start-up.
        self._candidates: tuple[DiscoveryCache, ...] = tuple(
            shared_discovery(url, issuer=issuer, clock=clock) for url in urls
        )
        self._found: DiscoveryCache | None = None
        self._outages = ThrottledLog(logger, _WARNING_INTERVAL, clock=clock)
        if verifier is None:
            verifier = JWTVerifier(
                key_set=_DiscoveredKeys(self, clock),
                issuer=_issuer_spellings(issuer),
                audience=audience,
                algorithms=algorithms,
                claims=ClaimNames(roles=roles_claim),
                clock=clock,
                _server_sets_audience=True,
            )
        self.verifier: Verifier = verifier
        # One cache, the inner verifier's: what it verified, peek() finds without any I/O.
        super().__init__(cache=verifier.cache)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.issuer!r}, verifier={self.verifier!r})"

    async def metadata(self) -> dict[str, Any]:
        """The provider's metadata document (RFC 8414 / OpenID Connect Discovery), cached.

        Raises:
            DiscoveryUnavailable: no valid document could be found at any location.
        """
        if self._found is not None:
            return await self._found.document()
        reasons: list[str] = []
        for cache in self._candidates:
            try:
                document = await cache.document()
            except DiscoveryUnavailable as exc:
                reasons.append(str(exc))
                continue
            if self._found is None:
                self._found = cache
                _review(self.issuer, document)
            return document
        self._outages.warning(f"no usable metadata for the issuer {self.issuer}: {'; '.join(reasons)}")
        raise DiscoveryUnavailable(f"no usable metadata for the issuer {self.issuer}")

    # -- delegation to the inner verifier --------------------------------------------------

    def peek(self, scope: Scope) -> AccessToken | None:
        """The inner verifier's cached access token for the request, without any other work."""
        return self.verifier.peek(scope)

    async def authenticate(self, conn: HTTPConnection) -> AccessToken | None:
        """The inner verifier's access token for the request, or ``None`` without credentials."""
        return await self.verifier.authenticate(conn)

    async def verify(self, token: str) -> AccessToken:
        """Verify a bearer token with the inner verifier (and its cache)."""
        return await self.verifier.verify(token)

    async def check(self, token: str) -> AccessToken:
        """Verify a bearer token with the inner verifier, bypassing its cache."""
        return await self.verifier.check(token)

    async def ready(self) -> bool:
        """Whether the provider's metadata was had (a cached copy counts), and the inner verifier is ready."""
        try:
            await self.metadata()
        except DiscoveryUnavailable:
            return False
        return await self.verifier.ready()

    def expect_audience(self, audience: str) -> None:
        """Hand the server's resource URL to the inner verifier."""
        self.verifier.expect_audience(audience)

    async def aclose(self) -> None:
        """Close the inner verifier."""
        await self.verifier.aclose()


class _DiscoveredKeys:
    """The keys at the ``jwks_uri`` of the provider's metadata, found at the first token."""

    def __init__(self, remote: RemoteAuthorization, clock: Clock) -> None:
        self._remote = remote
        self._clock = clock
        self._jwks: JWKSCache | None = None

    async def keys_for(self, kid: str | None, alg: JWSAlgModel) -> list[Key]:
        return await (await self._cache()).keys_for(kid, alg)

    async def ready(self) -> bool:
        """Whether the key set at the discovered ``jwks_uri`` was had at least once."""
        try:
            jwks = await self._cache()
        except KeysUnavailable:
            return False
        return await jwks.ready()

    async def _cache(self) -> JWKSCache:
        try:
            document = await self._remote.metadata()
        except DiscoveryUnavailable as exc:
            raise KeysUnavailable(str(exc)) from None
        uri = document.get("jwks_uri")
        if not isinstance(uri, str):
            raise KeysUnavailable(f"the issuer {self._remote.issuer} publishes no jwks_uri")
        jwks = self._jwks
        if jwks is None or jwks.uri != uri:
            try:
                jwks = self._jwks = shared_cache(uri, clock=self._clock)
            except ConfigurationError as exc:
                raise KeysUnavailable(f"the issuer's jwks_uri is unusable: {exc}") from None
        return jwks


def _check_issuer(issuer: str) -> None:
    try:
        parts = urlsplit(issuer) if isinstance(issuer, str) else None
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("https", "http") or not parts.hostname:
        raise ConfigurationError("the issuer must be an https URL")
    if parts.username or parts.password or parts.query or parts.fragment:
        # RFC 8414 section 2: no query or fragment components.
        raise ConfigurationError("the issuer must be an https URL without credentials, query or fragment")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        logger.warning(
            "the issuer %s is plain http: MCP clients may refuse it, and anyone on the path can alter its metadata",
            issuer,
        )


def _issuer_spellings(issuer: str) -> tuple[str, ...]:
    """The ``iss`` values of this issuer's tokens: as given, and for a bare origin, with and without ``/``."""
    other = issuer.removesuffix("/") if issuer.endswith("/") else issuer + "/"
    return (issuer, other) if same_issuer(other, issuer) else (issuer,)


def _review(issuer: str, document: dict[str, Any]) -> None:
    """Warn about metadata MCP clients cannot work with (MCP authorization specification)."""
    if "registration_endpoint" not in document and document.get("client_id_metadata_document_supported") is not True:
        logger.warning(
            "the issuer %s offers neither dynamic client registration nor client ID metadata documents: "
            "MCP clients without a pre-registered client id cannot sign in",
            issuer,
        )
    methods = document.get("code_challenge_methods_supported")
    if not isinstance(methods, list) or "S256" not in methods:
        logger.warning("the issuer %s does not advertise S256 PKCE: MCP clients refuse to use it", issuer)
