"""A client's DPoP key pair, which signs proofs (RFC 9449 section 4.2): :class:`ProofKey`."""

from __future__ import annotations

import secrets
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from joserfc import jws
from joserfc.jwk import ECKey, Key, OKPKey, RSAKey

from bastion._core.errors import ConfigurationError
from bastion._jose.dpop import (
    DPOP_TYP,
    THUMBPRINT_MEMBERS,
    access_token_hash,
    content_digest,
    dpop_algorithms,
    thumbprint,
)
from bastion._jose.keys import fits

__all__ = ["ProofKey"]

#: The curve of each ECDSA proof algorithm, and the algorithm of each curve.
_CURVES: dict[str, ec.EllipticCurve] = {"ES256": ec.SECP256R1(), "ES384": ec.SECP384R1(), "ES512": ec.SECP521R1()}
_CURVE_ALGORITHMS = {curve.name: alg for alg, curve in _CURVES.items()}


class ProofKey:
    """A client's DPoP key pair, which signs proofs (RFC 9449 section 4.2).

    Keep one per client and reuse it: the tokens issued to proofs of this key are bound to it.

    Args:
        private_key: An EC (P-256, P-384, P-521), RSA (2048 bits or more) or Ed25519 private key.
        alg: The proof algorithm; by default ES256/ES384/ES512 by curve, PS256 for RSA, Ed25519.
    """

    def __init__(
        self,
        private_key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey,
        alg: str | None = None,
    ) -> None:
        if isinstance(private_key, ec.EllipticCurvePrivateKey):
            curve = _CURVE_ALGORITHMS.get(private_key.curve.name)
            if curve is None:
                raise ConfigurationError(f"the curve {private_key.curve.name} is not a DPoP curve")
            self._key: Key = ECKey.import_key(private_key)
            default = curve
        elif isinstance(private_key, rsa.RSAPrivateKey):
            if private_key.key_size < 2048:
                raise ConfigurationError("an RSA DPoP key needs at least 2048 bits")
            self._key = RSAKey.import_key(private_key)
            default = "PS256"
        elif isinstance(private_key, ed25519.Ed25519PrivateKey):
            self._key = OKPKey.import_key(private_key)
            default = "Ed25519"  # RFC 9864's name; "EdDSA" is deprecated
        else:
            raise ConfigurationError(f"{type(private_key).__name__} is not a supported DPoP key")
        self.alg = alg or default
        algorithm = dpop_algorithms([self.alg])[self.alg]
        if not fits(self._key, algorithm):
            raise ConfigurationError(f"{self.alg} cannot be used with this key")
        public = self._key.as_dict(private=False)
        #: The public JWK that goes in every proof's header.
        kty = str(public["kty"])
        self.public_jwk: dict[str, Any] = {name: public[name] for name in THUMBPRINT_MEMBERS[kty]}
        #: The RFC 7638 thumbprint: the ``cnf.jkt`` of tokens bound to this key.
        self.jkt = thumbprint(self.public_jwk)

    @classmethod
    def generate(cls, alg: str = "ES256") -> ProofKey:
        """A new key pair for ``alg`` (ES256, ES384, ES512, Ed25519, PS256 or RS256)."""
        if alg in _CURVES:
            return cls(ec.generate_private_key(_CURVES[alg]), alg)
        if alg in ("Ed25519", "EdDSA"):
            return cls(ed25519.Ed25519PrivateKey.generate(), alg)
        if alg in ("PS256", "PS384", "PS512", "RS256", "RS384", "RS512"):
            return cls(rsa.generate_private_key(public_exponent=65537, key_size=2048), alg)
        raise ConfigurationError(f"{alg!r} is not a DPoP algorithm")

    def proof(
        self,
        method: str,
        url: str,
        *,
        access_token: str | None = None,
        nonce: str | None = None,
        body: bytes | None = None,
        now: float | None = None,
    ) -> str:
        """A new proof for one request: ``htm``, ``htu`` (without query and fragment), a fresh ``jti``.

        Args:
            method: The request's HTTP method.
            url: The request's URL.
            access_token: The token sent with it, hashed into ``ath``.
            nonce: The server's latest ``DPoP-Nonce``.
            body: The request body, digested into ``content_digest`` (the MCP profile).
            now: The clock reading for ``iat``.
        """
        parts = urlsplit(url)
        claims: dict[str, Any] = {
            "jti": secrets.token_urlsafe(16),
            "htm": method,
            "htu": urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")),
            "iat": int(time.time() if now is None else now),
        }
        if access_token is not None:
            claims["ath"] = access_token_hash(access_token)
        if nonce is not None:
            claims["nonce"] = nonce
        if body is not None:
            claims["content_digest"] = content_digest(body)
        header = {"typ": DPOP_TYP, "alg": self.alg, "jwk": self.public_jwk}
        return jws.serialize_compact(header, orjson.dumps(claims), self._key, algorithms=[self.alg])
