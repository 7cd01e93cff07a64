"""Importing signing keys safely: PEM, a JWK or a JWK Set (RFC 7517), or a native key.

Public keys are RSA (2048 to 16384 bits) and EC keys of RFC 7518 (P-256, P-384,
P-521, and secp256k1) or the OKP keys of RFC 8037 (Ed25519, Ed448); private
members of a JWK are dropped. A shared secret is an HMAC key of at least 32
bytes (RFC 7518 section 3.2). :func:`fits` and :func:`key_algorithms` pair each
key with the algorithms it may check, which is what prevents algorithm confusion
(RFC 8725 section 2.1).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, cast

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from joserfc.jwa import JWSAlgModel
from joserfc.jwk import ECKey, JWKRegistry, Key, OctKey, OKPKey, RSAKey
from joserfc.jws import JWSRegistry
from joserfc.util import urlsafe_b64decode

from bastion._core.errors import ConfigurationError

__all__ = [
    "JWKS_DEFAULT_ALGORITHMS",
    "MAX_KEYS",
    "MAX_RSA_BITS",
    "MIN_RSA_BITS",
    "PublicKey",
    "algorithm_names",
    "fits",
    "import_jwk",
    "import_public_key",
    "import_secret",
    "key_algorithms",
    "parse_key_set",
]

logger = logging.getLogger("bastion")

#: Algorithms accepted from a key set when none are configured: every asymmetric
#: JWS algorithm of RFC 7518 and RFC 8037/9864. Symmetric ones never: a key set is public.
JWKS_DEFAULT_ALGORITHMS = (
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
    "ES256", "ES384", "ES512", "EdDSA", "Ed25519",
)  # fmt: skip

#: NIST SP 800-131A: RSA keys below 2048 bits are refused. Above 16384 bits a
#: key only makes verification slow.
MIN_RSA_BITS = 2048
MAX_RSA_BITS = 16384
#: A key set with more keys than this is cut (no issuer publishes that many).
MAX_KEYS = 100

#: The default allow-list for a configured key: one algorithm, to keep it tight.
_DEFAULT_ALGORITHMS = {
    "RSA": ("RS256",),
    "P-256": ("ES256",),
    "P-384": ("ES384",),
    "P-521": ("ES512",),
    "secp256k1": ("ES256K",),
    # RFC 9864 deprecates the polymorphic "EdDSA" for "Ed25519"; issuers still send the former.
    "Ed25519": ("EdDSA", "Ed25519"),
    "Ed448": ("EdDSA", "Ed448"),
}
_SIGNING_CURVES = {"EC": ("P-256", "P-384", "P-521", "secp256k1"), "OKP": ("Ed25519", "Ed448")}
_EC_CURVES = (ec.SECP256R1, ec.SECP384R1, ec.SECP521R1, ec.SECP256K1)
_PUBLIC_MEMBERS = {"RSA": ("n", "e"), "EC": ("crv", "x", "y"), "OKP": ("crv", "x")}
_META_MEMBERS = ("kid", "alg", "use", "key_ops")

#: What ``public_key=`` accepts: PEM (key or certificate), a JWK, a joserfc or a ``cryptography`` key.
PublicKey = str | bytes | Mapping[str, Any] | RSAKey | ECKey | OKPKey | PublicKeyTypes


def fits(key: Key, alg: JWSAlgModel) -> bool:
    """Whether ``key`` can check a signature made with ``alg``.

    The key type and curve must be the algorithm's, and the key's own ``alg``,
    ``use`` and ``key_ops`` members (RFC 7517 section 4) must allow it. This is
    what stops algorithm confusion: an HMAC algorithm never fits a public key.
    """
    if key.key_type != alg.key_type:
        return False
    if isinstance(key, ECKey | OKPKey):
        curve = getattr(alg, "curve", None)
        if curve is not None and key.curve_name != curve:
            return False
        if key.curve_name not in _SIGNING_CURVES[key.key_type]:
            return False
    designed = key.get("alg")
    if designed is not None and designed != alg.name:
        return False
    use = key.get("use")
    if use is not None and use != "sig":
        return False
    operations = key.get("key_ops")
    return operations is None or "verify" in operations


def _wrap_native(native: object, parameters: dict[str, Any] | None = None) -> Key:
    """A joserfc key around a ``cryptography`` public key, after the size and curve checks."""
    if isinstance(native, rsa.RSAPublicKey):
        if not MIN_RSA_BITS <= native.key_size <= MAX_RSA_BITS:
            raise ValueError(f"RSA keys must have {MIN_RSA_BITS} to {MAX_RSA_BITS} bits, not {native.key_size}")
        return RSAKey.import_key(native, parameters)  # type: ignore[arg-type]
    if isinstance(native, ec.EllipticCurvePublicKey):
        if not isinstance(native.curve, _EC_CURVES):
            raise ValueError(f"the curve {native.curve.name} is not supported")
        return ECKey.import_key(native, parameters)  # type: ignore[arg-type]
    if isinstance(native, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return OKPKey.import_key(native, parameters)  # type: ignore[arg-type]
    raise ValueError(f"{type(native).__name__} is not a supported public key")


def import_jwk(data: Any) -> Key:
    """One public signing key from a JWK (RFC 7517 section 4), private members dropped.

    Raises:
        ValueError: the JWK is not a usable public signing key; the message says why.
    """
    if not isinstance(data, dict):
        raise ValueError("a JWK must be a JSON object")
    kty = data.get("kty")
    members = _PUBLIC_MEMBERS.get(kty) if isinstance(kty, str) else None
    if members is None:
        raise ValueError("unsupported kty")
    use = data.get("use")
    if use is not None and use != "sig":
        raise ValueError("not a signing key (use)")
    operations = data.get("key_ops")
    if operations is not None and (not isinstance(operations, list) or "verify" not in operations):
        raise ValueError("not a verification key (key_ops)")
    if kty in _SIGNING_CURVES and data.get("crv") not in _SIGNING_CURVES[kty]:
        raise ValueError("unsupported curve")
    if kty == "RSA":
        modulus = data.get("n")
        if not isinstance(modulus, str):
            raise ValueError("RSA key without a modulus")
        # Checked before the import, which would only warn about a short key.
        bits = int.from_bytes(urlsafe_b64decode(modulus.encode("ascii")), "big").bit_length()
        if not MIN_RSA_BITS <= bits <= MAX_RSA_BITS:
            raise ValueError(f"RSA keys must have {MIN_RSA_BITS} to {MAX_RSA_BITS} bits, not {bits}")
    public = {name: data[name] for name in (*members, *_META_MEMBERS) if name in data}
    try:
        return JWKRegistry.import_key(cast(Any, {"kty": kty, **public}))
    except Exception as exc:  # joserfc and cryptography raise several types for bad key material
        raise ValueError(f"invalid {kty} key ({type(exc).__name__})") from None


def import_public_key(value: PublicKey | OctKey | None) -> Key:
    """A public key given as PEM (key or certificate), JWK dict, joserfc key or ``cryptography`` key.

    Raises:
        ConfigurationError: the value is not a supported public signing key.
    """
    try:
        if isinstance(value, OctKey):
            raise ValueError("a symmetric key is not a public key: pass it as secret=")
        if isinstance(value, RSAKey | ECKey | OKPKey):
            parameters = {name: item for name in _META_MEMBERS if (item := value.get(name)) is not None}
            return _wrap_native(value.public_key, parameters or None)
        if isinstance(value, Mapping):
            return import_jwk(dict(value))
        if isinstance(value, str | bytes):
            pem = value.encode("ascii") if isinstance(value, str) else value
            if b"-----BEGIN CERTIFICATE-----" in pem:
                return _wrap_native(x509.load_pem_x509_certificate(pem).public_key())
            return _wrap_native(load_pem_public_key(pem))
        return _wrap_native(value)
    except (ValueError, TypeError, UnicodeError) as exc:
        raise ConfigurationError(f"public_key is not a usable public signing key: {exc}") from None


def import_secret(secret: str | bytes) -> OctKey:
    """An HMAC key from a shared secret of at least 32 bytes.

    Raises:
        ConfigurationError: the secret is short, or looks like a public key (algorithm confusion).
    """
    raw = secret.encode("utf-8") if isinstance(secret, str) else secret
    if not isinstance(raw, bytes) or len(raw) < 32:
        raise ConfigurationError("an HMAC secret must have at least 32 bytes (RFC 7518 section 3.2)")
    if raw.lstrip().startswith((b"-----BEGIN", b"---- BEGIN", b"ssh-", b"ecdsa-sha2-")):
        raise ConfigurationError("the secret looks like a key: pass a public key as public_key=")
    try:
        return OctKey.import_key(raw)
    except ValueError as exc:
        raise ConfigurationError(f"unusable secret: {exc}") from None


def algorithm_names(algorithms: Sequence[str] | None, default: Sequence[str]) -> tuple[str, ...]:
    """The allow-list: known JWS algorithm names, never ``none`` (RFC 8725 section 3.1).

    Raises:
        ConfigurationError: the list is empty, or names ``none`` or an unknown algorithm.
    """
    names = tuple(default if algorithms is None else algorithms)
    if not names or isinstance(algorithms, str):
        raise ConfigurationError("algorithms must be a non-empty list of JWS algorithm names")
    for name in names:
        if not isinstance(name, str) or name.lower() == "none":
            raise ConfigurationError("the 'none' algorithm is never accepted (RFC 8725 section 3.1)")
        if name not in JWSRegistry.algorithms:
            raise ConfigurationError(f"unknown JWS algorithm {name!r} (names are case-sensitive)")
    return names


def key_algorithms(key: Key, algorithms: Sequence[str] | None) -> tuple[str, ...]:
    """The allow-list for one configured key: ``algorithms``, or by default the one the key is for.

    Raises:
        ConfigurationError: an algorithm does not fit the key (algorithm confusion,
            RFC 8725 section 2.1), or a secret is shorter than its hash (RFC 7518 section 3.2).
    """
    designed = key.get("alg")
    if isinstance(designed, str):
        default: Sequence[str] = (designed,)
    elif isinstance(key, OctKey):
        default = ("HS256",)
    else:
        default = _DEFAULT_ALGORITHMS["RSA" if isinstance(key, RSAKey) else key.curve_name]
    names = algorithm_names(algorithms, default)
    for name in names:
        if not fits(key, JWSRegistry.algorithms[name]):
            raise ConfigurationError(f"algorithm {name} cannot be used with this {key.key_type} key")
        if isinstance(key, OctKey) and len(key.raw_value) * 8 < int(name[2:]):
            raise ConfigurationError(f"{name} needs a secret of at least {int(name[2:]) // 8} bytes")
    return names


def parse_key_set(document: Any) -> list[Key]:
    """The usable signing keys of a JWK Set document (RFC 7517 section 5).

    Keys of an unknown type, for another use, or otherwise unusable are skipped
    ("implementations SHOULD ignore JWKs ... they do not understand").

    Raises:
        ValueError: the document is not a JWK Set, or has no usable key.
    """
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("the document is not a JWK Set")
    keys: list[Key] = []
    for entry in document["keys"][:MAX_KEYS]:
        try:
            keys.append(import_jwk(entry))
        except ValueError as exc:
            kid = entry.get("kid") if isinstance(entry, dict) else None
            logger.debug("skipping JWK %.60r: %s", kid, exc)
    if not keys:
        raise ValueError("the JWK Set has no usable signing key")
    return keys
