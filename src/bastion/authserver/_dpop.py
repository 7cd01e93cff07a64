"""DPoP at the token endpoint (RFC 9449): a token request's proof, its ``jti``, the server's nonces.

:meth:`TokenProofs.check` reads the request's ``DPoP`` header and answers the thumbprint
of the proof's key, which the grants bind their tokens to, or ``None`` without a header:

- more than one ``DPoP`` header is refused (section 4.3, point 1);
- the proof is checked by :func:`bastion._jose.dpop.check_proof` against ``POST`` and the
  token endpoint's URL as the metadata gives it (the issuer's), not the URL the request
  arrived at, so a reverse proxy rewriting the host or scheme changes nothing;
- with :attr:`DPoPSettings.nonce`, the proof must carry the current nonce or the previous
  one (section 8), else ``use_dpop_nonce`` with the nonce to use;
- the ``jti`` is used once (section 11.1): ``Store.add`` under the hash of the key's
  thumbprint and the ``jti``, for as long as the proof would be accepted, so a replay
  to any replica sharing the store is refused.

Nonces need no write per nonce: each is an HMAC of the current time period under a key
kept in the store (made by whichever process needs it first, ``Store.add``), so every
replica and worker computes the same nonces and accepts those of the others.

Each refused proof is an :class:`InvalidDPoPProofError` whose ``reason`` names the check, never
the proof, its key or a token: the token endpoint reports it as a ``dpop.refused`` audit event,
followed by ``token.refused``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import TYPE_CHECKING, NoReturn

from starlette.requests import Request

from bastion._core.errors import InvalidDPoPProof
from bastion._jose.dpop import check_proof, dpop_algorithms, public_reason
from bastion._resource.dpop import first_use
from bastion.authserver._errors import InvalidDPoPProofError, UseDPoPNonceError
from bastion.authserver._models import Client
from bastion.storage import StoreError

if TYPE_CHECKING:
    from bastion.authserver._server import AuthorizationServer

__all__ = ["JTI_NAMESPACE", "LEEWAY", "NONCE_NAMESPACE", "TokenProofs"]

#: Used proof ids, under the hash of the key's thumbprint and the ``jti``.
JTI_NAMESPACE = "dpop-jti"
#: The key the nonces are derived from, one for every process sharing the store.
NONCE_NAMESPACE = "dpop-nonce"
_NONCE_KEY = "hmac-key"
#: Seconds a proof's ``iat`` may be ahead of the server's clock.
LEEWAY = 60.0


class TokenProofs:
    """The DPoP proofs of one authorization server's token endpoint."""

    def __init__(self, server: AuthorizationServer) -> None:
        self.server = server
        self.settings = server.dpop
        self._algorithms = dpop_algorithms(self.settings.algorithms)
        self._nonce_key: bytes | None = None

    async def check(self, request: Request) -> str | None:
        """The thumbprint of the key of the request's valid proof, or ``None`` without a ``DPoP`` header.

        Raises:
            InvalidDPoPProofError: two headers, a proof failing a check of section 4.3, a used ``jti``.
            UseDPoPNonceError: nonces are on and the proof lacks the current one.
        """
        values = request.headers.getlist("dpop")
        if not values:
            return None
        if len(values) > 1:
            self._refuse("more than one DPoP header", "send one DPoP header")
        now = self.server.clock()
        try:
            proof = check_proof(
                values[0],
                method="POST",
                url=self.server.url("/token"),
                algorithms=self._algorithms,
                now=now,
                max_age=self.settings.max_age,
                leeway=LEEWAY,
            )
        except InvalidDPoPProof as exc:
            public = public_reason(str(exc))
            self._refuse(public, public, detail=str(exc))
        if self.settings.nonce:
            await self._check_nonce(proof.nonce)
        if not await first_use(self.server.store, JTI_NAMESPACE, proof, self.settings.max_age + LEEWAY):
            self._refuse("the proof was already used", "the DPoP proof was already used (a jti is single-use)")
        return proof.jkt

    def require(self, client: Client, jkt: str | None) -> None:
        """Refuse a request without a proof from a client that always uses DPoP, or when the server requires it.

        Raises:
            InvalidDPoPProofError: no proof, and one is required.
        """
        if jkt is not None:
            return
        if client.dpop_bound_access_tokens:
            self._refuse("no proof", "this client registered dpop_bound_access_tokens: a DPoP proof is required")
        if self.settings.required:
            self._refuse("no proof", "this server requires a DPoP proof with every token request")

    async def nonce(self) -> str:
        """The current nonce (section 8), for the ``DPoP-Nonce`` header."""
        return self._nonce(await self._key(), self._period())

    async def response_headers(self, request: Request) -> dict[str, str]:
        """``DPoP-Nonce`` with the current nonce, for any answer to a request with a proof when nonces are on.

        Nothing when the store cannot give the nonce key now: the answer goes out without it.
        """
        if not self.settings.nonce or "dpop" not in request.headers:
            return {}
        try:
            return {"DPoP-Nonce": await self.nonce()}
        except StoreError:
            return {}

    async def _check_nonce(self, nonce: str | None) -> None:
        key = await self._key()
        period = self._period()
        current = self._nonce(key, period)
        if nonce is None:
            raise UseDPoPNonceError(current, detail="the DPoP proof has no nonce")
        if not any(hmac.compare_digest(nonce, self._nonce(key, p)) for p in (period, period - 1)):
            reason = "the nonce is not a current one"
            raise UseDPoPNonceError(current, detail="the DPoP proof's nonce is not a current one", reason=reason)

    def _period(self) -> int:
        return int(self.server.clock() // self.settings.nonce_period)

    @staticmethod
    def _nonce(key: bytes, period: int) -> str:
        digest = hmac.new(key, b"bastion dpop nonce %d" % period, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest[:24]).decode("ascii")  # 32 characters of NQCHAR

    async def _key(self) -> bytes:
        """The nonce key of the store: the first process to need one makes it, every other reads it."""
        if self._nonce_key is None:
            store = self.server.store
            await store.add(NONCE_NAMESPACE, _NONCE_KEY, secrets.token_bytes(32))
            key = await store.get(NONCE_NAMESPACE, _NONCE_KEY)
            if key is None:
                raise StoreError("the DPoP nonce key could not be read back from the store")
            self._nonce_key = key
        return self._nonce_key

    @staticmethod
    def _refuse(reason: str, description: str, *, detail: str | None = None) -> NoReturn:
        """Raise the OAuth error of a refused proof; the token endpoint reports its ``reason``."""
        raise InvalidDPoPProofError(description, detail=detail, reason=reason)
