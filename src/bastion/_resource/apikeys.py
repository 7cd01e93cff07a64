"""Static API keys: each key names a principal; keys are held only as SHA-256 digests."""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import HTTPConnection

from bastion._core.errors import ConfigurationError, InvalidToken, TokenExpired
from bastion._resource.tokens import AccessToken
from bastion._resource.verifier import MAX_TOKEN_LENGTH, TokenCache, Verifier, authorization_credentials

__all__ = ["APIKey", "APIKeyVerifier", "StaticTokenVerifier", "hash_api_key"]

_HEX_DIGEST = re.compile(r"[0-9a-fA-F]{64}")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
#: What a look-up of an unknown digest yields; no SHA-256 digest is 32 zero bytes in practice.
_MISS: tuple[bytes, APIKey | None] = (bytes(32), None)


def hash_api_key(key: str) -> str:
    """The SHA-256 hex digest of an API key, as :meth:`APIKeyVerifier.from_hashes` takes it.

    ``python -c "import bastion; print(bastion.hash_api_key('...'))"`` prints the
    digest to put in configuration instead of the key.
    """
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class APIKey:
    """The principal an API key stands for.

    Attributes:
        subject: Who the key belongs to (becomes ``AccessToken.subject``).
        client_id: The client the key identifies (default: the subject).
        scopes: The scopes the key grants.
        roles: The roles the key grants.
        claims: Extra claims, for application-specific use.
        expires_at: Seconds since the epoch after which the key is refused, or ``None``.
    """

    subject: str
    client_id: str | None = None
    scopes: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()
    claims: Mapping[str, Any] | None = field(default=None, hash=False)
    expires_at: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.subject, str) or not self.subject:
            raise ConfigurationError("an API key's subject must be a non-empty string")
        if self.client_id is not None and not isinstance(self.client_id, str):
            raise ConfigurationError("an API key's client_id must be a string")
        object.__setattr__(self, "scopes", _strings(self.scopes, "scopes"))
        object.__setattr__(self, "roles", _strings(self.roles, "roles"))
        if self.claims is not None and not isinstance(self.claims, Mapping):
            raise ConfigurationError("an API key's claims must be a mapping")
        expires_at = self.expires_at
        if expires_at is not None and (
            isinstance(expires_at, bool) or not isinstance(expires_at, int | float) or not math.isfinite(expires_at)
        ):
            raise ConfigurationError("an API key's expires_at must be a number of seconds since the epoch")

    @classmethod
    def coerce(cls, value: APIKey | str | Mapping[str, Any]) -> APIKey:
        """An :class:`APIKey` from itself, a subject string, or a mapping of its fields.

        Raises:
            ConfigurationError: the value has unknown fields or fields of the wrong type.
        """
        if isinstance(value, APIKey):
            return value
        if isinstance(value, str):
            return cls(value)
        if isinstance(value, Mapping):
            unknown = sorted(set(value) - set(cls.__dataclass_fields__))
            if unknown:
                raise ConfigurationError(f"unknown API key fields: {', '.join(map(str, unknown))}")
            if "subject" not in value:
                raise ConfigurationError("an API key needs a subject")
            return cls(**value)
        raise ConfigurationError("an API key maps to an APIKey, a subject string or a mapping")

    def access_token(self, token: str) -> AccessToken:
        """The access token of a request that presented this key as ``token``."""
        claims = {"sub": self.subject, **(self.claims or {})}
        return AccessToken(
            token=token,
            client_id=self.client_id or self.subject,
            subject=self.subject,
            scopes=list(self.scopes),
            roles=list(self.roles),
            expires_at=None if self.expires_at is None else int(self.expires_at),
            claims=claims,
        )


class APIKeyVerifier(Verifier):
    """Accepts a fixed set of API keys, each standing for a principal.

    Keys are kept only as SHA-256 digests. By default a key is read from
    ``Authorization: Bearer <key>``; with ``header="X-API-Key"`` it is read from
    that header instead (the whole value is the key).

    Args:
        keys: Each key and its principal: an :class:`APIKey`, a subject string, or a
            mapping of :class:`APIKey` fields.
        header: Read the key from this header instead of ``Authorization``.
        scheme: The ``Authorization`` scheme that carries the key (ignored with ``header``).

    Example::

        APIKeyVerifier({"sk-live-...": APIKey("ci-bot", scopes=("notes:read",))})
        APIKeyVerifier.from_hashes({hash_api_key("sk-live-..."): "ci-bot"}, header="X-API-Key")
    """

    def __init__(
        self,
        keys: Mapping[str, APIKey | str | Mapping[str, Any]],
        *,
        header: str | None = None,
        scheme: str = "Bearer",
    ) -> None:
        # Checking a key is one hash: a cache would only hold more digests.
        super().__init__(cache=TokenCache(max_size=0))
        if header is not None and (not _HEADER_NAME.fullmatch(header) or header.lower() == "authorization"):
            raise ConfigurationError(f"header must be an HTTP header name other than Authorization, got {header!r}")
        if not _HEADER_NAME.fullmatch(scheme or ""):
            raise ConfigurationError(f"scheme must be an HTTP authentication scheme name, got {scheme!r}")
        self.header = header
        self.scheme = scheme
        self._digests: dict[bytes, tuple[bytes, APIKey | None]] = {}
        for number, (key, principal) in enumerate(keys.items(), 1):
            if not isinstance(key, str) or not key or key != key.strip() or any(c.isspace() for c in key):
                raise ConfigurationError(f"API key #{number} is empty or contains whitespace")
            if len(key) > MAX_TOKEN_LENGTH:
                raise ConfigurationError(f"API key #{number} is longer than {MAX_TOKEN_LENGTH} characters")
            digest = _digest(key)
            self._digests[digest] = (digest, _principal(principal, number))

    @classmethod
    def from_hashes(
        cls,
        hashes: Mapping[str, APIKey | str | Mapping[str, Any]],
        *,
        header: str | None = None,
        scheme: str = "Bearer",
    ) -> APIKeyVerifier:
        """A verifier from SHA-256 hex digests of the keys (see :func:`hash_api_key`).

        A digest may carry a ``sha256:`` prefix.

        Raises:
            ConfigurationError: a digest is not 64 hexadecimal digits.
        """
        verifier = cls({}, header=header, scheme=scheme)
        for number, (digest, principal) in enumerate(hashes.items(), 1):
            hexdigest = digest.removeprefix("sha256:") if isinstance(digest, str) else ""
            if not _HEX_DIGEST.fullmatch(hexdigest):
                raise ConfigurationError(f"API key hash #{number} is not a SHA-256 hex digest (64 hex digits)")
            raw = bytes.fromhex(hexdigest)
            if raw in verifier._digests:
                raise ConfigurationError(f"API key hash #{number} appears twice")
            verifier._digests[raw] = (raw, _principal(principal, number))
        return verifier

    def __repr__(self) -> str:
        return f"{type(self).__name__}(<{len(self._digests)} keys>, header={self.header!r})"

    def __len__(self) -> int:
        return len(self._digests)

    async def authenticate(self, conn: HTTPConnection) -> AccessToken | None:
        """The principal of the request's key, or ``None`` when it presents none.

        Raises:
            InvalidToken: the key is unknown or malformed, or several were sent.
            TokenExpired: the key's ``expires_at`` has passed.
        """
        if self.header is None:
            key = authorization_credentials(conn, self.scheme, "API key")
        else:
            values = conn.headers.getlist(self.header)
            if not values:
                return None
            if len(values) > 1:
                raise InvalidToken(f"several {self.header} headers", description=f"Send one {self.header} header")
            key = values[0].strip()
            if not key:
                raise InvalidToken(f"empty {self.header} header", description="The API key is malformed")
        if key is None:
            return None
        return await self.verify(key)

    async def check(self, token: str) -> AccessToken:
        """The principal of one key.

        Raises:
            InvalidToken: the key is unknown.
            TokenExpired: the key's ``expires_at`` has passed.
        """
        digest = _digest(token)
        # The table is keyed by SHA-256 digests, never by keys: how long the look-up
        # takes depends only on the presented key's digest, which tells an attacker
        # nothing about any stored key short of a SHA-256 preimage. The comparison
        # that decides is compare_digest, made on a miss too, so hit and miss do the
        # same work after the look-up.
        stored, principal = self._digests.get(digest, _MISS)
        if not hmac.compare_digest(stored, digest) or principal is None:
            raise InvalidToken("unknown API key", description="The API key is invalid")
        if principal.expires_at is not None and principal.expires_at <= time.time():
            raise TokenExpired("the API key has expired", description="The API key expired")
        return principal.access_token(token)


#: The same verifier under the name other libraries use for a table of static tokens.
StaticTokenVerifier = APIKeyVerifier


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


def _principal(value: APIKey | str | Mapping[str, Any], number: int) -> APIKey:
    try:
        return APIKey.coerce(value)
    except ConfigurationError as exc:
        raise ConfigurationError(f"API key #{number}: {exc}") from None
    except TypeError:
        raise ConfigurationError(f"API key #{number}: fields of the wrong type") from None


def _strings(value: Iterable[str] | str, name: str) -> tuple[str, ...]:
    values = tuple(value.split()) if isinstance(value, str) else tuple(value)
    if not all(isinstance(v, str) and v for v in values):
        raise ConfigurationError(f"an API key's {name} must be strings")
    return values
