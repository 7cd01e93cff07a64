"""DPoP at a protected resource (RFC 9449 section 7, the MCP DPoP profile).

A DPoP-bound access token carries the thumbprint of the client's key (``cnf.jkt``, RFC 9449
section 6.1) and comes as ``Authorization: DPoP <token>`` with a fresh proof of that key in
the ``DPoP`` header. :class:`ResourceProofs` checks one such request:

- exactly one ``DPoP`` header (section 4.3 point 1);
- the proof as section 4.3 says (:func:`bastion._jose.dpop.check_proof`): ``typ``, an
  asymmetric ``alg`` of the allow-list, a public ``jwk`` only, the signature, ``htm``, ``htu``
  against the endpoint's canonical URL (not the ``Host`` the request came with), ``iat``
  within the window and ``ath`` hashing the token (section 7.1);
- the MCP profile's ``content_digest``, required in every proof and matching the raw body,
  since every MCP request is a POST to one URL;
- the proof's key is the key the token is bound to (section 7.1);
- its ``jti`` used once (section 11.1), in the store, so a replica sharing it refuses a
  replay too. The profile makes this optional; bastion always does it, the safer reading.

:func:`binding` says whether a verified token is bound and to which key; a bound token
sent as a bearer token is refused (section 7.1), whoever issued it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace

from starlette.requests import HTTPConnection

from bastion._core.errors import ConfigurationError, InvalidDPoPProof, InvalidToken, KeysUnavailable
from bastion._jose.dpop import DEFAULT_ALGORITHMS, Proof, check_proof, dpop_algorithms, public_reason
from bastion._resource.tokens import AccessToken
from bastion.storage import MemoryStore, Store, StoreError

__all__ = ["JTI_NAMESPACE", "DPoPOptions", "ResourceProofs", "binding", "dpop_options", "first_use"]

#: Used proof ids at resources, under the hash of the key's thumbprint and the ``jti``.
JTI_NAMESPACE = "dpop-resource-jti"


@dataclass(frozen=True)
class DPoPOptions:
    """How a protected resource treats DPoP-bound tokens (RFC 9449, the MCP DPoP profile).

    DPoP is on by default: a token bound to a key (``cnf.jkt``) is accepted only with the
    ``DPoP`` scheme and a proof of that key, and a bearer token as before.

    Attributes:
        required: Accept only DPoP-bound tokens: a bearer token is refused, and the
            resource metadata says ``dpop_bound_access_tokens_required`` (default ``False``).
        algorithms: The proof algorithms accepted and advertised as
            ``dpop_signing_alg_values_supported``: asymmetric ones only.
        max_age: Seconds a proof is accepted before and after the server's clock reading
            (default 300: the profile's plus or minus five minutes). Its ``jti`` is kept
            twice that long.
        store: Where used proof ids are kept, shared by every worker and replica that uses
            it (default: this process's memory; an ``MCPServer`` with an
            ``AuthorizationServer`` uses the authorization server's store).

    Raises:
        ConfigurationError: an algorithm that is not an asymmetric JWS algorithm, or an age
            that is not positive.
    """

    required: bool = False
    algorithms: Sequence[str] = DEFAULT_ALGORITHMS
    max_age: float = 300.0
    store: Store | None = None

    def __post_init__(self) -> None:
        if isinstance(self.algorithms, str):
            raise ConfigurationError("DPoPOptions.algorithms is a list of algorithm names, not one string")
        object.__setattr__(self, "algorithms", tuple(dpop_algorithms(self.algorithms)))
        if isinstance(self.max_age, bool) or not isinstance(self.max_age, (int, float)) or not self.max_age > 0:
            raise ConfigurationError("DPoPOptions.max_age must be a positive number of seconds")
        if self.store is not None and not isinstance(self.store, Store):
            raise ConfigurationError("DPoPOptions.store must be a bastion Store")


async def first_use(store: Store, namespace: str, proof: Proof, ttl: float) -> bool:
    """Whether ``proof``'s ``jti`` is new for its key (RFC 9449 section 11.1), now kept ``ttl`` seconds in ``store``.

    Under the SHA-256 of the key's thumbprint and the ``jti``: every process sharing the
    store refuses a replay, and no proof's value is stored.

    Raises:
        StoreError: the store cannot be reached.
    """
    key = hashlib.sha256(f"{proof.jkt}\x00{proof.jti}".encode("utf-8", "surrogatepass")).hexdigest()
    return await store.add(namespace, key, b"1", ttl)


def dpop_options(dpop: DPoPOptions | bool, store: Store | None = None) -> DPoPOptions | None:
    """The options of a server's ``dpop=`` argument: ``True`` the defaults, ``False`` no DPoP.

    ``store`` (an authorization server's) keeps the used proof ids when the options name none,
    so every replica sharing it refuses a replay.

    Raises:
        ConfigurationError: ``dpop`` is neither a boolean nor :class:`DPoPOptions`.
    """
    if dpop is False:
        return None
    if dpop is True:
        dpop = DPoPOptions()
    elif not isinstance(dpop, DPoPOptions):
        raise ConfigurationError("dpop= takes True, False or DPoPOptions(...)")
    if dpop.store is None and store is not None:
        dpop = replace(dpop, store=store)
    return dpop


def binding(token: AccessToken) -> str | None:
    """The thumbprint a verified token is bound to (``cnf.jkt``), or ``None`` for a bearer token.

    Raises:
        InvalidToken: the token has a confirmation this resource cannot check (an mTLS
            certificate, RFC 8705, or a malformed ``cnf``): accepting it as a bearer token
            would drop its binding.
    """
    claims = token.claims
    if not claims:
        return None
    cnf = claims.get("cnf")
    if cnf is None:
        return None
    jkt = cnf.get("jkt") if type(cnf) is dict else None
    if not isinstance(jkt, str) or not jkt:
        raise InvalidToken(
            "a sender-constrained token without cnf.jkt",
            description="Sender-constrained access tokens other than DPoP are not supported by this resource",
        )
    return jkt


class ResourceProofs:
    """The DPoP proofs of one protected resource."""

    def __init__(self, options: DPoPOptions) -> None:
        self.options = options
        self.store = options.store if options.store is not None else MemoryStore()
        self._algorithms = dpop_algorithms(options.algorithms)

    @property
    def algorithms(self) -> tuple[str, ...]:
        """The proof algorithms accepted, for the ``algs`` of a challenge and the metadata."""
        return tuple(self._algorithms)

    async def check(self, conn: HTTPConnection, token: AccessToken, raw: str, url: str, body: bytes) -> None:
        """Check the proof of a request that sent ``raw`` with the ``DPoP`` scheme.

        Args:
            conn: The request.
            token: What the verifier made of ``raw``.
            raw: The access token as sent.
            url: The endpoint's canonical URL, which ``htu`` must name.
            body: The raw request body, which ``content_digest`` must digest.

        Raises:
            InvalidToken: the token is not bound to a key.
            InvalidDPoPProof: no proof, several, or one failing a check; the description
                names the check, never the proof, its key or the token.
            KeysUnavailable: the store of used proofs cannot be reached.
        """
        jkt = binding(token)
        if jkt is None:
            # RFC 9449 section 7.1: the DPoP scheme is for DPoP-bound tokens.
            raise InvalidToken(
                "a bearer token sent with the DPoP scheme", description="The access token is not DPoP-bound"
            )
        values = conn.headers.getlist("dpop")
        if len(values) != 1:
            problem = "no DPoP proof" if not values else "more than one DPoP header"
            raise InvalidDPoPProof(problem, description=f"The request has {problem}")
        max_age = self.options.max_age
        try:
            proof = check_proof(
                values[0],
                method=conn.scope["method"],
                url=url,
                algorithms=self._algorithms,
                max_age=max_age,
                leeway=max_age,
                access_token=raw,
                body=body,
                require_content_digest=True,
            )
        except InvalidDPoPProof as exc:
            raise InvalidDPoPProof(str(exc), description=_sentence(public_reason(str(exc)))) from None
        if proof.jkt != jkt:
            raise InvalidDPoPProof(
                "the proof's key is not the token's",
                description="The DPoP proof's key is not the key the token is bound to",
            )
        try:
            fresh = await first_use(self.store, JTI_NAMESPACE, proof, 2 * max_age)
        except StoreError as exc:
            raise KeysUnavailable(f"the store of used DPoP proofs cannot be reached: {exc}") from None
        if not fresh:
            raise InvalidDPoPProof("a used proof", description="The DPoP proof was already used (a jti is single-use)")


def _sentence(reason: str) -> str:
    return reason[:1].upper() + reason[1:]
