"""The grouped settings of an :class:`~bastion.AuthorizationServer`: lifetimes, registration, signing, DPoP.

Each is a small frozen dataclass, checked when it is made, so a wrong value is a
:class:`~bastion.ConfigurationError` where it is written rather than on the first request.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from os import PathLike

from bastion._core.errors import ConfigurationError
from bastion._jose.dpop import DEFAULT_ALGORITHMS, dpop_algorithms
from bastion.authserver._dev_origins import development_settings
from bastion.authserver._fetch import SafeFetcher
from bastion.authserver._keyring import SUPPORTED_ALGORITHMS

__all__ = ["DPoPSettings", "Registration", "Signing", "TokenLifetimes"]

DAY = 86400.0


def _positive(name: str, value: float) -> None:
    if not value > 0:
        raise ConfigurationError(f"{name} must be a positive number of seconds")


@dataclass(frozen=True)
class TokenLifetimes:
    """How long what the server issues lives, in seconds.

    Attributes:
        access_token: An access token (default one hour).
        refresh_token: A refresh token left unused (default 30 days); a grant lives as long.
        refresh_grace: The longest a rotated refresh token stays redeemable, counted from
            its rotation (default 7 days). Presented again before its successor was first
            used, it returns the same successor pair (a client whose answer was lost retries
            safely, however long the server was down); after the successor's first use, or
            past this bound, it revokes the family (RFC 9700 section 4.14.2). ``0``: any
            later presentation revokes.
        code: An authorization code (default one minute).

    Raises:
        ConfigurationError: a lifetime is not positive, or the grace is negative.
    """

    access_token: float = 3600.0
    refresh_token: float = 30 * DAY
    refresh_grace: float = 7 * DAY
    code: float = 60.0

    def __post_init__(self) -> None:
        _positive("TokenLifetimes.access_token", self.access_token)
        _positive("TokenLifetimes.refresh_token", self.refresh_token)
        _positive("TokenLifetimes.code", self.code)
        if not self.refresh_grace >= 0:
            raise ConfigurationError("TokenLifetimes.refresh_grace must not be negative")


@dataclass(frozen=True)
class Registration:
    """How clients come to be known besides the pre-registered ones.

    Attributes:
        dynamic: Whether ``/register`` (RFC 7591) is open.
        rate_limit: Registrations per minute per client address (``0``: no limit).
        metadata_documents: Whether URL client ids (client ID metadata documents) are accepted.
        fetcher: The outbound HTTP policy for those documents and clients' ``jwks_uri``
            (default: a :class:`~bastion.authserver.SafeFetcher` refusing private addresses).
        development_metadata_origins: Development only: loopback https origins whose
            documents are fetched although the SSRF guard refuses loopback addresses,
            e.g. ``["https://localhost:3000"]`` (scheme, host and port only). The server
            accepts them only when its issuer is loopback, and warns when it starts.
        development_ca_file: The PEM file of the CA that issued those origins'
            certificates; the only CA trusted for them (required with them).

    Raises:
        ConfigurationError: the rate limit is negative; a development origin that is not
            an https loopback origin, a CA file missing or without a certificate, one of
            the two given without the other, or both given with ``fetcher`` (a
            :class:`~bastion.authserver.SafeFetcher` takes them itself).
    """

    dynamic: bool = True
    rate_limit: int = 20
    metadata_documents: bool = True
    fetcher: SafeFetcher | None = None
    development_metadata_origins: Sequence[str] = ()
    development_ca_file: str | PathLike[str] | None = None

    def __post_init__(self) -> None:
        if self.rate_limit < 0:
            raise ConfigurationError("Registration.rate_limit must not be negative")
        if isinstance(self.development_metadata_origins, str):
            raise TypeError("Registration.development_metadata_origins is a list of origins, not one string")
        object.__setattr__(self, "development_metadata_origins", tuple(self.development_metadata_origins))
        development = development_settings(self.development_metadata_origins, self.development_ca_file)
        if development is not None and self.fetcher is not None:
            raise ConfigurationError(
                "give the development origins to the SafeFetcher (development_origins=, development_ca_file=), "
                "not beside fetcher="
            )

    def build_fetcher(self) -> SafeFetcher:
        """The fetcher the server uses: ``fetcher``, or a default one with the development origins if any."""
        if self.fetcher is not None:
            return self.fetcher
        return SafeFetcher(
            development_origins=self.development_metadata_origins, development_ca_file=self.development_ca_file
        )


@dataclass(frozen=True)
class Signing:
    """How the server signs its access tokens.

    Attributes:
        algorithm: ``ES256`` (default), ``RS256`` or ``EdDSA``.
        rotation: Seconds a signing key signs before a new one replaces it (default 30 days).

    Raises:
        ConfigurationError: an unsupported algorithm, or a rotation that is not positive.
    """

    algorithm: str = "ES256"
    rotation: float = 30 * DAY

    def __post_init__(self) -> None:
        if self.algorithm not in SUPPORTED_ALGORITHMS:
            raise ConfigurationError(f"Signing.algorithm must be one of {sorted(SUPPORTED_ALGORITHMS)}")
        _positive("Signing.rotation", self.rotation)


@dataclass(frozen=True)
class DPoPSettings:
    """How the token endpoint treats DPoP proofs (RFC 9449); DPoP is always on.

    A token request with a valid proof gets an access token bound to the proof's key
    (``cnf.jkt``, ``token_type: DPoP``); one without gets a bearer token, unless the
    client registered ``dpop_bound_access_tokens`` or ``required`` is set.

    Attributes:
        required: Refuse every token request without a proof (``invalid_dpop_proof``), so
            that no bearer token is issued any more (default ``False``).
        algorithms: The proof signature algorithms accepted and advertised as
            ``dpop_signing_alg_values_supported``: asymmetric ones only (default: ES256,
            ES384, ES512, Ed25519, EdDSA, PS256, PS384, PS512, RS256).
        nonce: Require the server's nonce in every proof (section 8): a proof without the
            current one is answered ``use_dpop_nonce`` with a ``DPoP-Nonce`` header, which
            the client puts in a new proof. Off by default: it costs a second round trip
            to a client's first token request in each nonce period.
        nonce_period: Seconds each nonce is current (default 300); the previous one is
            still accepted, so a nonce lives between one and two periods.
        max_age: Seconds a proof is accepted after its ``iat`` (default 300); its ``jti``
            is remembered that long (and a minute more, the clock skew allowed).

    Raises:
        ConfigurationError: an algorithm that is not an asymmetric JWS algorithm, or a
            period or age that is not positive.
    """

    required: bool = False
    algorithms: Sequence[str] = DEFAULT_ALGORITHMS
    nonce: bool = False
    nonce_period: float = 300.0
    max_age: float = 300.0

    def __post_init__(self) -> None:
        if isinstance(self.algorithms, str):
            raise TypeError("DPoPSettings.algorithms is a list of algorithm names, not one string")
        object.__setattr__(self, "algorithms", tuple(dpop_algorithms(self.algorithms)))
        _positive("DPoPSettings.nonce_period", self.nonce_period)
        _positive("DPoPSettings.max_age", self.max_age)
