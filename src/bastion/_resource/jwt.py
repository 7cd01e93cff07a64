"""Verifying JWT access tokens (RFC 7519, RFC 9068) signed with a key, a key set or a secret.

joserfc does the key handling and the signature algorithms. The compact
serialization is split, and the header, signature and registered claims checked, by
:mod:`bastion._jose.jwt` in plain Python; this module reads the scopes, roles and
client and builds the :class:`~bastion.AccessToken`. That keeps a first-seen RS256
token within a few microseconds of the bare signature check (see
``bench/bench_verify.py``). Keys come from :mod:`bastion._jose.keys` and, for a key
set, :mod:`bastion._jose.jwks`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from joserfc.jwa import JWSAlgModel
from joserfc.jwk import Key
from joserfc.jws import JWSRegistry

from bastion._core.errors import ConfigurationError, InsufficientScope, InvalidClaims, InvalidSignature, InvalidToken
from bastion._jose.compact import decode_claims
from bastion._jose.jwks import JWKSOptions, shared_cache
from bastion._jose.jwt import (
    Header,
    as_list,
    check_issuer,
    check_times,
    claim_at,
    claim_path,
    decode_signature,
    match_audience,
    normalize_typ,
    parse_header,
    split,
)
from bastion._jose.keys import (
    JWKS_DEFAULT_ALGORITHMS,
    PublicKey,
    algorithm_names,
    import_public_key,
    import_secret,
    key_algorithms,
)
from bastion._jose.signature import verify_signature
from bastion._resource.tokens import NOT_PROXIED, AccessToken, verified_access_token
from bastion._resource.verifier import MAX_TOKEN_LENGTH, TokenCache, Verifier

__all__ = ["ClaimNames", "JWTVerifier"]

logger = logging.getLogger("bastion")

_MAX_HEADERS_CACHED = 256
#: Distinct strings shared between cached tokens (issuers, audiences, clients, scopes).
_MAX_SHARED = 4096


class KeySource(Protocol):
    """Where a :class:`JWTVerifier` gets the keys for a token's ``kid`` and ``alg``."""

    async def keys_for(self, kid: str | None, alg: JWSAlgModel) -> Sequence[Key]:
        """The keys that may have signed such a token (possibly none)."""
        ...


@dataclass(frozen=True)
class ClaimNames:
    """Which claims of an access token hold its scopes, roles and client id (for :class:`JWTVerifier`).

    A dotted scope or roles claim reaches into objects (``realm_access.roles``) when no
    claim has that very name (Auth0's ``https://example.com/roles`` is read as named).

    Attributes:
        scope: The claim holding the scopes, a space-separated string or a list; the
            default ``scope`` also falls back to ``scp`` (Entra ID, Okta).
        roles: The claim holding the roles, a string or a list; ``None`` reads no roles.
        client_id: The claim(s) naming the client (RFC 9068 section 2.2), the first
            present wins.
    """

    scope: str = "scope"
    roles: str | None = "roles"
    client_id: str | Sequence[str] = ("client_id", "azp", "sub")


class JWTVerifier(Verifier):
    """Verifies JWT access tokens signed by a trusted issuer.

    Give exactly one source of keys: ``public_key``, ``jwks_uri``, ``key_set`` or ``secret``.

    Args:
        public_key: A PEM public key or certificate, a JWK dict, or a joserfc or
            ``cryptography`` public key.
        jwks_uri: The issuer's JWK Set URL; keys are fetched and cached (see :class:`JWKSCache`).
        key_set: Any other source of keys: an object with
            ``async keys_for(kid, alg) -> list[Key]``, as :class:`JWKSCache` has
            (bastion's own authorization server passes its key ring).
        secret: An HMAC secret of at least 32 bytes (HS256) shared with the issuer.
        issuer: The trusted issuer(s); ``iss`` must be one. ``None`` accepts any.
        audience: This resource's identifier(s) (RFC 8707); ``aud`` must name one.
            ``None`` adopts the server's resource URL through :meth:`expect_audience`.
        algorithms: The accepted ``alg`` values. Default: the one the key is for
            (``RS256`` for RSA, ``ES256`` for P-256, ``EdDSA`` for Ed25519,
            ``HS256`` for a secret), or every asymmetric algorithm for a key set.
        leeway: Seconds of clock skew allowed on ``exp``, ``nbf`` and ``iat``.
        required_scopes: Scopes every token must carry; a valid token without them is
            refused with :class:`~bastion.InsufficientScope` (HTTP 403, step-up).
        claims: Which claims hold scopes, roles and the client id: a :class:`ClaimNames`
            (default: ``scope`` or else ``scp``, ``roles``, the first of ``client_id``,
            ``azp`` and ``sub``). It replaces the ``scope_claim``, ``roles_claim`` and
            ``client_id_claim`` arguments: ``claims=ClaimNames(roles="realm_access.roles")``.
        typ: The required ``typ`` header (e.g. ``at+jwt``, RFC 9068 section 2.1), compared
            case-insensitively and with or without ``application/``.
        clock: Seconds since the epoch; injectable for tests.
        cache: The verified-token cache (default: a fresh :class:`TokenCache`).
        jwks: How the ``jwks_uri`` key set is fetched and kept: a :class:`JWKSOptions`
            (its least interval between fetches, its lifetime bounds, its timeout).

    Raises:
        ConfigurationError: the settings are contradictory or unsafe.
    """

    def __init__(
        self,
        *,
        public_key: PublicKey | None = None,
        jwks_uri: str | None = None,
        secret: str | bytes | None = None,
        key_set: KeySource | None = None,
        issuer: str | Sequence[str] | None = None,
        audience: str | Sequence[str] | None = None,
        algorithms: Sequence[str] | None = None,
        leeway: float = 30.0,
        required_scopes: Sequence[str] | None = None,
        claims: ClaimNames | None = None,
        typ: str | None = None,
        clock: Callable[[], float] = time.time,
        cache: TokenCache | None = None,
        jwks: JWKSOptions | None = None,
        _server_sets_audience: bool = False,
    ) -> None:
        super().__init__(cache=TokenCache(clock=clock) if cache is None else cache)
        if sum(source is not None for source in (public_key, jwks_uri, secret, key_set)) != 1:
            raise ConfigurationError("give exactly one of public_key, jwks_uri, key_set and secret")
        if not (math.isfinite(leeway) and leeway >= 0):
            raise ConfigurationError("leeway must be a finite, non-negative number of seconds")
        self.issuers: tuple[str, ...] = self._strings("issuer", issuer)
        self.audiences: tuple[str, ...] = self._strings("audience", audience)
        self.leeway = float(leeway)
        self.required_scopes: frozenset[str] = frozenset(required_scopes or ())
        self.typ = None if typ is None else normalize_typ(typ)
        self._issuer_set = frozenset(self.issuers)
        self._clock = clock
        named = ClaimNames() if claims is None else claims
        self._scope_claim = named.scope
        self._scope_path = claim_path(named.scope)
        self._roles_claim = named.roles
        self._roles_path = None if named.roles is None else claim_path(named.roles)
        self._client_id_claims = (named.client_id,) if isinstance(named.client_id, str) else tuple(named.client_id)
        self._headers: dict[bytes, Header] = {}
        self._jwks: KeySource | None = key_set
        self._keys: dict[str, tuple[Key, ...]] = {}
        #: The private values of the tokens built here (an OAuth proxy's verifier has its own).
        self._private: dict[str, Any] = NOT_PROXIED
        self._shared: dict[str, str] = {}

        if key_set is not None:
            names = algorithm_names(algorithms, JWKS_DEFAULT_ALGORITHMS)
            if any(JWSRegistry.algorithms[name].key_type == "oct" for name in names):
                raise ConfigurationError("HMAC algorithms cannot be used with a public key set")
        elif jwks_uri is not None:
            names = algorithm_names(algorithms, JWKS_DEFAULT_ALGORITHMS)
            if any(JWSRegistry.algorithms[name].key_type == "oct" for name in names):
                raise ConfigurationError("HMAC algorithms cannot be used with a public key set")
            options = jwks if jwks is not None else JWKSOptions()
            self._jwks = shared_cache(
                jwks_uri,
                clock=clock,
                min_ttl=options.min_ttl,
                max_ttl=options.max_ttl,
                default_ttl=options.default_ttl,
                refetch_interval=options.refetch_interval,
                timeout=options.timeout,
            )
        else:
            key = import_public_key(public_key) if secret is None else import_secret(secret)
            names = key_algorithms(key, algorithms)
            self._keys = {name: (key,) for name in names}
        self.algorithms: tuple[str, ...] = names
        self._algorithms = {name: JWSRegistry.algorithms[name] for name in names}
        # bastion's own verifiers (from_env(), RemoteAuthorization, an authorization server's)
        # are always handed the resource URL before a token: only a user's own may be used bare.
        if not self.audiences and not _server_sets_audience:
            logger.warning(
                "JWTVerifier has no audience: tokens issued for any resource are accepted "
                "until the server sets its resource URL (pass audience=...)"
            )

    @staticmethod
    def _strings(name: str, value: str | Sequence[str] | None) -> tuple[str, ...]:
        values = (value,) if isinstance(value, str) else tuple(value or ())
        if not all(isinstance(item, str) and item for item in values):
            raise ConfigurationError(f"{name} must be a non-empty string or a list of them")
        return values

    def expect_audience(self, audience: str) -> None:
        """Adopt the server's resource URL as the audience, unless one was configured."""
        if not self.audiences and audience:
            self.audiences = (audience,)
            logger.info("JWTVerifier now requires the audience %s", audience)

    async def ready(self) -> bool:
        """Whether the key set (of a ``jwks_uri``, or a key source that says) was had at least once."""
        probe = getattr(self._jwks, "ready", None)
        return True if probe is None else bool(await probe())

    # -- verification ---------------------------------------------------------------------------

    async def check(self, token: str) -> AccessToken:
        """Verify the signature and claims of a JWT access token; it raises nothing but the errors below.

        Raises:
            InvalidToken: or a subclass naming the reason.
            InsufficientScope: a valid token without the ``required_scopes``.
        """
        if len(token) > MAX_TOKEN_LENGTH:
            raise InvalidToken("token too long", description="The access token is too long")
        try:
            raw = token.encode("ascii")
        except UnicodeEncodeError:
            raise InvalidToken("the token is not ASCII") from None
        header_segment, payload_segment, signature_segment = split(raw)
        header = self._headers.get(header_segment)
        new_header = header is None
        if header is None:
            header = parse_header(header_segment, self._algorithms, self.typ)
        alg = header.alg
        signature = decode_signature(signature_segment)
        refusal: InvalidToken | None = None
        try:
            access = self._access_token(token, decode_claims(payload_segment))
        except InvalidToken as exc:
            # Raised only once the signature verifies: a forgery is refused as one, whatever
            # its claims say. Checking them first is pure computation on untrusted data.
            refusal = exc
        if self._jwks is None:
            keys: Sequence[Key] = self._keys[alg.name]
        else:
            keys = await self._jwks.keys_for(header.kid, alg)
            if not keys:
                raise InvalidSignature(f"no trusted {alg.name} key has kid {header.kid!r:.60}")
        verify_signature(alg, raw[: len(header_segment) + 1 + len(payload_segment)], signature, keys)
        if refusal is not None:
            raise refusal
        if new_header:
            if len(self._headers) >= _MAX_HEADERS_CACHED:
                self._headers.clear()
            self._headers[header_segment] = header
        return access

    def _access_token(self, token: str, claims: dict[str, Any]) -> AccessToken:
        # Straight-line, with inline fast paths for the usual types, on purpose: this runs
        # for every first-seen token (see bench/bench_verify.py).
        get = claims.get
        exp = check_times(claims, self._clock(), self.leeway)
        issuer = check_issuer(get("iss"), self._issuer_set)
        if self.audiences:
            aud = get("aud")
            resource: str | None = (
                aud if type(aud) is str and aud in self.audiences else match_audience(aud, self.audiences)
            )
        else:
            resource = None
        subject = get("sub")
        if subject is not None and type(subject) is not str:
            raise InvalidClaims("the sub claim is not a string")
        for name in self._client_id_claims:
            client_id = get(name)
            if client_id is not None:
                if type(client_id) is not str or not client_id:
                    raise InvalidClaims(f"the {name} claim is not a non-empty string")
                client_claim = name
                break
        else:
            raise InvalidClaims(f"the token names no client ({', '.join(self._client_id_claims)})")

        granted = get(self._scope_claim)
        if granted is None and self._scope_path is not None:
            granted = claim_at(claims, self._scope_path)
        elif granted is None and self._scope_claim == "scope":
            granted = get("scp")  # Azure AD, Okta
        roles_claim = self._roles_claim
        roles = None if roles_claim is None else get(roles_claim)
        if roles is None and self._roles_path is not None:
            roles = claim_at(claims, self._roles_path)
        try:
            scopes = [] if granted is None else granted.split() if type(granted) is str else as_list(granted)
            roles = [] if roles is None else as_list(roles)
        except ValueError as exc:
            raise InvalidClaims(f"the scope or roles claim {exc}") from None
        if self.required_scopes and not self.required_scopes.issubset(scopes):
            # A valid token short of scope: a step-up (403), not a token to throw away (401).
            raise InsufficientScope(sorted(self.required_scopes), "required scopes missing", granted=scopes)
        # Values most tokens repeat (issuer, audience, client) kept once, not once per cached
        # token; the table is bounded, so a stream of odd tokens cannot grow it.
        shared = self._shared
        if len(shared) < _MAX_SHARED:
            share = shared.setdefault
            if issuer is not None:
                claims["iss"] = issuer = share(issuer, issuer)
            if resource is not None and type(claims["aud"]) is str:
                claims["aud"] = resource = share(resource, resource)
            claims[client_claim] = client_id = share(client_id, client_id)
        # Every value was type-checked above: built without pydantic's validation and its copies.
        return verified_access_token(
            {
                "token": token,
                "client_id": client_id,
                "scopes": scopes,
                "expires_at": exp if type(exp) is int else int(exp),
                "resource": resource,
                "subject": subject,
                "claims": claims,
                "roles": roles,
                "issuer": issuer,
            },
            self._private,
        )
