"""DPoP proofs (RFC 9449): checking one, making one, and the key thumbprint a bound token carries.

A DPoP proof is a JWT signed with a key the client holds, whose public half is in its
header (``jwk``). :func:`check_proof` is RFC 9449 section 4.3 step by step, apart from
what needs state (the ``jti`` seen before, the server's nonce), which the caller checks
with what the proof returns (the client's side, a key pair that signs proofs, is
:class:`bastion._jose.proof_key.ProofKey`). :func:`thumbprint` is the RFC 7638 SHA-256 thumbprint that goes in a bound
token's ``cnf.jkt`` (RFC 9449 section 6.1).

The MCP profile's draft adds a ``content_digest`` claim, the RFC 9530 ``Content-Digest``
value of the request body (``sha-256=:<base64>:``), because every MCP request is a POST
to one URL and ``htm`` and ``htu`` alone do not say which call a proof is for. When a
body is given, a proof carrying the claim must match it; ``require_content_digest``
also refuses a proof without it.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import orjson
from joserfc.jwa import JWSAlgModel
from joserfc.jwk import Key
from joserfc.jws import JWSRegistry

from bastion._core.errors import ConfigurationError, InvalidDPoPProof, InvalidToken
from bastion._jose.compact import decode_claims
from bastion._jose.jwt import decode_signature, header_object, split
from bastion._jose.keys import fits, import_jwk
from bastion._jose.signature import prepare

__all__ = [
    "DEFAULT_ALGORITHMS",
    "DPOP_TYP",
    "MAX_PROOF_LENGTH",
    "THUMBPRINT_MEMBERS",
    "Proof",
    "access_token_hash",
    "check_proof",
    "content_digest",
    "dpop_algorithms",
    "normalize_htu",
    "public_reason",
    "thumbprint",
]

DPOP_TYP = "dpop+jwt"
#: The asymmetric algorithms a proof may be signed with unless configured otherwise; never
#: ``none`` or a MAC (RFC 9449 section 4.2: the key must be asymmetric).
DEFAULT_ALGORITHMS = ("ES256", "ES384", "ES512", "Ed25519", "EdDSA", "PS256", "PS384", "PS512", "RS256")
#: A proof longer than this is refused before it is decoded (an RSA 4096 key makes one of ~1.3 KB).
MAX_PROOF_LENGTH = 4096
#: The longest ``jti`` and ``nonce`` accepted (a replay cache keeps every ``jti``).
MAX_JTI_LENGTH = 256
#: The JWK members of a private key (RFC 7518 sections 6.2.2, 6.3.2, 6.4; RFC 8037): a proof's
#: ``jwk`` carrying any of them is refused, not stripped (RFC 9449 section 4.3 point 7).
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
#: The members of each key type a thumbprint is made of (RFC 7638 section 3.2).
THUMBPRINT_MEMBERS = {"EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n"), "OKP": ("crv", "kty", "x")}
_DEFAULT_PORTS = {"http": 80, "https": 443}
#: Imported proof keys by their public members: a client signs many proofs with one key.
_keys: dict[tuple[Any, ...], tuple[Key, str]] = {}
_MAX_KEYS = 4096


@dataclass(frozen=True, slots=True)
class Proof:
    """What a checked proof tells the caller, which checks the rest with state.

    Attributes:
        jkt: The RFC 7638 thumbprint of the proof's key.
        jti: The proof's unique identifier, for replay detection (RFC 9449 section 11.1).
        iat: When the client made it.
        nonce: The server nonce it carries, or ``None``.
    """

    jkt: str
    jti: str
    iat: float
    nonce: str | None


#: The public text of a refused proof whose check's message would quote the proof.
_GENERIC = "the DPoP proof is invalid"
#: A value quoted into a message (``{value!r}``), unlike the apostrophe of "the proof's".
_QUOTED = re.compile(r"(^|\s)['\"]|[\"{}<>]")


def public_reason(message: str) -> str:
    """The part of an :class:`InvalidDPoPProof` message that names the check, never a value from the proof.

    What a client is told and an audit event records: ``check_proof``'s messages name the
    check before any ``": "``, and a few quote what the proof held, which is dropped.
    """
    head = message.split(": ", 1)[0]
    return _GENERIC if _QUOTED.search(head) else head


def dpop_algorithms(names: Sequence[str] | None = None) -> dict[str, JWSAlgModel]:
    """The allow-list of proof algorithms by name: asymmetric JWS algorithms only.

    Raises:
        ConfigurationError: a name is unknown, ``none`` or a MAC.
    """
    chosen = DEFAULT_ALGORITHMS if names is None else tuple(names)
    if not chosen or isinstance(names, str):
        raise ConfigurationError("DPoP algorithms must be a non-empty list of asymmetric JWS algorithm names")
    algorithms: dict[str, JWSAlgModel] = {}
    for name in chosen:
        alg = JWSRegistry.algorithms.get(name) if isinstance(name, str) else None
        if alg is None or name == "none" or name.startswith("HS"):
            raise ConfigurationError(f"{name!r} is not an asymmetric JWS algorithm (RFC 9449 section 4.2)")
        algorithms[name] = alg
    return algorithms


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def thumbprint(jwk: Mapping[str, Any]) -> str:
    """The RFC 7638 SHA-256 thumbprint of a public JWK, base64url: what ``cnf.jkt`` holds.

    Raises:
        ValueError: the key type is not RSA, EC or OKP, or a required member is missing.
    """
    members = THUMBPRINT_MEMBERS.get(jwk.get("kty"))  # type: ignore[arg-type]
    if members is None:
        raise ValueError("unsupported kty")
    required = {name: jwk[name] for name in members if isinstance(jwk.get(name), str)}
    if len(required) != len(members):
        raise ValueError("a key member is missing")
    # RFC 7638 section 3.3: members in lexicographic order, no whitespace; orjson keeps insertion order.
    return _b64url(hashlib.sha256(orjson.dumps(required)).digest())


def access_token_hash(token: str) -> str:
    """The ``ath`` of a proof sent with ``token``: base64url SHA-256 of its ASCII (RFC 9449 section 4.2)."""
    return _b64url(hashlib.sha256(token.encode("ascii", "replace")).digest())


def content_digest(body: bytes) -> str:
    """The RFC 9530 ``Content-Digest`` value of ``body`` with SHA-256: ``sha-256=:<base64>:``."""
    return "sha-256=:" + base64.b64encode(hashlib.sha256(body).digest()).decode("ascii") + ":"


@functools.lru_cache(maxsize=512)  # an endpoint's URL, and the htu of its proofs, repeat for every request
def normalize_htu(url: str) -> str:
    """``url`` as RFC 9449 section 4.3 compares ``htu``: without query and fragment, normalized.

    The syntax- and scheme-based normalizations of RFC 3986 sections 6.2.2 and 6.2.3: scheme
    and host lower-cased, the scheme's default port dropped, an empty path made ``/``, and
    percent-encoded unreserved characters decoded (other escapes upper-cased).

    Raises:
        ValueError: not an absolute http or https URL.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise ValueError("not an absolute http(s) URL")
    host = parts.hostname  # lower-cased by urlsplit
    if ":" in host:
        host = f"[{host}]"
    port = parts.port  # raises ValueError for a port that is not a number in range
    netloc = host if port is None or port == _DEFAULT_PORTS[scheme] else f"{host}:{port}"
    return urlunsplit((scheme, netloc, _normalize_path(parts.path) or "/", "", ""))


_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def _normalize_path(path: str) -> str:
    if "%" not in path:
        return path
    pieces = path.split("%")
    out = [pieces[0]]
    for piece in pieces[1:]:
        escape, rest = piece[:2], piece[2:]
        if len(escape) == 2 and all(c in "0123456789abcdefABCDEF" for c in escape):
            char = unquote("%" + escape)
            out.append((char if char in _UNRESERVED else "%" + escape.upper()) + rest)
        else:
            out.append("%" + piece)
    return "".join(out)


def _proof_key(jwk: object, alg: JWSAlgModel) -> tuple[Key, str]:
    """The public key in a proof's header and its thumbprint, imported once per key."""
    if type(jwk) is not dict:
        raise InvalidDPoPProof("the proof's header has no jwk object")
    if not _PRIVATE_MEMBERS.isdisjoint(jwk):
        raise InvalidDPoPProof("the proof's jwk holds a private or symmetric key")
    kty = jwk.get("kty")
    members = THUMBPRINT_MEMBERS.get(kty) if isinstance(kty, str) else None
    if members is None:
        raise InvalidDPoPProof(f"the proof's jwk has kty {kty!r:.20}, not RSA, EC or OKP")
    cache_key = (alg.name, *(jwk.get(name) for name in members))
    known = _keys.get(cache_key)
    if known is not None:
        return known
    try:
        key = import_jwk(jwk)
        jkt = thumbprint(jwk)
    except ValueError as exc:
        raise InvalidDPoPProof(f"the proof's jwk is not a usable public key: {exc}") from None
    if not fits(key, alg):
        raise InvalidDPoPProof(f"the proof's jwk cannot be used with {alg.name}")
    if len(_keys) >= _MAX_KEYS:
        _keys.clear()
    _keys[cache_key] = (key, jkt)
    return key, jkt


def check_proof(
    value: str,
    *,
    method: str,
    url: str,
    algorithms: Mapping[str, JWSAlgModel],
    now: float | None = None,
    max_age: float = 300.0,
    leeway: float = 60.0,
    access_token: str | None = None,
    body: bytes | None = None,
    require_content_digest: bool = False,
) -> Proof:
    """Check one DPoP proof against the request it came with (RFC 9449 section 4.3).

    Args:
        value: The ``DPoP`` header's value (the caller has checked there is exactly one).
        method: The request's HTTP method, compared exactly with ``htm``.
        url: The endpoint's canonical URL, compared with ``htu`` as :func:`normalize_htu` says.
        algorithms: The allowed algorithms (:func:`dpop_algorithms`).
        now: The clock reading, ``time.time()`` by default.
        max_age: How old ``iat`` may be, in seconds.
        leeway: How far in the future ``iat`` may be (clock skew), in seconds.
        access_token: The token the proof comes with, which ``ath`` must hash (section 7.1).
        body: The raw request body, which ``content_digest``, when present, must digest.
        require_content_digest: Refuse a proof without ``content_digest`` (with ``body``).

    Raises:
        InvalidDPoPProof: the proof fails a check; the message says which (never its values).
    """
    if len(value) > MAX_PROOF_LENGTH:
        raise InvalidDPoPProof(f"the proof is longer than {MAX_PROOF_LENGTH} characters")
    try:
        raw = value.encode("ascii")
        header_segment, payload_segment, signature_segment = split(raw)
        alg, header = header_object(header_segment, algorithms, DPOP_TYP)
        signature = decode_signature(signature_segment)
        claims = decode_claims(payload_segment)
    except (InvalidToken, UnicodeEncodeError) as exc:
        raise InvalidDPoPProof(f"the proof is not a valid JWT: {exc}") from None
    key, jkt = _proof_key(header.get("jwk"), alg)
    try:
        verified = prepare(alg, key)(raw[: len(header_segment) + 1 + len(payload_segment)], signature)
    except Exception:  # a malformed signature can make a backend raise instead of answer
        verified = False
    if not verified:
        raise InvalidDPoPProof("the proof's signature does not verify with its jwk")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not 0 < len(jti) <= MAX_JTI_LENGTH:
        raise InvalidDPoPProof(f"the proof has no jti of 1 to {MAX_JTI_LENGTH} characters")
    if claims.get("htm") != method:
        raise InvalidDPoPProof("the proof's htm is not the request's method")
    htu = claims.get("htu")
    try:
        matches = isinstance(htu, str) and normalize_htu(htu) == normalize_htu(url)
    except ValueError:
        matches = False
    if not matches:
        raise InvalidDPoPProof("the proof's htu is not this endpoint's URL")
    iat = claims.get("iat")
    if type(iat) is not int and type(iat) is not float:  # a bool is not a number; orjson refuses NaN
        raise InvalidDPoPProof("the proof has no numeric iat")
    clock = time.time() if now is None else now
    if iat > clock + leeway or iat < clock - max_age:
        raise InvalidDPoPProof("the proof's iat is outside the accepted window")
    nonce = claims.get("nonce")
    if nonce is not None and (not isinstance(nonce, str) or not 0 < len(nonce) <= MAX_JTI_LENGTH):
        raise InvalidDPoPProof("the proof's nonce is not a string")
    if access_token is not None:
        ath = claims.get("ath")
        if not isinstance(ath, str) or not hmac.compare_digest(ath, access_token_hash(access_token)):
            raise InvalidDPoPProof("the proof's ath does not hash the access token")
    if body is not None:
        digest = claims.get("content_digest")
        if digest is None:
            if require_content_digest:
                raise InvalidDPoPProof("the proof has no content_digest of the request body")
        elif not isinstance(digest, str) or not hmac.compare_digest(digest, content_digest(body)):
            raise InvalidDPoPProof("the proof's content_digest does not match the request body")
    return Proof(jkt, jti, float(iat), nonce)
