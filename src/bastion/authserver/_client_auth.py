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
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus

from joserfc.jwk import Key
from joserfc.jws import JWSRegistry
from starlette.requests import Request

from bastion._core.errors import InvalidToken
from bastion._core.http import FetchError
from bastion._jose.compact import b64decode, decode_claims, decode_json
from bastion._jose.keys import fits, parse_key_set
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


class _KeySetCache:
    """Client key sets fetched from ``jwks_uri``, kept a few minutes in this process."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[float, list[Key]]] = {}

    def get(self, uri: str, now: float, max_age: float) -> list[Key] | None:
        entry = self._entries.get(uri)
        if entry is None or now - entry[0] > max_age:
            return None
        return entry[1]

    def put(self, uri: str, now: float, keys: list[Key]) -> None:
        if len(self._entries) >= JWKS_CACHE_ENTRIES:
            self._entries.clear()
        self._entries[uri] = (now, keys)


_key_sets = _KeySetCache()


def _parse(document: Any) -> list[Key]:
    try:
        return parse_key_set(dict(document) if isinstance(document, Mapping) else document)
    except ValueError:
        raise InvalidClient("the client's key set has no usable key") from None


async def _client_keys(server: AuthorizationServer, client: Client, *, fresh: bool = False) -> list[Key]:
    """The client's keys: ``jwks``, or ``jwks_uri`` fetched SSRF-safely (cached, refetched for a new key)."""
    if client.jwks is not None:
        return _parse(client.jwks)
    uri = client.jwks_uri
    if uri is None:
        raise InvalidClient("the client has no keys registered")
    now = server.clock()
    keys = _key_sets.get(uri, now, JWKS_REFETCH_AFTER if fresh else JWKS_CACHE_SECONDS)
    if keys is not None:
        return keys
    try:
        document = (await server.fetcher.get_json(uri)).data
    except FetchError:
        raise InvalidClient("the client's key set could not be fetched") from None
    keys = _parse(document)
    _key_sets.put(uri, now, keys)
    return keys


def _audiences(server: AuthorizationServer) -> set[str]:
    issuer = server.require_issuer()
    return {issuer, issuer.rstrip("/"), server.url("/token")}


def _numeric(claims: dict[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidClient(f"the client assertion's {name} is not a number")
    return float(value)


async def _check_assertion(server: AuthorizationServer, client: Client, assertion: str) -> None:
    """Verify a client assertion (RFC 7523 section 3): signature, claims, single use."""
    header_segment, payload_segment, signature_segment = _segments(assertion)
    try:
        header = decode_json(header_segment)
        signature = b64decode(signature_segment)
    except (ValueError, RecursionError):
        raise InvalidClient("the client assertion is not a well-formed JWS") from None
    if not isinstance(header, dict) or "crit" in header:
        raise InvalidClient("the client assertion's header is not acceptable")
    name = header.get("alg")
    if name not in ASSERTION_ALGORITHMS:
        raise InvalidClient("the client assertion's alg is not accepted")
    alg = JWSRegistry.algorithms[name]
    kid = header.get("kid")
    signing_input = header_segment + b"." + payload_segment

    def verified(keys: list[Key]) -> bool:
        candidates = [key for key in keys if fits(key, alg) and (kid is None or key.kid in (kid, None))]
        return any(_verifies(alg, signing_input, signature, key) for key in candidates)

    if not verified(await _client_keys(server, client)) and (
        client.jwks_uri is None or not verified(await _client_keys(server, client, fresh=True))
    ):
        raise InvalidClient("the client assertion's signature does not verify")
    try:
        claims = decode_claims(payload_segment)
    except InvalidToken:
        raise InvalidClient("the client assertion's payload is not a JSON object") from None
    await _check_claims(server, client, claims)


def _verifies(alg: Any, signing_input: bytes, signature: bytes, key: Key) -> bool:
    try:
        return bool(alg.verify(signing_input, signature, key))
    except Exception:  # a malformed signature can make a backend raise instead of answer
        return False


async def _check_claims(server: AuthorizationServer, client: Client, claims: dict[str, Any]) -> None:
    if claims.get("iss") != client.client_id or claims.get("sub") != client.client_id:
        raise InvalidClient("the client assertion's iss and sub must be the client id")
    aud = claims.get("aud")
    audiences: Sequence[Any] = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    if not _audiences(server).intersection(a for a in audiences if isinstance(a, str)):
        raise InvalidClient("the client assertion is not addressed to this server")
    now = server.clock()
    exp = _numeric(claims, "exp")
    if exp is None:
        raise InvalidClient("the client assertion has no exp")
    if now >= exp + LEEWAY:
        raise InvalidClient("the client assertion expired")
    if exp > now + MAX_ASSERTION_LIFETIME + LEEWAY:
        raise InvalidClient("the client assertion lives too long")
    for name in ("nbf", "iat"):
        value = _numeric(claims, name)
        if value is not None and value > now + LEEWAY:
            raise InvalidClient(f"the client assertion's {name} lies in the future")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti or len(jti) > MAX_JTI:
        raise InvalidClient("the client assertion has no usable jti")
    key = hash_secret(f"{client.client_id}\x00{jti}")
    if not await server.store.add(JTI_NAMESPACE, key, b"1", max(1.0, exp + LEEWAY - now)):
        raise InvalidClient("the client assertion was already used")
