"""Signing key pairs that mint JWT access tokens for tests."""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Mapping, Sequence
from types import EllipsisType
from typing import Any

from joserfc.errors import SecurityWarning
from joserfc.jwk import ECKey, OKPKey, RSAKey
from joserfc.jws import JWSRegistry, serialize_compact

from bastion._core.errors import ConfigurationError
from bastion._jose.proof_key import ProofKey

__all__ = ["KeyPair"]

#: The key each supported algorithm is generated with.
_GENERATORS: dict[str, tuple[type[RSAKey] | type[ECKey] | type[OKPKey], str | int]] = {
    **{f"{family}{bits}": (RSAKey, 2048) for family in ("RS", "PS") for bits in (256, 384, 512)},
    "ES256": (ECKey, "P-256"),
    "ES384": (ECKey, "P-384"),
    "ES512": (ECKey, "P-521"),
    "EdDSA": (OKPKey, "Ed25519"),
    "Ed25519": (OKPKey, "Ed25519"),
}


class _AnyHeader(JWSRegistry):
    """A registry that signs any protected header, for tests of headers a verifier must refuse."""

    def check_header(self, header: dict[str, Any]) -> None:
        """Accept the header as it is."""


class KeyPair:
    """A private/public key pair of an imaginary authorization server.

    Build one with :meth:`generate`, give :attr:`public_key` or :meth:`jwks` to
    the verifier under test, and mint tokens with :meth:`create_token`.
    """

    def __init__(self, key: RSAKey | ECKey | OKPKey, alg: str, kid: str) -> None:
        if not key.is_private:
            raise ConfigurationError("a KeyPair needs a private key")
        self.key = key
        self.alg = alg
        self.kid = kid

    @classmethod
    def generate(cls, alg: str = "RS256", kid: str | None = None) -> KeyPair:
        """A fresh key pair for ``alg`` (``RS256``, ``PS256``, ``ES256``, ``ES384``, ``EdDSA``, ...).

        ``kid`` defaults to the key's RFC 7638 thumbprint.
        """
        if alg not in _GENERATORS:
            raise ConfigurationError(f"unsupported algorithm {alg!r}; choose one of {sorted(_GENERATORS)}")
        key_class, size_or_curve = _GENERATORS[alg]
        key = key_class.generate_key(size_or_curve)  # type: ignore[arg-type]
        return cls(key, alg, kid if kid is not None else key.thumbprint())

    def __repr__(self) -> str:
        return f"KeyPair(alg={self.alg!r}, kid={self.kid!r})"

    @property
    def public_key(self) -> str:
        """The public key as PEM (SubjectPublicKeyInfo)."""
        return self.key.as_pem(private=False).decode("ascii")

    @property
    def private_key(self) -> str:
        """The private key as PEM (PKCS #8, unencrypted)."""
        return self.key.as_pem(private=True).decode("ascii")

    def public_jwk(self) -> dict[str, Any]:
        """The public key as a JWK with ``kid``, ``alg`` and ``use``."""
        return dict(self.key.as_dict(private=False, kid=self.kid, alg=self.alg, use="sig"))

    def jwks(self) -> dict[str, Any]:
        """A JWK Set holding the public key: ``{"keys": [public_jwk]}``."""
        return {"keys": [self.public_jwk()]}

    def sign(
        self,
        payload: bytes | str | Mapping[str, Any],
        *,
        kid: str | EllipsisType | None = ...,
        headers: Mapping[str, Any] | None = None,
    ) -> str:
        """A JWS compact serialization of any payload, for tests of odd claims and headers.

        A mapping is serialized as JSON (``NaN`` and ``Infinity`` allowed); bytes and
        strings are signed as they are. ``headers`` are added to the protected header
        without validation; ``alg`` is always this pair's.
        """
        if isinstance(payload, Mapping):
            payload = json.dumps(payload, separators=(",", ":"))
        header: dict[str, Any] = {"typ": "JWT"}
        if kid is not None:
            header["kid"] = self.kid if kid is ... else kid
        header.update(headers or {})
        header["alg"] = self.alg
        registry = _AnyHeader(algorithms=[self.alg])
        with warnings.catch_warnings():
            # joserfc warns that "EdDSA" is deprecated (RFC 9864); issuers still use it.
            warnings.simplefilter("ignore", SecurityWarning)
            return serialize_compact(header, payload, self.key, registry=registry)

    def create_token(
        self,
        subject: str | None = "user",
        issuer: str | None = "https://issuer.example",
        audience: str | Sequence[str] | None = None,
        scopes: Sequence[str] | str | None = None,
        expires_in_seconds: float | None = 3600,
        additional_claims: Mapping[str, Any] | None = None,
        kid: str | EllipsisType | None = ...,
        headers: Mapping[str, Any] | None = None,
        client_id: str | None = None,
        *,
        issued_at: float | None = None,
        bound_to: ProofKey | None = None,
    ) -> str:
        """A signed JWT access token.

        Args:
            subject: ``sub``; ``None`` leaves it out.
            issuer: ``iss``; ``None`` leaves it out.
            audience: ``aud``, a string or a list; ``None`` leaves it out.
            scopes: ``scope``, a list joined with spaces or a string as is.
            expires_in_seconds: ``exp`` relative to ``iat``; ``None`` leaves ``exp`` out.
            additional_claims: More claims; they override the ones above.
            kid: The ``kid`` header; default this pair's, ``None`` leaves it out.
            headers: More protected header parameters (``typ``, ``crit``, ``jku``, ...).
            client_id: ``client_id``; ``None`` leaves it out.
            issued_at: ``iat`` (default: now).
            bound_to: A client's DPoP key: the token is bound to it (``cnf.jkt``, RFC 9449
                section 6.1) and must come with its proofs (:func:`~bastion.testing.dpop_headers`).
        """
        now = int(time.time() if issued_at is None else issued_at)
        claims: dict[str, Any] = {"iat": now}
        if subject is not None:
            claims["sub"] = subject
        if issuer is not None:
            claims["iss"] = issuer
        if audience is not None:
            claims["aud"] = audience if isinstance(audience, str) else list(audience)
        if scopes is not None:
            claims["scope"] = scopes if isinstance(scopes, str) else " ".join(scopes)
        if expires_in_seconds is not None:
            claims["exp"] = int(now + expires_in_seconds)
        if client_id is not None:
            claims["client_id"] = client_id
        if bound_to is not None:
            claims["cnf"] = {"jkt": bound_to.jkt}
        claims.update(additional_claims or {})
        return self.sign(claims, kid=kid, headers=headers)
