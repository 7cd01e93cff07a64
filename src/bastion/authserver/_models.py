"""The authorization server's records: users, clients and issued token sets, serialised to JSON for a store."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from bastion._core.errors import ConfigurationError

__all__ = ["Client", "ClientKind", "TokenSet", "User", "hash_secret", "secret_matches"]

#: How the server knows a client: registered through RFC 7591, described by a
#: Client ID Metadata Document at its URL, or configured in code or a file.
ClientKind = Literal["registered", "metadata_document", "static"]


def hash_secret(secret: str) -> str:
    """The stored form of a client secret, refresh token or code: its SHA-256, hex.

    These values are 256-bit random strings, so a fast hash is enough: there is
    nothing to guess, only a database leak to make useless.
    """
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def secret_matches(secret: str, digest: str) -> bool:
    """Whether ``secret`` hashes to ``digest``, compared in constant time."""
    return hmac.compare_digest(hash_secret(secret), digest)


@dataclass(frozen=True)
class User:
    """A signed-in end user, as the login step reports them.

    Args:
        subject: The stable, unique identifier that becomes the token's ``sub``.
        name: A display name for pages and the ``name`` claim.
        email: The user's email address, if known.
        roles: Roles, carried in the access token's ``roles`` claim.
        claims: More claims to put in the access token (never ``iss``, ``aud``,
            ``exp`` and the other registered ones, which the server sets).
    """

    subject: str
    name: str | None = None
    email: str | None = None
    roles: tuple[str, ...] = ()
    claims: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.subject, str) or not self.subject:
            raise ConfigurationError("a user needs a non-empty subject")
        object.__setattr__(self, "roles", tuple(self.roles))
        object.__setattr__(self, "claims", dict(self.claims))

    @property
    def display_name(self) -> str:
        """The name to show on pages: ``name``, else ``email``, else ``subject``."""
        return self.name or self.email or self.subject

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "subject": self.subject,
            "name": self.name,
            "email": self.email,
            "roles": list(self.roles),
            "claims": dict(self.claims),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> User:
        """The inverse of :meth:`to_dict`."""
        return cls(
            subject=data["subject"],
            name=data.get("name"),
            email=data.get("email"),
            roles=tuple(data.get("roles") or ()),
            claims=data.get("claims") or {},
        )


@dataclass(frozen=True)
class Client:
    """An OAuth client known to the server (RFC 7591 section 2 metadata).

    A public client (``token_endpoint_auth_method="none"``) has no secret. A
    confidential one authenticates with ``client_secret_basic``,
    ``client_secret_post`` (only the secret's hash is kept) or ``private_key_jwt``
    (``jwks`` or ``jwks_uri``).

    ``dpop_bound_access_tokens=True`` (RFC 9449 section 5.2) says the client always sends a
    DPoP proof: its token requests without one are refused.

    ``introspection=True`` lets a pre-registered confidential client (a resource server)
    introspect every client's tokens at ``/introspect``; any other client learns only about
    its own (RFC 7662 section 4). It is set in code or the clients file, never through
    ``/register`` or a Client ID Metadata Document.
    """

    client_id: str
    redirect_uris: tuple[str, ...] = ()
    client_name: str | None = None
    token_endpoint_auth_method: str = "none"
    grant_types: tuple[str, ...] = ("authorization_code", "refresh_token")
    response_types: tuple[str, ...] = ("code",)
    scope: str | None = None
    application_type: str | None = None
    client_uri: str | None = None
    logo_uri: str | None = None
    tos_uri: str | None = None
    policy_uri: str | None = None
    contacts: tuple[str, ...] = ()
    software_id: str | None = None
    software_version: str | None = None
    jwks: Mapping[str, Any] | None = None
    jwks_uri: str | None = None
    client_secret_hash: str | None = field(default=None, repr=False)
    client_id_issued_at: int | None = None
    client_secret_expires_at: int | None = None
    kind: ClientKind = "static"
    introspection: bool = False
    dpop_bound_access_tokens: bool = False

    def __post_init__(self) -> None:
        for name in ("redirect_uris", "grant_types", "response_types", "contacts"):
            value = getattr(self, name)
            if isinstance(value, str):
                raise TypeError(f"{name} takes a list of strings, not one string")
            object.__setattr__(self, name, tuple(value))

    @property
    def is_public(self) -> bool:
        """A client without credentials of its own (RFC 6749 section 2.1)."""
        return self.token_endpoint_auth_method == "none"

    @property
    def display_name(self) -> str:
        """The name to show on the consent page: ``client_name``, else the client id."""
        return self.client_name or self.client_id

    def allowed_scopes(self) -> frozenset[str] | None:
        """The scopes this client registered for, or ``None`` for no restriction."""
        return None if self.scope is None else frozenset(self.scope.split())

    def to_json(self) -> bytes:
        """The record as stored."""
        data = dataclasses.asdict(self)
        return json.dumps(data, separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Client:
        """The inverse of :meth:`to_json`."""
        data = json.loads(raw)
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in names})

    def public_metadata(self) -> dict[str, Any]:
        """The registration response fields (RFC 7591 section 3.2.1): no secret hash, no internals."""
        data: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name in ("client_secret_hash", "kind", "introspection"):
                continue
            value = getattr(self, f.name)
            if value is None or value == () or value is False:
                continue
            data[f.name] = list(value) if isinstance(value, tuple) else value
        return data


def as_scopes(value: str | Sequence[str] | None) -> tuple[str, ...]:
    """Scopes from a space-separated string or a list, order kept, duplicates dropped."""
    items = value.split() if isinstance(value, str) else list(value or ())
    return tuple(dict.fromkeys(items))


@dataclass(frozen=True)
class TokenSet:
    """What a successful token request returns (RFC 6749 section 5.1).

    Attributes:
        access_token: The access token (a JWT).
        expires_in: Its lifetime in seconds when issued.
        scopes: The access token's scopes.
        refresh_token: The refresh token, when one is issued.
        issued_at: When the access token was minted (to count ``expires_in`` down on a replay).
        subject, grant_id, resource: Whom the tokens are for, under which grant, for which
            audience: for the audit event of the token endpoint, never sent nor sealed.
        jkt: The thumbprint of the DPoP key the access token is bound to (RFC 9449 section 6.1),
            or ``None`` for a bearer token: the ``token_type`` is ``DPoP`` or ``Bearer``.
    """

    access_token: str
    expires_in: int
    scopes: tuple[str, ...]
    refresh_token: str | None = None
    issued_at: float = 0.0
    subject: str | None = None
    grant_id: str | None = None
    resource: str | None = None
    jkt: str | None = None

    @property
    def token_type(self) -> str:
        """``DPoP`` for an access token bound to a key (RFC 9449 section 5), else ``Bearer``."""
        return "Bearer" if self.jkt is None else "DPoP"

    def body(self, now: float | None = None) -> dict[str, Any]:
        """The JSON response body; ``expires_in`` counted from ``now`` when given."""
        expires_in = self.expires_in
        if now is not None:
            expires_in = max(0, self.expires_in - int(max(0.0, now - self.issued_at)))
        body: dict[str, Any] = {
            "access_token": self.access_token,
            "token_type": self.token_type,
            "expires_in": expires_in,
        }
        if self.scopes:
            body["scope"] = " ".join(self.scopes)
        if self.refresh_token is not None:
            body["refresh_token"] = self.refresh_token
        return body

    def to_json(self) -> bytes:
        """The set as JSON bytes (to be sealed)."""
        data = {
            "access_token": self.access_token,
            "expires_in": self.expires_in,
            "scopes": list(self.scopes),
            "refresh_token": self.refresh_token,
            "issued_at": self.issued_at,
            "jkt": self.jkt,
        }
        return json.dumps(data, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> TokenSet:
        """The inverse of :meth:`to_json`."""
        data = json.loads(raw)
        return cls(
            access_token=data["access_token"],
            expires_in=int(data["expires_in"]),
            scopes=tuple(data["scopes"]),
            refresh_token=data["refresh_token"],
            issued_at=float(data["issued_at"]),
            jkt=data.get("jkt"),
        )
