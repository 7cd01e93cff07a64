"""The checks of a compact JWS JWT (RFC 7515, RFC 7519) that need no configuration beyond their arguments.

Decode, then validate: the compact serialization is split, its header parsed
against an allow-list of algorithms, its signature checked against candidate
keys, and its registered claims (``exp``, ``nbf``, ``iat``, ``iss``, ``aud``)
checked with the clock reading and leeway given. Straight-line, with inline fast
paths for the usual types, on purpose: this runs for every first-seen token
(see ``bench/bench_verify.py``). :class:`~bastion.JWTVerifier` puts them together.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any, NamedTuple

from joserfc.jwa import JWSAlgModel

from bastion._core.errors import (
    InvalidAudience,
    InvalidClaims,
    InvalidIssuer,
    InvalidSignature,
    InvalidToken,
    TokenExpired,
    TokenNotYetValid,
    UnsupportedAlgorithm,
)
from bastion._jose.compact import b64decode, decode_json

__all__ = [
    "ABSENT",
    "Header",
    "as_list",
    "check_issuer",
    "check_times",
    "claim_at",
    "claim_path",
    "decode_signature",
    "header_object",
    "match_audience",
    "normalize_typ",
    "parse_header",
    "split",
]

#: Numeric dates beyond 2**53 are not exact as floats, and no real token has them.
_MAX_NUMERIC_DATE = 2.0**53
#: The default of ``claims.get`` telling an absent claim from a JSON ``null``.
ABSENT: Any = object()


class Header(NamedTuple):
    """What a JWS header decides: the algorithm (from the allow-list) and the key id."""

    alg: JWSAlgModel
    kid: str | None


def split(raw: bytes) -> tuple[bytes, bytes, bytes]:
    """The header, payload and signature segments of a compact JWS, still base64url.

    Raises:
        InvalidToken: not three segments.
    """
    try:
        header_segment, payload_segment, signature_segment = raw.split(b".")
    except ValueError:
        # Five segments would be a JWE (RFC 7516); encrypted access tokens are not supported.
        raise InvalidToken(f"a JWS has 3 segments (RFC 7515 section 7.1), not {raw.count(b'.') + 1}") from None
    return header_segment, payload_segment, signature_segment


def decode_signature(segment: bytes) -> bytes:
    """The signature segment decoded.

    Raises:
        InvalidSignature: it is not base64url, or empty.
    """
    try:
        signature = b64decode(segment)
    except ValueError:
        raise InvalidSignature("the signature is not base64url") from None
    if not signature:
        raise InvalidSignature("the token has no signature")
    return signature


def normalize_typ(value: str) -> str:
    """A ``typ`` value lower-cased, without the ``application/`` RFC 7515 section 4.1.9 lets one omit."""
    value = value.lower()
    return value.removeprefix("application/") if value.count("/") == 1 else value


def parse_header(segment: bytes, algorithms: Mapping[str, JWSAlgModel], typ: str | None) -> Header:
    """The header ``segment`` decoded and checked: ``alg`` allowed, no ``crit``, the ``typ`` wanted.

    Args:
        segment: The base64url header segment.
        algorithms: The allowed algorithms by name.
        typ: The required ``typ`` (normalized by :func:`normalize_typ`), or ``None``.

    Raises:
        InvalidToken: or :class:`~bastion.UnsupportedAlgorithm`, naming the reason.
    """
    alg, header = header_object(segment, algorithms, typ)
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise InvalidToken("the kid header is not a string")
    # jku, x5u, x5c and jwk are ignored on purpose: keys come from configuration only (RFC 8725 section 3.10).
    return Header(alg, kid)


def header_object(
    segment: bytes, algorithms: Mapping[str, JWSAlgModel], typ: str | None
) -> tuple[JWSAlgModel, dict[str, Any]]:
    """The algorithm and the whole header of ``segment``, checked as :func:`parse_header` says."""
    try:
        header = decode_json(segment)
    except (ValueError, RecursionError):
        raise InvalidToken("the header is not base64url-encoded JSON") from None
    if type(header) is not dict:
        raise InvalidToken("the header is not a JSON object")
    name = header.get("alg")
    if not isinstance(name, str):
        raise InvalidToken("the header has no alg")
    alg = algorithms.get(name)
    if alg is None:
        raise UnsupportedAlgorithm(f"alg {name!r:.40} is not in the allow-list {list(algorithms)}")
    if "crit" in header:
        # RFC 7515 section 4.1.11: a recipient that does not understand a listed extension must refuse.
        raise InvalidToken("the header has crit: no extension is understood")
    if header.get("b64", True) is not True:
        raise InvalidToken("unencoded payloads (RFC 7797) are not accepted")
    if typ is not None:
        found = header.get("typ")
        if not isinstance(found, str) or normalize_typ(found) != typ:
            raise InvalidToken(f"the typ header is {found!r:.40}, not {typ!r}")
    return alg, header


def _numeric(value: object, name: str) -> float:
    """A NumericDate claim (RFC 7519 section 2): a finite JSON number, not a bool or string."""
    if value is ABSENT:
        raise InvalidClaims(f"the token has no {name} claim (RFC 9068 section 2.2)")
    if (type(value) is int or type(value) is float) and -_MAX_NUMERIC_DATE <= value <= _MAX_NUMERIC_DATE:
        return value
    raise InvalidClaims(f"the {name} claim is not a NumericDate")


def check_times(claims: Mapping[str, Any], now: float, leeway: float) -> int | float:
    """The ``exp`` of ``claims``, once ``exp``, ``nbf`` and ``iat`` hold at ``now`` give or take ``leeway``.

    Raises:
        InvalidClaims: ``exp`` is missing, or a date is not a NumericDate.
        TokenExpired: ``exp`` has passed.
        TokenNotYetValid: ``nbf`` or ``iat`` lies in the future.
    """
    get = claims.get
    exp = get("exp", ABSENT)
    if type(exp) is not int or not 0 <= exp <= _MAX_NUMERIC_DATE:
        exp = _numeric(exp, "exp")
    if now >= exp + leeway:
        raise TokenExpired(f"the token expired at {exp}, now is {now:.0f}")
    limit = now + leeway
    nbf = get("nbf", ABSENT)
    if nbf is not ABSENT and not (type(nbf) is int and 0 <= nbf <= limit) and _numeric(nbf, "nbf") > limit:
        raise TokenNotYetValid("the token's nbf lies in the future")
    iat = get("iat", ABSENT)
    if iat is not ABSENT and not (type(iat) is int and 0 <= iat <= limit) and _numeric(iat, "iat") > limit:
        raise TokenNotYetValid("the token's iat lies in the future")
    return exp  # type: ignore[no-any-return]


def check_issuer(issuer: object, trusted: Collection[str]) -> str | None:
    """The ``iss`` claim, a string and among ``trusted`` (any issuer when that is empty).

    Raises:
        InvalidClaims: it is not a string.
        InvalidIssuer: it is not trusted.
    """
    if issuer is not None and type(issuer) is not str:
        raise InvalidClaims("the iss claim is not a string")
    if trusted and issuer not in trusted:
        raise InvalidIssuer(f"the issuer {issuer!r:.100} is not trusted")
    return issuer


def match_audience(aud: object, audiences: Sequence[str]) -> str:
    """The one of ``audiences`` the token's ``aud`` names (RFC 7519 section 4.1.3).

    Raises:
        InvalidClaims: ``aud`` is not a string or a list of strings.
        InvalidAudience: it names none of them.
    """
    if isinstance(aud, str):
        if aud in audiences:
            return aud
    elif isinstance(aud, list):
        if not all(isinstance(item, str) for item in aud):
            raise InvalidClaims("the aud claim is not a string or a list of strings")
        for audience in audiences:
            if audience in aud:
                return audience
    elif aud is not None:
        raise InvalidClaims("the aud claim is not a string or a list of strings")
    raise InvalidAudience(f"the token is for {aud!r:.100}, not for {list(audiences)}")


def as_list(value: object) -> list[str]:
    """A space-separated string (RFC 6749 section 3.3) or a list of strings, as a list.

    Raises:
        ValueError: neither.
    """
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return value
    raise ValueError("must be a string or a list of strings")


def claim_path(name: str) -> tuple[str, ...] | None:
    """The parts of a dotted claim name (``realm_access.roles``); ``None`` for a plain one."""
    return tuple(name.split(".")) if "." in name else None


def claim_at(claims: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    """A claim by dotted path into nested objects (``realm_access.roles``), or ``None``."""
    node: Any = claims
    for part in path:
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node
