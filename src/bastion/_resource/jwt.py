"""Verifying JWT access tokens (RFC 7519, RFC 9068) signed with a key, a key set or a secret.

joserfc does the key handling and the signature algorithms. The compact
serialization is split here and decoded by :mod:`bastion._jose.compact`, and the claims
are checked here in plain Python: that keeps a first-seen RS256 token within a few
microseconds of the bare signature check (see ``bench/bench_verify.py``). Keys come
from :mod:`bastion._jose.keys` and, for a key set, :mod:`bastion._jose.jwks`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, Protocol

from joserfc.jwa import JWSAlgModel
from joserfc.jwk import Key
from joserfc.jws import JWSRegistry
from pydantic import ValidationError

from bastion._core.errors import (
    ConfigurationError,
    InsufficientScope,
    InvalidAudience,
    InvalidClaims,
    InvalidIssuer,
    InvalidSignature,
    InvalidToken,
    TokenExpired,
    TokenNotYetValid,
    UnsupportedAlgorithm,
)
from bastion._core.http import DEFAULT_TIMEOUT
from bastion._jose.compact import b64decode, decode_claims, decode_json
from bastion._jose.jwks import shared_cache
from bastion._jose.keys import (
    JWKS_DEFAULT_ALGORITHMS,
    PublicKey,
    algorithm_names,
    import_public_key,
    import_secret,
    key_algorithms,
)
from bastion._resource.tokens import AccessToken
from bastion._resource.verifier import MAX_TOKEN_LENGTH, TokenCache, Verifier

__all__ = ["JWTVerifier"]

logger = logging.getLogger("bastion")

#: Numeric dates beyond 2**53 are not exact as floats, and no real token has them.
_MAX_NUMERIC_DATE = 2.0**53
_MAX_HEADERS_CACHED = 256
_ABSENT: Any = object()
_validate_access_token: Callable[[dict[str, Any]], AccessToken] = AccessToken.__pydantic_validator__.validate_python


class KeySource(Protocol):
    """Where a :class:`JWTVerifier` gets the keys for a token's ``kid`` and ``alg``."""

    async def keys_for(self, kid: str | None, alg: JWSAlgModel) -> Sequence[Key]:
        """The keys that may have signed such a token (possibly none)."""
        ...


class _Header(NamedTuple):
    alg: JWSAlgModel
    kid: str | None


def _as_list(value: object) -> list[str]:
    """A space-separated string (RFC 6749 section 3.3) or a list of strings, as a list."""
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return value
    raise ValueError("must be a string or a list of strings")


def _numeric(value: object, name: str) -> float:
    """A NumericDate claim (RFC 7519 section 2): a finite JSON number, not a bool or string."""
    if value is _ABSENT:
        raise InvalidClaims(f"the token has no {name} claim (RFC 9068 section 2.2)")
    if (type(value) is int or type(value) is float) and -_MAX_NUMERIC_DATE <= value <= _MAX_NUMERIC_DATE:
        return value
    raise InvalidClaims(f"the {name} claim is not a NumericDate")


def _path(name: str) -> tuple[str, ...] | None:
    return tuple(name.split(".")) if "." in name else None


def _claim(claims: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    """A claim by dotted path into nested objects (``realm_access.roles``), or ``None``."""
    node: Any = claims
    for part in path:
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def _normalize_typ(value: str) -> str:
    # RFC 7515 section 4.1.9: "application/" may be omitted when no other "/" appears.
    value = value.lower()
    return value.removeprefix("application/") if value.count("/") == 1 else value


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
        scope_claim: The claim holding the scopes; the default ``scope`` also
            falls back to ``scp``. A space-separated string or a list.
        roles_claim: The claim holding the roles (a dotted path reaches into
            objects, e.g. ``realm_access.roles``); ``None`` reads no roles.
        client_id_claim: The claim(s) naming the client, first present wins.
        typ: The required ``typ`` header (e.g. ``at+jwt``, RFC 9068 section 2.1), compared
            case-insensitively and with or without ``application/``.
        clock: Seconds since the epoch; injectable for tests.
        cache: The verified-token cache (default: a fresh :class:`TokenCache`).
        jwks_refetch_interval: The least seconds between two key set fetches.
        jwks_min_ttl, jwks_max_ttl: Bounds on the key set lifetime from ``Cache-Control``.
        jwks_default_ttl: The key set lifetime when the response sets none.
        jwks_timeout: Seconds for one key set fetch.

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
        scope_claim: str = "scope",
        roles_claim: str | None = "roles",
        client_id_claim: str | Sequence[str] = ("client_id", "azp", "sub"),
        typ: str | None = None,
        clock: Callable[[], float] = time.time,
        cache: TokenCache | None = None,
        jwks_refetch_interval: float = 30.0,
        jwks_min_ttl: float = 60.0,
        jwks_max_ttl: float = 86400.0,
        jwks_default_ttl: float = 300.0,
        jwks_timeout: float = DEFAULT_TIMEOUT,
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
        self.typ = None if typ is None else _normalize_typ(typ)
        self._issuer_set = frozenset(self.issuers)
        self._clock = clock
        self._scope_claim = scope_claim
        self._scope_path = _path(scope_claim)
        self._roles_claim = roles_claim
        self._roles_path = None if roles_claim is None else _path(roles_claim)
        self._client_id_claims = (client_id_claim,) if isinstance(client_id_claim, str) else tuple(client_id_claim)
        self._headers: dict[bytes, _Header] = {}
        self._jwks: KeySource | None = key_set
        self._keys: dict[str, tuple[Key, ...]] = {}

        if key_set is not None:
            names = algorithm_names(algorithms, JWKS_DEFAULT_ALGORITHMS)
            if any(JWSRegistry.algorithms[name].key_type == "oct" for name in names):
                raise ConfigurationError("HMAC algorithms cannot be used with a public key set")
        elif jwks_uri is not None:
            names = algorithm_names(algorithms, JWKS_DEFAULT_ALGORITHMS)
            if any(JWSRegistry.algorithms[name].key_type == "oct" for name in names):
                raise ConfigurationError("HMAC algorithms cannot be used with a public key set")
            self._jwks = shared_cache(
                jwks_uri,
                clock=clock,
                min_ttl=jwks_min_ttl,
                max_ttl=jwks_max_ttl,
                default_ttl=jwks_default_ttl,
                refetch_interval=jwks_refetch_interval,
                timeout=jwks_timeout,
            )
        else:
            key = import_public_key(public_key) if secret is None else import_secret(secret)
            names = key_algorithms(key, algorithms)
            self._keys = {name: (key,) for name in names}
        self.algorithms: tuple[str, ...] = names
        self._algorithms = {name: JWSRegistry.algorithms[name] for name in names}
        if not self.audiences:
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

    # -- verification ---------------------------------------------------------------------------

    async def check(self, token: str) -> AccessToken:
        """Verify the signature and claims of a JWT access token.

        Raises:
            InvalidToken: or a subclass naming the reason.
            InsufficientScope: a valid token without the ``required_scopes``.
            Never another exception.
        """
        if len(token) > MAX_TOKEN_LENGTH:
            raise InvalidToken("token too long", description="The access token is too long")
        try:
            raw = token.encode("ascii")
        except UnicodeEncodeError:
            raise InvalidToken("the token is not ASCII") from None
        try:
            header_segment, payload_segment, signature_segment = raw.split(b".")
        except ValueError:
            # Five segments would be a JWE (RFC 7516); encrypted access tokens are not supported.
            raise InvalidToken(f"a JWS has 3 segments (RFC 7515 section 7.1), not {raw.count(b'.') + 1}") from None
        header = self._headers.get(header_segment)
        new_header = header is None
        if header is None:
            header = self._parse_header(header_segment)
        alg = header.alg
        try:
            signature = b64decode(signature_segment)
        except ValueError:
            raise InvalidSignature("the signature is not base64url") from None
        if not signature:
            raise InvalidSignature("the token has no signature")
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
        signing_input = raw[: len(header_segment) + 1 + len(payload_segment)]
        for key in keys:
            try:
                valid = alg.verify(signing_input, signature, key)
            except Exception:  # a malformed signature can make a backend raise instead of answer
                valid = False
            if valid:
                break
        else:
            raise InvalidSignature(f"the {alg.name} signature does not verify")
        if refusal is not None:
            raise refusal
        if new_header:
            if len(self._headers) >= _MAX_HEADERS_CACHED:
                self._headers.clear()
            self._headers[header_segment] = header
        return access

    def _parse_header(self, segment: bytes) -> _Header:
        try:
            header = decode_json(segment)
        except (ValueError, RecursionError):
            raise InvalidToken("the header is not base64url-encoded JSON") from None
        if type(header) is not dict:
            raise InvalidToken("the header is not a JSON object")
        name = header.get("alg")
        if not isinstance(name, str):
            raise InvalidToken("the header has no alg")
        alg = self._algorithms.get(name)
        if alg is None:
            raise UnsupportedAlgorithm(f"alg {name!r:.40} is not in the allow-list {list(self._algorithms)}")
        if "crit" in header:
            # RFC 7515 section 4.1.11: a recipient that does not understand a listed extension must refuse.
            raise InvalidToken("the header has crit: no extension is understood")
        if header.get("b64", True) is not True:
            raise InvalidToken("unencoded payloads (RFC 7797) are not accepted")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise InvalidToken("the kid header is not a string")
        if self.typ is not None:
            typ = header.get("typ")
            if not isinstance(typ, str) or _normalize_typ(typ) != self.typ:
                raise InvalidToken(f"the typ header is {typ!r:.40}, not {self.typ!r}")
        # jku, x5u, x5c and jwk are ignored on purpose: keys come from configuration only (RFC 8725 section 3.10).
        return _Header(alg, kid)

    def _access_token(self, token: str, claims: dict[str, Any]) -> AccessToken:
        # Straight-line, with inline fast paths for the usual types, on purpose: this runs
        # for every first-seen token (see bench/bench_verify.py).
        get = claims.get
        now = self._clock()
        leeway = self.leeway
        exp = get("exp", _ABSENT)
        if type(exp) is not int or not 0 <= exp <= _MAX_NUMERIC_DATE:
            exp = _numeric(exp, "exp")
        if now >= exp + leeway:
            raise TokenExpired(f"the token expired at {exp}, now is {now:.0f}")
        limit = now + leeway
        nbf = get("nbf", _ABSENT)
        if nbf is not _ABSENT and not (type(nbf) is int and 0 <= nbf <= limit) and _numeric(nbf, "nbf") > limit:
            raise TokenNotYetValid("the token's nbf lies in the future")
        iat = get("iat", _ABSENT)
        if iat is not _ABSENT and not (type(iat) is int and 0 <= iat <= limit) and _numeric(iat, "iat") > limit:
            raise TokenNotYetValid("the token's iat lies in the future")

        issuer = get("iss")
        if issuer is not None and type(issuer) is not str:
            raise InvalidClaims("the iss claim is not a string")
        if self._issuer_set and issuer not in self._issuer_set:
            raise InvalidIssuer(f"the issuer {issuer!r:.100} is not trusted")
        if self.audiences:
            aud = get("aud")
            resource: str | None = aud if type(aud) is str and aud in self.audiences else self._audience(aud)
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
                break
        else:
            raise InvalidClaims(f"the token names no client ({', '.join(self._client_id_claims)})")

        granted = get(self._scope_claim)
        if granted is None and self._scope_path is not None:
            granted = _claim(claims, self._scope_path)
        elif granted is None and self._scope_claim == "scope":
            granted = get("scp")  # Azure AD, Okta
        roles_claim = self._roles_claim
        roles = None if roles_claim is None else get(roles_claim)
        if roles is None and self._roles_path is not None:
            roles = _claim(claims, self._roles_path)
        try:
            scopes = [] if granted is None else granted.split() if type(granted) is str else _as_list(granted)
            roles = [] if roles is None else _as_list(roles)
        except ValueError as exc:
            raise InvalidClaims(f"the scope or roles claim {exc}") from None
        if self.required_scopes and not self.required_scopes.issubset(scopes):
            # A valid token short of scope: a step-up (403), not a token to throw away (401).
            raise InsufficientScope(sorted(self.required_scopes), "required scopes missing", granted=scopes)
        try:
            # The validator itself, not __init__: the same checks, a microsecond sooner.
            return _validate_access_token(
                {
                    "token": token,
                    "client_id": client_id,
                    "subject": subject,
                    "scopes": scopes,
                    "roles": roles,
                    "expires_at": exp if type(exp) is int else int(exp),
                    "resource": resource,
                    "issuer": issuer,
                    "claims": claims,
                }
            )
        except ValidationError as exc:  # defence in depth: every claim used was type-checked above
            raise InvalidClaims(f"the claims do not make an access token ({exc.error_count()} errors)") from None

    def _audience(self, aud: object) -> str:
        """The configured audience the token's ``aud`` names (RFC 7519 section 4.1.3)."""
        if isinstance(aud, str):
            if aud in self.audiences:
                return aud
        elif isinstance(aud, list):
            if not all(isinstance(item, str) for item in aud):
                raise InvalidClaims("the aud claim is not a string or a list of strings")
            for audience in self.audiences:
                if audience in aud:
                    return audience
        elif aud is not None:
            raise InvalidClaims("the aud claim is not a string or a list of strings")
        raise InvalidAudience(f"the token is for {aud!r:.100}, not for {list(self.audiences)}")
