"""The verifier contract and the cache of tokens already verified.

A :class:`Verifier` turns the credentials of an HTTP request into an
:class:`~bastion.AccessToken`. Bearer verifiers implement :meth:`Verifier.check`
(one token in, an access token out, or a specific :class:`~bastion.InvalidToken`);
the base class does the extraction from the ``Authorization`` header (RFC 6750
section 2.1) and the caching. Verifiers that read other headers override
:meth:`Verifier.authenticate`.

Every verifier also satisfies the SDK's ``TokenVerifier`` protocol
(``verify_token(token) -> AccessToken | None``), so it can protect a plain SDK
server too.
"""

from __future__ import annotations

import hashlib
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Sequence

from starlette.requests import HTTPConnection
from starlette.types import Scope

from bastion._core import telemetry
from bastion._core.errors import (
    AuthenticationError,
    AuthorizationError,
    ConfigurationError,
    InvalidToken,
    KeysUnavailable,
)
from bastion._core.log import ThrottledLog
from bastion._resource.tokens import AccessToken

__all__ = ["TokenCache", "Verifier", "authorization_credentials", "bearer_token"]

logger = logging.getLogger("bastion")

#: Tokens longer than this are refused before any parsing (a JWT with a large
#: key set reference is a few KB; 16 KiB leaves room for fat claim sets).
MAX_TOKEN_LENGTH = 16 * 1024

Clock = Callable[[], float]

#: Outages met by the SDK's protocol (:meth:`Verifier.verify_token`), logged once a minute.
_outages = ThrottledLog(logger)


class TokenCache:
    """A bounded cache of verified tokens, keyed by a SHA-256 hash of the token.

    An entry lives until the earlier of the token's ``exp`` and ``ttl`` seconds
    after it was verified. Each new entry first drops the expired ones that were put
    before any live one, so a server that sees a stream of new tokens keeps about those
    of the last ``ttl`` seconds, not ``max_size`` of them; when full, the oldest entry is
    dropped. A hit costs one hash and one dictionary look-up: no parsing, no signature
    check, no I/O.
    """

    def __init__(self, max_size: int = 10_000, ttl: float = 300.0, clock: Clock = time.time) -> None:
        if max_size < 0 or ttl < 0:
            raise ConfigurationError("max_size and ttl must not be negative")
        self.max_size = max_size
        self.ttl = ttl
        self._clock = clock
        self._entries: dict[bytes, tuple[AccessToken, float]] = {}

    @staticmethod
    def key(token: str) -> bytes:
        """The cache key of a token: its SHA-256 digest, so no token is held as a key."""
        return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()

    def get(self, token: str) -> AccessToken | None:
        """The cached access token for ``token``, if it is still fresh."""
        return self.get_key(self.key(token))

    def get_key(self, key: bytes) -> AccessToken | None:
        """The cached access token under ``key`` (:meth:`key` of a token), if it is still fresh."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if self._clock() >= entry[1]:
            self._entries.pop(key, None)
            return None
        return entry[0]

    def put(self, token: str, access: AccessToken, ttl: float | None = None) -> None:
        """Remember ``access`` as the result of verifying ``token``."""
        if self.max_size == 0:
            return
        now = self._clock()
        until = now + (self.ttl if ttl is None else min(ttl, self.ttl))
        if access.expires_at is not None:
            until = min(until, float(access.expires_at))
        if until <= now:
            return
        entries = self._entries
        key = self.key(token)
        entries.pop(key, None)  # put again, it goes to the end: the entries stay in the order they were put
        # Entries are put with about the same lifetime, so the expired ones are at the front.
        while entries:
            oldest = next(iter(entries))
            if entries[oldest][1] > now:
                break
            del entries[oldest]
        if len(entries) >= self.max_size:
            entries.pop(next(iter(entries)), None)
        entries[key] = (access, until)

    def discard(self, token: str) -> None:
        """Forget ``token``."""
        self._entries.pop(self.key(token), None)

    def clear(self) -> None:
        """Forget every token."""
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


def authorization_credentials(conn: HTTPConnection, scheme: str = "Bearer", what: str = "bearer token") -> str | None:
    """The credentials of a request's ``Authorization`` header for ``scheme``, or ``None``.

    The scheme name is case-insensitive (RFC 9110 section 11.1). A header of this
    scheme with no usable credentials, or several ``Authorization`` headers, is
    malformed and raises :class:`InvalidToken`; a header with another scheme is not
    ours and yields ``None``.
    """
    values = conn.headers.getlist("authorization")
    if not values:
        return None
    if len(values) > 1:
        raise InvalidToken("several Authorization headers", description="Send one Authorization header")
    name, _, credentials = values[0].strip().partition(" ")
    if name.lower() != scheme.lower():
        return None
    credentials = credentials.strip()
    if not credentials or " " in credentials:
        raise InvalidToken(f"malformed {what}", description=f"The {what} is malformed")
    if len(credentials) > MAX_TOKEN_LENGTH:
        raise InvalidToken(f"{what} too long", description=f"The {what} is too long")
    return credentials


def bearer_token(conn: HTTPConnection) -> str | None:
    """The bearer token of a request's ``Authorization`` header (RFC 6750 section 2.1), or ``None``."""
    return authorization_credentials(conn)


class Verifier(ABC):
    """Base class of every bastion verifier.

    Subclasses implement :meth:`check`; the base class adds header extraction,
    the verified-token cache and the SDK protocol.
    """

    #: Used as the default ``authorization_servers`` of the resource metadata.
    issuers: Sequence[str] = ()
    #: Used as the default ``scopes_supported`` of the resource metadata (before the policies' scopes).
    scopes_supported: Sequence[str] = ()
    #: Scopes every token must carry (a token without them is refused with ``InsufficientScope``);
    #: the 401 challenge names them as scopes to request.
    required_scopes: Collection[str] = ()

    def __init__(self, *, cache: TokenCache | None = None) -> None:
        self.cache = TokenCache() if cache is None else cache
        # Only a verifier that reads the Authorization header the standard way can answer
        # from the cache before a request object is even built (see peek()).
        self._peekable = type(self).authenticate is Verifier.authenticate

    def peek(self, scope: Scope) -> AccessToken | None:
        """The cached access token for a request's bearer token, without any other work.

        The hot path: a token seen before costs a header scan, a hash and a dictionary
        look-up. Anything unusual (no token, several headers, odd spacing, a miss) yields
        ``None``, and :meth:`authenticate` then decides.
        """
        if not self._peekable:
            return None
        found: bytes | None = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                if found is not None:
                    return None
                found = value
        credentials = found[7:] if found is not None and found[:7].lower() == b"bearer " else b""
        if not credentials or b" " in credentials or not credentials.isascii():
            return None
        # An ASCII token's bytes are what its cache key hashes; anything else is authenticate()'s to decide.
        return self.cache.get_key(hashlib.sha256(credentials).digest())

    async def authenticate(self, conn: HTTPConnection) -> AccessToken | None:
        """The access token for a request, or ``None`` when it carries no credentials.

        Raises:
            AuthenticationError: credentials were presented and refused (401).
            AuthorizationError: valid credentials the verifier itself finds short,
                such as missing ``required_scopes`` (403).
        """
        token = bearer_token(conn)
        if token is None:
            return None
        return await self.verify(token)

    async def verify(self, token: str) -> AccessToken:
        """Verify one bearer token, answering from the cache when it was seen before.

        Raises:
            AuthenticationError: the token is refused; the subclass says why.
            AuthorizationError: a valid token the verifier finds short (its ``required_scopes``);
                it is not cached, so it never comes back from :meth:`peek` either.
        """
        cache = self.cache
        cached = cache.get(token)
        if cached is not None:
            return cached
        if len(token) > MAX_TOKEN_LENGTH:
            raise InvalidToken("token too long", description="The access token is too long")
        observer = telemetry.active
        if observer is None:
            access = await self.check(token)
        else:
            access = await observer.verification(type(self).__name__, self.check, token)
        # Expiry (with the verifier's own leeway and clock) is the verifier's to judge; the
        # cache never serves a token past its exp.
        cache.put(token, access, self.cache_ttl(access))
        return access

    def cache_ttl(self, access: AccessToken) -> float | None:
        """How long a verified token may be served from the cache (``None``: the cache's ttl)."""
        return None

    @abstractmethod
    async def check(self, token: str) -> AccessToken:
        """Verify ``token`` without the cache.

        Raises:
            AuthenticationError: a specific subclass naming why the token is refused.
        """

    async def verify_token(self, token: str) -> AccessToken | None:
        """The SDK's ``TokenVerifier`` protocol: the access token, or ``None`` if refused.

        The protocol cannot say "try again later": a token that cannot be checked now
        (:class:`~bastion.KeysUnavailable`) is ``None`` too, and the outage is logged. A
        sender-constrained token (``cnf``, such as a DPoP-bound one) is ``None``: the protocol
        carries no proof of possession.
        """
        try:
            access = await self.verify(token)
            cnf = (access.claims or {}).get("cnf")
            if cnf is not None:
                # The protocol knows bearer tokens only: a sender-constrained token (RFC 9449, RFC 8705)
                # accepted here would lose its binding.
                raise InvalidToken("a sender-constrained token sent as a bearer token")
            return access
        except (AuthenticationError, AuthorizationError) as exc:
            logger.info("token refused: %s", exc.__class__.__name__)
            return None
        except KeysUnavailable as exc:
            _outages.warning(f"a token cannot be verified now and is refused: {exc}")
            return None

    async def ready(self) -> bool:
        """Whether tokens can be verified now, for a readiness probe (``MCPServer.serve_health``).

        ``True`` by default; a verifier that needs a remote key set or metadata document
        answers whether it has one (a cached copy counts), fetching it at most as often as
        its cache allows.
        """
        return True

    def expect_audience(self, audience: str) -> None:  # noqa: B027 - optional hook
        """Called by the server with its resource URL when the verifier has no audience of its own."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release network resources (HTTP clients); the server calls it on shutdown."""
