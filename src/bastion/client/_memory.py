"""What a DPoP client remembers between requests: the servers' nonces and how each token was issued.

Both are bounded (least recently used first out), so a client that runs for months keeps
neither every nonce it was ever sent nor a hash of every token it refreshed. A token is
remembered by the SHA-256 of its value, never the value.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable
from typing import TypeVar

__all__ = ["Memory", "Origin", "asks_for_nonce", "valid_nonce"]

#: ``(scheme, host, port)`` and whether the requests are token requests: an authorization
#: server's nonces (RFC 9449 section 8) and a resource's (section 9) are kept apart even on one origin.
Origin = tuple[str, str, int | None, bool]

_K = TypeVar("_K")
_V = TypeVar("_V")

#: How many nonces and token hashes are kept.
MAX_ENTRIES = 256
#: RFC 9449 section 8.1: ``nonce = 1*NQCHAR``; and no longer than a proof's nonce may be (``check_proof``).
_NONCE = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]{1,256}")
#: RFC 9110 section 5.6.2 ``token``: an auth scheme or a parameter's name.
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
#: An auth-param (RFC 9110 section 11.2): a name, ``=``, a token or a quoted string.
_PARAM = re.compile(rf'({_TOKEN})[ \t]*=[ \t]*("(?:[^"\\]|\\.)*"|[^\s,"]*)')
#: An auth scheme, with the padding of a token68 that may follow it.
_SCHEME = re.compile(rf"({_TOKEN})=*")
#: Longer ``WWW-Authenticate`` values are not read: a challenge is a few hundred characters.
_MAX_CHALLENGE = 8192


def valid_nonce(value: str | None) -> str | None:
    """``value`` if it is a nonce a proof may carry, else ``None``."""
    return value if value is not None and _NONCE.fullmatch(value) else None


def _challenges(value: str) -> list[tuple[str, dict[str, str]]]:
    """The challenges of one ``WWW-Authenticate`` value: ``(scheme lower-cased, parameters)``."""
    found: list[tuple[str, dict[str, str]]] = []
    position = 0
    while position < len(value):
        if value[position] in " \t,":
            position += 1
            continue
        param = _PARAM.match(value, position) if found else None
        if param is not None:
            raw = param[2]
            if raw.startswith('"'):
                raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
            found[-1][1].setdefault(param[1].lower(), raw)
            position = param.end()
            continue
        scheme = _SCHEME.match(value, position)
        if scheme is None:
            position += 1  # not HTTP syntax; skipped
            continue
        found.append((scheme[1].lower(), {}))
        position = scheme.end()
    return found


def asks_for_nonce(values: Iterable[str]) -> bool:
    """Whether ``WWW-Authenticate`` values hold ``DPoP error="use_dpop_nonce"`` (RFC 9449 section 9)."""
    return any(
        scheme == "dpop" and params.get("error") == "use_dpop_nonce"
        for value in values
        if len(value) <= _MAX_CHALLENGE
        for scheme, params in _challenges(value)
    )


def _token_key(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "replace")).digest()


class Memory:
    """The latest nonce of each origin and the kind of each token issued, both bounded and thread-safe."""

    def __init__(self, size: int = MAX_ENTRIES) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._nonces: OrderedDict[Origin, str] = OrderedDict()
        self._tokens: OrderedDict[bytes, bool] = OrderedDict()

    def nonce(self, origin: Origin) -> str | None:
        """The latest nonce ``origin`` sent, or ``None``."""
        with self._lock:
            return self._nonces.get(origin)

    def set_nonce(self, origin: Origin, nonce: str) -> None:
        """Remember ``nonce`` as the one to put in the next proofs to ``origin``."""
        with self._lock:
            self._put(self._nonces, origin, nonce)

    def is_dpop(self, token: str) -> bool | None:
        """``True`` for a token issued as a DPoP token, ``False`` for one issued as a bearer token, else ``None``."""
        with self._lock:
            key = _token_key(token)
            kind = self._tokens.get(key)
            if kind is not None:
                self._tokens.move_to_end(key)
            return kind

    def issued(self, token: str, *, dpop: bool) -> None:
        """Remember how ``token`` was issued."""
        with self._lock:
            self._put(self._tokens, _token_key(token), dpop)

    def _put(self, entries: OrderedDict[_K, _V], key: _K, value: _V) -> None:
        entries[key] = value
        entries.move_to_end(key)
        while len(entries) > self._size:
            entries.popitem(last=False)
