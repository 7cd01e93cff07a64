"""Decoding the JWS compact serialization (RFC 7515 section 7.1): strict base64url, JSON segments.

A token is three base64url segments joined by dots. :func:`b64decode` accepts
only unpadded base64url in its one canonical form (RFC 7515 section 2), so that
no two strings carry the same token; :func:`decode_json` and :func:`decode_claims`
read the header and payload segments. These run for every first-seen token and
are tuned for it (see ``bench/bench_verify.py``).
"""

from __future__ import annotations

import binascii
from typing import Any

import orjson

from bastion._core.errors import InvalidToken

__all__ = ["b64decode", "decode_claims", "decode_json"]

#: base64url (RFC 4648 section 5) to base64; "+" and "/" become "!", which the decoder
#: skips and the length check in b64decode then refuses: one alphabet only.
_B64URL = bytes.maketrans(b"-_+/", b"+/!!")
_PADDING = (b"", b"===", b"==", b"=")
#: The last character of a segment whose unused low bits are zero (RFC 4648 section 3.5), so
#: that no two token strings carry the same signature.
_CANONICAL_ENDINGS = (b"", b"", b"AQgw", b"AEIMQUYcgkosw048")


def b64decode(segment: bytes) -> bytes:
    """Strict unpadded base64url (RFC 7515 section 2) in its one canonical form; raises ValueError."""
    remainder = len(segment) % 4
    # A "=" anywhere is refused by the length check below: it carries no bits.
    if remainder == 1 or (remainder and segment[-1] not in _CANONICAL_ENDINGS[remainder]):
        raise ValueError("padded, truncated or non-canonical base64url")
    data = binascii.a2b_base64(segment.translate(_B64URL) + _PADDING[remainder])
    # The lenient decoder (twice as fast as strict_mode) skips characters outside the
    # alphabet; any skipped character makes the result shorter than the length implies.
    if len(data) != len(segment) * 3 // 4:
        raise ValueError("not base64url")
    return data


def decode_json(segment: bytes) -> Any:
    """The JSON value of a base64url segment; raises ValueError.

    orjson, not the standard library: it reads the bytes as they are (refusing invalid
    UTF-8 and lone surrogates), refuses NaN and infinities, is several times faster, and
    keeps one string object per object key it has seen, so the claims of many cached
    tokens share their names.
    """
    return orjson.loads(b64decode(segment))


def decode_claims(segment: bytes) -> dict[str, Any]:
    """The claims set of a payload segment: a JSON object (RFC 7519 section 7.2)."""
    try:
        claims = decode_json(segment)
    except ValueError:
        raise InvalidToken("the payload is not base64url-encoded JSON") from None
    if type(claims) is not dict:
        raise InvalidToken("the payload is not a JSON object")
    return claims
