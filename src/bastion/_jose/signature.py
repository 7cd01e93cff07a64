"""Signature checks prepared once per key and algorithm.

joserfc's ``JWSAlgModel.verify`` looks the key's operation up, builds a hash object and
(for ECDSA) re-derives the key size for every token. For the public-key algorithms a
:func:`prepare`d check does that work once, when a key is first used with an algorithm,
and then calls ``cryptography`` directly: a first-seen token then costs little more than
the bare signature check (see ``bench/bench_verify.py``). The key's own restrictions
(``use``, ``key_ops``, ``alg``, RFC 7517 section 4) are checked at preparation; a key
they forbid verifies nothing. HMAC and anything else go through joserfc as before.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Sequence

from cryptography.exceptions import InvalidSignature as BadSignature
from cryptography.hazmat.primitives.asymmetric.ec import ECDSA, EllipticCurvePublicKey
from cryptography.hazmat.primitives.asymmetric.ed448 import Ed448PublicKey
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.padding import AsymmetricPadding, PKCS1v15
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.hashes import HashAlgorithm
from joserfc.jwa import JWSAlgModel
from joserfc.jwk import Key

from bastion._core.errors import InvalidSignature

__all__ = ["prepare", "verify_signature"]

Check = Callable[[bytes, bytes], bool]
"""``check(signing_input, signature)``: whether the signature verifies."""

#: Prepared checks by (algorithm, key identity). The entry holds the key, so its id is
#: not reused while the entry lives; key sets are small and rotate slowly.
_prepared: dict[tuple[str, int], tuple[Key, Check]] = {}
_MAX_PREPARED = 512


def _never(signing_input: bytes, signature: bytes) -> bool:
    return False


def _rsa(public: RSAPublicKey, alg: JWSAlgModel) -> Check:
    padding = alg.padding  # type: ignore[attr-defined]
    digest = alg.hash_alg()  # type: ignore[attr-defined]
    if not isinstance(padding, PKCS1v15):
        return _rsa_verify(public, padding, digest)
    # RSASSA-PKCS1-v1_5 (RFC 8017 section 8.2.2): OpenSSL checks the signature's length, its
    # padding and its DigestInfo and returns the digest it holds, which must be the message's.
    # About 2 us faster than verify(), which hashes through cryptography's Hash objects.
    length = public.key_size // 8
    recover = public.recover_data_from_signature
    hash_function = getattr(hashlib, digest.name)

    def check(signing_input: bytes, signature: bytes) -> bool:
        if len(signature) != length:
            return False
        try:
            recovered = recover(signature, padding, digest)
        except BadSignature:
            return False
        return hmac.compare_digest(recovered, hash_function(signing_input).digest())

    return check


def _rsa_verify(public: RSAPublicKey, padding: AsymmetricPadding, digest: HashAlgorithm) -> Check:
    def check(signing_input: bytes, signature: bytes) -> bool:
        try:
            public.verify(signature, signing_input, padding, digest)
        except BadSignature:
            return False
        return True

    return check


def _ecdsa(public: EllipticCurvePublicKey, alg: JWSAlgModel) -> Check:
    length = (public.curve.key_size + 7) // 8
    algorithm = ECDSA(alg.hash_alg())  # type: ignore[attr-defined]

    def check(signing_input: bytes, signature: bytes) -> bool:
        # RFC 7518 section 3.4: R and S as fixed-length big-endian octets, concatenated.
        if len(signature) != 2 * length:
            return False
        der = encode_dss_signature(int.from_bytes(signature[:length], "big"), int.from_bytes(signature[length:], "big"))
        try:
            public.verify(der, signing_input, algorithm)
        except BadSignature:
            return False
        return True

    return check


def _eddsa(public: Ed25519PublicKey | Ed448PublicKey) -> Check:
    def check(signing_input: bytes, signature: bytes) -> bool:
        try:
            public.verify(signature, signing_input)
        except BadSignature:
            return False
        return True

    return check


def _joserfc(alg: JWSAlgModel, key: Key) -> Check:
    def check(signing_input: bytes, signature: bytes) -> bool:
        return bool(alg.verify(signing_input, signature, key))

    return check


def _build(alg: JWSAlgModel, key: Key) -> Check:
    try:
        alg.check_key(key)  # use, key type, curve, the key's own alg (RFC 7517 section 4)
        if alg.key_type not in ("RSA", "EC", "OKP"):
            return _joserfc(alg, key)
        public = key.get_op_key("verify")  # key_ops (RFC 7517 section 4.3)
    except Exception:
        return _never
    if isinstance(public, RSAPublicKey):
        return _rsa(public, alg)
    if isinstance(public, EllipticCurvePublicKey):
        return _ecdsa(public, alg)
    if isinstance(public, (Ed25519PublicKey, Ed448PublicKey)) and alg.name == "EdDSA":
        return _eddsa(public)
    return _joserfc(alg, key)


def prepare(alg: JWSAlgModel, key: Key) -> Check:
    """The signature check of ``alg`` with ``key``, built on first use and kept."""
    cache_key = (alg.name, id(key))
    entry = _prepared.get(cache_key)
    if entry is not None and entry[0] is key:
        return entry[1]
    check = _build(alg, key)
    if len(_prepared) >= _MAX_PREPARED:
        _prepared.clear()
    _prepared[cache_key] = (key, check)
    return check


def verify_signature(alg: JWSAlgModel, signing_input: bytes, signature: bytes, keys: Sequence[Key]) -> None:
    """Return when one of ``keys`` verifies ``signature``.

    Raises:
        InvalidSignature: none does.
    """
    for key in keys:
        try:
            if prepare(alg, key)(signing_input, signature):
                return
        except Exception:  # noqa: S112  a malformed signature can make a backend raise instead of answer
            continue
    raise InvalidSignature(f"the {alg.name} signature does not verify")
