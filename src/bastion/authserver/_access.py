"""Access tokens: RFC 9068 JWTs signed with the key ring, and the verifier the MCP server uses for them."""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from joserfc.jws import serialize_compact

from bastion._core.errors import InvalidIssuer, KeysUnavailable, TokenInactive
from bastion._core.net import is_loopback_host
from bastion._resource.jwt import JWTVerifier
from bastion._resource.metadata import canonical_resource
from bastion._resource.tokens import AccessToken, proxied_by
from bastion.authserver._keyring import KeyRing, registry_for
from bastion.authserver._models import User
from bastion.storage import StoreError

if TYPE_CHECKING:
    from bastion.authserver._server import AuthorizationServer

__all__ = ["RESERVED_CLAIMS", "AccessTokenIssuer", "AuthServerVerifier"]

logger = logging.getLogger("bastion")

#: Claims the server sets itself; a user's ``claims`` cannot override them.
RESERVED_CLAIMS = frozenset(
    {"iss", "sub", "aud", "exp", "nbf", "iat", "jti", "client_id", "scope", "gid", "auth_time", "acr", "amr", "cnf"}
)

#: Seconds a verified token of this server is served from a worker's cache. Revocation
#: in the same process clears the cache at once; other workers see it within this time.
CACHE_SECONDS = 30.0


class AccessTokenIssuer:
    """Mints the server's access tokens (RFC 9068: ``typ: at+jwt``, ``aud`` = the resource)."""

    def __init__(self, server: AuthorizationServer, keys: KeyRing) -> None:
        self.server = server
        self.keys = keys

    async def mint(
        self,
        *,
        client_id: str,
        subject: str,
        scopes: Sequence[str],
        resource: str,
        grant_id: str | None,
        user: User | None = None,
        extra_claims: Mapping[str, Any] | None = None,
        jkt: str | None = None,
    ) -> tuple[str, int]:
        """A signed access token for ``resource`` and its lifetime in seconds (``expires_in``).

        The claims are those of RFC 9068 section 2.2 (``iss``, ``exp``, ``aud``,
        ``sub``, ``client_id``, ``iat``, ``jti``, ``scope``), the grant id ``gid``
        (which revocation reaches), and the user's ``name``, ``email`` and ``roles``.
        With ``jkt``, the thumbprint of a DPoP proof's key, the token is bound to that
        key: ``cnf: {"jkt": ...}`` (RFC 9449 section 6.1).
        """
        server = self.server
        now = int(server.clock())
        lifetime = int(server.lifetimes.access_token)
        claims: dict[str, Any] = {}
        if user is not None:
            claims.update({k: v for k, v in user.claims.items() if k not in RESERVED_CLAIMS})
            if user.name:
                claims["name"] = user.name
            if user.email:
                claims["email"] = user.email
            if user.roles:
                claims["roles"] = list(user.roles)
        claims.update({k: v for k, v in (extra_claims or {}).items() if k not in RESERVED_CLAIMS})
        claims.update(
            {
                "iss": server.require_issuer(),
                "sub": subject,
                "aud": resource,
                "client_id": client_id,
                "iat": now,
                "exp": now + lifetime,
                "jti": secrets.token_urlsafe(16),
            }
        )
        if scopes:
            claims["scope"] = " ".join(scopes)
        if grant_id is not None:
            claims["gid"] = grant_id
        if jkt is not None:
            claims["cnf"] = {"jkt": jkt}
        key = await self.keys.signing_key()
        header = {"alg": key.alg, "typ": "at+jwt", "kid": key.kid}
        payload = json.dumps(claims, separators=(",", ":"))
        token = serialize_compact(header, payload, key.key, registry=registry_for(key.alg))
        return token, lifetime


class AuthServerVerifier(JWTVerifier):
    """Verifies the server's own access tokens in process: keys from the ring, no HTTP.

    On top of the JWT checks (signature, ``typ: at+jwt``, ``exp``), the issuer must be
    the server's and the grant must not be revoked. The audience: a verifier bound to a
    resource (``resource=``, or the first :meth:`expect_audience`, which the resource
    server calls with its URL) accepts only tokens for that resource (MCP: "Access Token
    Privilege Restriction"); an unbound one accepts any resource of the server.
    """

    _audiences: tuple[str, ...]

    def __init__(self, server: AuthorizationServer, keys: KeyRing, resource: str | None = None) -> None:
        self.server = server
        super().__init__(
            key_set=keys,
            algorithms=[keys.algorithm],
            audience=None if resource is None else self._serve(resource),
            typ="at+jwt",
            clock=server.clock,
            leeway=5.0,
            _server_sets_audience=True,  # unbound, it accepts the server's resources only
        )
        self._private = proxied_by(server)  # token.upstream(): the proxy answers, a plain server refuses

    @property
    def audiences(self) -> tuple[str, ...]:
        """The bound resource, or else every resource the server issues tokens for, as of now."""
        return self._audiences or tuple(self.server.resources)

    @audiences.setter
    def audiences(self, value: Sequence[str]) -> None:
        """Bind the verifier (``JWTVerifier`` sets its configured audience here)."""
        self._audiences = tuple(value)

    @property
    def issuers(self) -> tuple[str, ...]:
        """The server's issuer, once known (the resource metadata advertises it)."""
        return () if self.server.issuer is None else (self.server.issuer,)

    @issuers.setter
    def issuers(self, value: Sequence[str]) -> None:
        """Ignored: the issuer is the server's."""

    def expect_audience(self, audience: str) -> None:
        """Bind to the resource server's URL, and let the authorization server issue tokens for it.

        A verifier already bound to another resource stays bound to it (a second endpoint
        sharing it refuses its own tokens rather than accepting another resource's).
        """
        if self._audiences:
            if canonical_resource(audience) not in self._audiences:
                logger.warning(
                    "this verifier accepts only tokens for %s, not %s: give each resource its own "
                    "verifier (AuthorizationServer.resource_verifier)",
                    self._audiences[0],
                    audience,
                )
            return
        self.audiences = (self._serve(audience),)
        logger.info("the authorization server's verifier now requires the audience %s", self._audiences[0])

    def _serve(self, resource: str) -> str:
        """Add ``resource`` to the server's; an issuer-less server takes its origin on loopback.

        The loopback case is development: the resource URL was derived from a request.
        """
        resource = canonical_resource(resource)
        self.server.add_resource(resource)
        if self.server.issuer is None:
            parts = urlsplit(resource)
            if is_loopback_host(parts.hostname or ""):
                self.server.set_issuer(f"{parts.scheme}://{parts.netloc}")
        return resource

    async def check(self, token: str) -> AccessToken:
        """Verify the JWT, then the issuer and the grant.

        Raises:
            KeysUnavailable: the store (the key ring, the revoked grants) cannot be read now.
        """
        try:
            return await self._check(token)
        except StoreError as exc:
            raise KeysUnavailable(f"the authorization server's store failed: {exc}") from None

    async def _check(self, token: str) -> AccessToken:
        # Before any token is cached here, listen for the other replicas' revocations.
        await self.server.revocations.watch()
        access = await super().check(token)
        claims = access.claims or {}
        if claims.get("iss") != self.server.issuer:
            raise InvalidIssuer("the token was issued by another server")
        grant_id = claims.get("gid")
        if isinstance(grant_id, str) and await self.server.is_revoked(grant_id):
            raise TokenInactive("the token's grant was revoked")
        return access

    def cache_ttl(self, access: AccessToken) -> float | None:
        """Bounded, so a revocation made in another worker is seen soon."""
        return CACHE_SECONDS
