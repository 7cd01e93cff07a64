"""Encryption at rest for the secrets the server must be able to read back (upstream tokens).

Hashing is enough for what the server only compares (codes, refresh tokens); the
tokens an upstream identity provider issued must be used again, so they are kept
sealed with AES-256-GCM instead (NIST SP 800-38D), with a random 96-bit nonce per
blob. Callers bind each blob to its record through ``context`` (associated
data, e.g. ``b"upstream:" + record_id``): a blob copied into another record
does not open.

A sealed blob is, byte by byte::

    version (1) | key id (8) | nonce (12) | ciphertext | tag (16)

The key id is the first 8 bytes of the SHA-256 of the key, so :meth:`TokenVault.open`
picks the key at once instead of trying each. Version and key id are
authenticated too (they are part of the associated data).

Keys come from the settings (``BASTION_ENCRYPTION_KEYS``), newest first: the first
seals, every one opens. To rotate, put a new key first, keep the old ones until
no record sealed with them is left (:meth:`TokenVault.needs_rotation` tells a
caller to re-seal what it reads), then remove them. Without keys, one is
generated on first use and kept in the store, which suits a single host.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bastion._core.errors import BastionError, ConfigurationError
from bastion.storage import Store

__all__ = ["KEY_NAMESPACE", "TokenVault", "VaultError", "parse_keys"]

logger = logging.getLogger("bastion")

#: The store namespace of the generated key (used only when no key is configured).
KEY_NAMESPACE = "vault-key"
_KEY_RECORD = "key"

_VERSION = 1
_KEY_SIZE = 32
_KEY_ID_SIZE = 8
_NONCE_SIZE = 12
_TAG_SIZE = 16
_HEADER_SIZE = 1 + _KEY_ID_SIZE
_MIN_SIZE = _HEADER_SIZE + _NONCE_SIZE + _TAG_SIZE
_TO_STANDARD_ALPHABET = str.maketrans("-_", "+/")


class VaultError(BastionError):
    """A sealed blob cannot be opened: unknown key, malformed, truncated, or tampered with.

    The message never contains the blob, its plaintext or a key.
    """

    description = "encrypted data cannot be opened"


def _key_id(key: bytes) -> bytes:
    return hashlib.sha256(key).digest()[:_KEY_ID_SIZE]


def _text(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _decode_key_text(text: str, where: str) -> bytes:
    """Base64url without padding (43 characters), or standard base64 (44 with its padding)."""
    text = text.strip()
    if not text:
        raise ConfigurationError(f"{where} is empty")
    unpadded = text.translate(_TO_STANDARD_ALPHABET).rstrip("=")
    try:
        raw = base64.b64decode(unpadded + "=" * (-len(unpadded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigurationError(
            f"{where} is not base64 text (expected {_KEY_SIZE} bytes as 43 characters of base64url)"
        ) from None
    if len(raw) != _KEY_SIZE:
        raise ConfigurationError(f"{where} decodes to {len(raw)} bytes; an AES-256 key is {_KEY_SIZE} bytes")
    return raw


def _decode_key(key: str | bytes, where: str) -> bytes:
    if isinstance(key, str):
        return _decode_key_text(key, where)
    if isinstance(key, bytes | bytearray):
        if len(key) != _KEY_SIZE:
            raise ConfigurationError(f"{where} is {len(key)} bytes; an AES-256 key is {_KEY_SIZE} bytes")
        return bytes(key)
    raise ConfigurationError(f"{where} must be bytes or base64 text, not {type(key).__name__}")


def parse_keys(keys: str | bytes | Sequence[str | bytes]) -> list[bytes]:
    """The raw keys of a configuration, first (sealing) key first.

    A string may list several keys separated by commas (the form of
    ``BASTION_ENCRYPTION_KEYS``). Raises :class:`~bastion.ConfigurationError`
    naming the faulty entry by position, never by value.
    """
    entries: list[str | bytes]
    if isinstance(keys, str):
        entries = [part for part in (p.strip() for p in keys.split(",")) if part]
    elif isinstance(keys, bytes | bytearray):
        entries = [bytes(keys)]
    else:
        entries = list(keys)
    if not entries:
        raise ConfigurationError("no encryption key given (leave the setting unset to generate one)")
    raw = [_decode_key(key, f"encryption key {n} of {len(entries)}") for n, key in enumerate(entries, 1)]
    if len({_key_id(key) for key in raw}) != len(raw):
        raise ConfigurationError("the same encryption key is listed twice")
    return raw


class TokenVault:
    """Seals and opens secrets with AES-256-GCM under keys that can be rotated.

    Args:
        store: Where a generated key is kept when ``keys`` is ``None``.
        keys: One key or several, newest first: 32 raw bytes, or text in base64url
            without padding (43 characters, as :meth:`generate_key` makes) or
            standard base64. The first seals; all open. In production set them
            through ``BASTION_ENCRYPTION_KEYS`` (comma-separated). ``None``: a key
            is generated on first use and kept in ``store``, shared by every
            worker using that store; anyone who can read the store can then
            read the sealed secrets, so this suits a single host only.
        clock: Seconds since the epoch (the creation time of a generated key).
    """

    def __init__(
        self,
        store: Store,
        *,
        keys: str | bytes | Sequence[str | bytes] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self._clock = clock
        self._keys: dict[bytes, AESGCM] = {}
        self._primary: bytes | None = None
        if keys is not None:
            self._use(parse_keys(keys))

    @staticmethod
    def generate_key() -> str:
        """A new random AES-256 key as base64url text without padding (43 characters)."""
        return _text(secrets.token_bytes(_KEY_SIZE))

    @property
    def key_ids(self) -> list[str]:
        """The ids of the keys in use (base64url), the sealing key first; empty until a generated key is loaded."""
        return [_text(key_id) for key_id in self._keys]

    def _use(self, raw_keys: list[bytes]) -> None:
        self._keys = {_key_id(key): AESGCM(key) for key in raw_keys}
        self._primary = _key_id(raw_keys[0])

    async def _sealing_key(self) -> tuple[bytes, AESGCM]:
        if self._primary is None:
            await self._load_generated()
        assert self._primary is not None
        return self._primary, self._keys[self._primary]

    async def _load_generated(self) -> None:
        """Create the stored key if no worker has yet, then read whichever key won."""
        record = json.dumps({"key": self.generate_key(), "created": self._clock()}).encode()
        await self.store.add(KEY_NAMESPACE, _KEY_RECORD, record)
        stored = await self.store.get(KEY_NAMESPACE, _KEY_RECORD)
        try:
            text = json.loads(stored or b"")["key"]
            if not isinstance(text, str):
                raise TypeError
            key = _decode_key_text(text, "the stored encryption key")
        except (ValueError, KeyError, TypeError):
            raise VaultError(
                f"the stored encryption key ({KEY_NAMESPACE!r}) is missing or unreadable",
                description="the encryption key is unavailable",
            ) from None
        if self._primary is not None:  # another coroutine of this vault loaded it meanwhile
            return
        self._use([key])
        logger.info(
            "Upstream tokens are encrypted with a key generated and kept in the store (key id %s); "
            "in production set BASTION_ENCRYPTION_KEYS (see TokenVault.generate_key)",
            self.key_ids[0],
        )

    async def seal(self, plaintext: bytes, *, context: bytes) -> bytes:
        """Encrypt ``plaintext`` bound to ``context`` with the first key; a new random nonce each time."""
        key_id, aead = await self._sealing_key()
        header = bytes([_VERSION]) + key_id
        nonce = secrets.token_bytes(_NONCE_SIZE)
        return header + nonce + aead.encrypt(nonce, bytes(plaintext), header + bytes(context))

    async def open(self, sealed: bytes, *, context: bytes) -> bytes:
        """The plaintext of a blob made by :meth:`seal` with the same ``context``.

        Raises:
            VaultError: The key that sealed it is not configured, the blob is
                malformed or truncated, or it fails authentication (tampered with,
                or sealed for another context).
        """
        if not isinstance(sealed, bytes | bytearray | memoryview):
            raise VaultError(f"sealed data must be bytes, not {type(sealed).__name__}")
        blob = bytes(sealed)
        if self._primary is None:
            await self._load_generated()
        if len(blob) < _MIN_SIZE:
            raise VaultError(f"sealed data is truncated ({len(blob)} bytes, at least {_MIN_SIZE} expected)")
        if blob[0] != _VERSION:
            raise VaultError(f"unknown sealed data version {blob[0]}")
        header, key_id = blob[:_HEADER_SIZE], blob[1:_HEADER_SIZE]
        aead = self._keys.get(key_id)
        if aead is None:
            raise VaultError(f"sealed with an unknown key (key id {_text(key_id)}); was it removed from the settings?")
        nonce, ciphertext = blob[_HEADER_SIZE : _HEADER_SIZE + _NONCE_SIZE], blob[_HEADER_SIZE + _NONCE_SIZE :]
        try:
            return aead.decrypt(nonce, ciphertext, header + bytes(context))
        except InvalidTag:
            raise VaultError("sealed data failed authentication (tampered with, or another context)") from None

    async def seal_json(self, obj: object, *, context: bytes) -> bytes:
        """:meth:`seal` the compact JSON of ``obj``."""
        return await self.seal(json.dumps(obj, separators=(",", ":")).encode(), context=context)

    async def open_json(self, sealed: bytes, *, context: bytes) -> Any:
        """:meth:`open` a blob made by :meth:`seal_json`; its JSON value."""
        plaintext = await self.open(sealed, context=context)
        try:
            return json.loads(plaintext)
        except ValueError:
            raise VaultError("sealed data is not JSON") from None

    def needs_rotation(self, sealed: bytes) -> bool:
        """Whether ``sealed`` was sealed with a configured key other than the first: re-seal it.

        ``False`` for a blob sealed with the first key, and for one :meth:`open`
        would refuse (unknown key, malformed).
        """
        if not isinstance(sealed, bytes | bytearray | memoryview) or len(sealed) < _MIN_SIZE:
            return False
        blob = bytes(sealed[:_HEADER_SIZE])
        if blob[0] != _VERSION:
            return False
        key_id = blob[1:]
        return key_id in self._keys and key_id != self._primary
