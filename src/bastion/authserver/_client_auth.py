"""Client authentication at the token, revocation and introspection endpoints.

- ``client_secret_basic``: HTTP Basic, id and secret form-urlencoded first
  (RFC 6749 section 2.3.1);
- ``client_secret_post``: ``client_id`` and ``client_secret`` in the body;
- ``private_key_jwt``: a JWT signed with one of the client's keys (RFC 7523
  section 2.2 and 3, OpenID Connect Core section 9);
- ``none``: a public client names itself with ``client_id`` (RFC 6749 section 2.1).

A client uses exactly the method it registered; two methods in one request are
an ``invalid_request`` (RFC 6749 section 2.3). Every failure to authenticate is
``invalid_client`` (401), with ``WWW-Authenticate: Basic`` when Basic was tried
(RFC 6749 section 5.2).
"""

from __future__ import annotations

import binascii
import logging
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus

from joserfc.jwa import JWSAlgModel
from joserfc.jwk import Key
from starlette.requests import Request

from bastion._core.errors import InvalidSignature, InvalidToken
from bastion._core.http import FetchError
from bastion._core.remote_json import RemoteJSON
from bastion._jose.compact import decode_claims
from bastion._jose.keys import fits, parse_key_set
from bastion._resource.jwt import ClaimNames, JWTVerifier
from bastion.authserver._errors import InvalidClient, InvalidRequest
from bastion.authserver._forms import Params
from bastion.authserver._models import Client, hash_secret, secret_matches

if TYPE_CHECKING:
    from bastion.authserver._server import AuthorizationServer

__all__ = ["ASSERTION_TYPE", "MAX_ASSERTION_LIFETIME", "authenticate_client"]

#: RFC 7523 section 2.2.
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
#: The longest life a client assertion may claim: it is a one-off credential.
MAX_ASSERTION_LIFETIME = 300.0
#: Seconds of clock skew allowed on an assertion's ``exp``, ``nbf`` and ``iat``.
LEEWAY = 30.0
#: Used assertion ids, remembered until the assertion expires (RFC 7523 section 3, item 7).
JTI_NAMESPACE = "client-assertion-jti"
MAX_JTI = 256
#: Seconds a client's fetched key set is used; a signature no key verifies refetches it
#: once it is older than ``JWKS_REFETCH_AFTER`` (the client rotated its keys).
JWKS_CACHE_SECONDS = 300.0
JWKS_REFETCH_AFTER = 30.0
JWKS_CACHE_ENTRIES = 1000
#: Signature algorithms accepted on client assertions: asymmetric only (no ``none``, no HMAC).
ASSERTION_ALGORITHMS = ("ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "EdDSA")

logger = logging.getLogger("bastion")

_BASIC_CHALLENGE = {"WWW-Authenticate": 'Basic realm="oauth"'}


def _refuse(description: str, basic: bool) -> InvalidClient:
    return InvalidClient(description, headers=_BASIC_CHALLENGE if basic else None)


def basic_credentials(request: Request) -> tuple[str, str] | None:
    """The ``(client_id, client_secret)`` of an ``Authorization: Basic`` header, or ``None`` without one.

    Raises:
        InvalidClient: the header is malformed.
    """
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic":
        raise InvalidClient("only Basic authorization is accepted here", headers=_BASIC_CHALLENGE)
    try:
        decoded = binascii.a2b_base64(value.strip().encode("ascii"), strict_mode=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise _refuse("the Basic credentials are not base64 of UTF-8 text", True) from None
    client_id, colon, secret = decoded.partition(":")
    if not colon:
        raise _refuse("the Basic credentials have no colon", True)
    # RFC 6749 section 2.3.1: both are application/x-www-form-urlencoded before Basic encoding.
    return unquote_plus(client_id, errors="strict"), unquote_plus(secret, errors="strict")


def _method(basic: tuple[str, str] | None, params: Params) -> str:
    methods = []
    if basic is not None:
        methods.append("client_secret_basic")
    if "client_secret" in params:
        methods.append("client_secret_post")
    if "client_assertion" in params or "client_assertion_type" in params:
        methods.append("private_key_jwt")
    if len(methods) > 1:
        raise InvalidRequest("use exactly one client authentication method")
    return methods[0] if methods else "none"


async def authenticate_client(server: AuthorizationServer, request: Request, params: Params) -> Client:
    """The client making ``request``, authenticated by the method it registered.

    Raises:
        InvalidRequest: two authentication methods at once, or client ids that disagree.
        InvalidClient: unknown client, wrong method, wrong credentials.
    """
    try:
        basic = basic_credentials(request)
    except UnicodeDecodeError:
        raise _refuse("the Basic credentials are not UTF-8", True) from None
    method = _method(basic, params)
    tried_basic = basic is not None
    named = params.get("client_id")
    if basic is not None:
        client_id = basic[0]
    elif method == "private_key_jwt":
        client_id = _assertion_subject(params)
    elif named is not None:
        client_id = named
    else:
        raise InvalidClient("the client did not identify itself")
    if named is not None and named != client_id:
        raise InvalidRequest("the client_id parameter names another client than the credentials")

    try:
        client = await server.clients.get(client_id)
    except FetchError:
        raise _refuse("the client's metadata document could not be fetched", tried_basic) from None
    if client is None:
        raise _refuse("unknown client", tried_basic)
    if client.token_endpoint_auth_method != method:
        raise _refuse(f"the client must authenticate with {client.token_endpoint_auth_method}", tried_basic)
    if method in ("client_secret_basic", "client_secret_post"):
        secret = basic[1] if basic is not None else params.require("client_secret")
        _check_secret(server, client, secret, tried_basic)
    elif method == "private_key_jwt":
        await _check_assertion(server, client, params.require("client_assertion"))
    return client


def _check_secret(server: AuthorizationServer, client: Client, secret: str, basic: bool) -> None:
    digest = client.client_secret_hash
    if digest is None:
        # Compare anyway, so an unknown secret takes the same time as a wrong one.
        secret_matches(secret, hash_secret(""))
        raise _refuse("the client has no secret", basic)
    if not secret_matches(secret, digest):
        raise _refuse("the client secret is wrong", basic)
    expires = client.client_secret_expires_at
    if expires and server.clock() >= expires:
        raise _refuse("the client secret expired", basic)


# -- private_key_jwt ------------------------------------------------------------------------------


def _segments(assertion: str) -> tuple[bytes, bytes, bytes]:
    try:
        header, payload, signature = assertion.encode("ascii").split(b".")
    except (UnicodeEncodeError, ValueError):
        raise InvalidClient("the client assertion is not a signed JWT") from None
    return header, payload, signature


def _assertion_subject(params: Params) -> str:
    """The client id an assertion claims to come from (checked against its signature later)."""
    if params.get("client_assertion_type") != ASSERTION_TYPE:
        raise InvalidClient(f"client_assertion_type must be {ASSERTION_TYPE}")
    assertion = params.require("client_assertion")
    _, payload, _ = _segments(assertion)
    try:
        claims = decode_claims(payload)
    except InvalidToken:
        raise InvalidClient("the client assertion's payload is not a JSON object") from None
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise InvalidClient("the client assertion has no sub")
    return subject


def _parse_key_set(document: Any) -> list[Key]:
    try:
        return parse_key_set(dict(document) if isinstance(document, Mapping) else document)
    except ValueError:
        raise InvalidClient("the client's key set has no usable key") from None


def _quiet(shown: str, reason: str, serving: bool) -> None:
    # A client's key set failing is the client's problem: its requests are refused, and
    # anyone may register a jwks_uri, so a warning per failure would let them flood the log.
    logger.info("fetching the client key set %s failed: %s", shown, reason)


class _ClientKeySets:
    """The key sets fetched from clients' ``jwks_uri``: one :class:`RemoteJSON` per URI, per server.

    A set is used for ``JWKS_CACHE_SECONDS`` and then refetched; a signature no key
    verifies refetches it once it is ``JWKS_REFETCH_AFTER`` old. A set that cannot be
    refetched once expired is not served: the client is refused (``stale_if_error=0``).
    """

    def __init__(self, server: AuthorizationServer) -> None:
        self._entries: dict[str, RemoteJSON[list[Key]]] = {}
        self._fetcher = server.fetcher
        self._clock = server.clock

    async def _fetch(self, uri: str) -> tuple[Any, str | None]:
        fetched = await self._fetcher.get_json(uri)  # SSRF-safe: vetted, pinned addresses
        return fetched.data, fetched.cache_control

    def get(self, uri: str) -> RemoteJSON[list[Key]]:
        remote = self._entries.get(uri)
        if remote is None:
            if len(self._entries) >= JWKS_CACHE_ENTRIES:
                self._entries.clear()
            remote = self._entries[uri] = RemoteJSON(
                uri,
                parse=parse_key_set,
                fetch=self._fetch,
                label="client key set",
                clock=self._clock,
                min_ttl=JWKS_CACHE_SECONDS,
                max_ttl=JWKS_CACHE_SECONDS,
                default_ttl=JWKS_CACHE_SECONDS,
                refetch_interval=JWKS_REFETCH_AFTER,
                timeout=None,  # the fetcher's own limits apply
                stale_if_error=0.0,
                on_failure=_quiet,
            )
        return remote


_key_sets: weakref.WeakKeyDictionary[AuthorizationServer, _ClientKeySets] = weakref.WeakKeyDictionary()


class _ClientKeys:
    """A client's keys as a :class:`~bastion._resource.jwt.KeySource`: its ``jwks``, or its ``jwks_uri``'s."""

    def __init__(self, server: AuthorizationServer, client: Client) -> None:
        self.remote: RemoteJSON[list[Key]] | None = None
        self._keys: list[Key] = []
        if client.jwks is not None:
            self._keys = _parse_key_set(client.jwks)
        elif client.jwks_uri is not None:
            sets = _key_sets.get(server)
            if sets is None:
                sets = _key_sets[server] = _ClientKeySets(server)
            self.remote = sets.get(client.jwks_uri)
        else:
            raise InvalidClient("the client has no keys registered")

    async def keys_for(self, kid: str | None, alg: JWSAlgModel) -> list[Key]:
        """The client's keys for ``alg`` with this ``kid`` or none (a client's keys may lack one)."""
        keys = self._keys
        if self.remote is not None:
            fetched = await self.remote.get()
            if fetched is None:
                raise InvalidClient("the client's key set could not be fetched")
            keys = fetched
        return [key for key in keys if fits(key, alg) and (kid is None or key.kid in (kid, None))]


def _audiences(server: AuthorizationServer) -> list[str]:
    issuer = server.require_issuer()
    return list(dict.fromkeys((server.url("/token"), issuer, issuer.rstrip("/"))))


async def _check_assertion(server: AuthorizationServer, client: Client, assertion: str) -> None:
    """Verify a client assertion (RFC 7523 section 3) as any JWT: signature, claims; then single use.

    The signature, the algorithm allow-list (asymmetric only: no ``none``, no HMAC),
    ``iss`` (the client id), ``aud`` (the token endpoint or the issuer), the required
    ``exp`` and the other dates with leeway are :class:`JWTVerifier`'s checks.
    """
    keys = _ClientKeys(server, client)
    verifier = JWTVerifier(
        key_set=keys,
        issuer=client.client_id,
        audience=_audiences(server),
        algorithms=ASSERTION_ALGORITHMS,
        leeway=LEEWAY,
        claims=ClaimNames(roles=None, client_id="sub"),
        clock=server.clock,
    )
    try:
        try:
            access = await verifier.check(assertion)
        except InvalidSignature:
            # The client may have rotated its keys: refetch (at most every JWKS_REFETCH_AFTER) and retry.
            if keys.remote is None or not await keys.remote.refresh():
                raise
            access = await verifier.check(assertion)
    except InvalidSignature:
        raise InvalidClient("the client assertion's signature does not verify") from None
    except InvalidToken as exc:
        raise InvalidClient(f"the client assertion is not valid: {str(exc)[:200]}") from None
    await _check_claims(server, client, access.claims or {})


async def _check_claims(server: AuthorizationServer, client: Client, claims: dict[str, Any]) -> None:
    """The rules of a client assertion beyond any JWT's: ``sub`` is the client, a short life, a fresh ``jti``."""
    if claims.get("sub") != client.client_id:
        raise InvalidClient("the client assertion's iss and sub must be the client id")
    now = server.clock()
    exp = float(claims["exp"])  # present and a NumericDate: checked by the verifier
    if exp > now + MAX_ASSERTION_LIFETIME + LEEWAY:
        raise InvalidClient("the client assertion lives too long")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti or len(jti) > MAX_JTI:
        raise InvalidClient("the client assertion has no usable jti")
    key = hash_secret(f"{client.client_id}\x00{jti}")
    if not await server.store.add(JTI_NAMESPACE, key, b"1", max(1.0, exp + LEEWAY - now)):
        raise InvalidClient("the client assertion was already used")
