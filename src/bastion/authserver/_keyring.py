"""The signing keys of the authorization server: generated on first start, kept in the store, rotated.

The whole ring is one store record, changed only by compare-and-set, so worker
processes agree on it: the first to start creates the first key, the first to
see it due rotates it. The newest key signs. Older keys stay published in the
JWKS until every token they signed has expired (rotation with overlap), then go.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from joserfc.errors import SecurityWarning
from joserfc.jwa import JWSAlgModel
from joserfc.jwk import ECKey, Key, OKPKey, RSAKey
from joserfc.jws import JWSRegistry

from bastion._core.errors import ConfigurationError
from bastion._core.http import LoopLocks
from bastion._core.ids import new_identifier
from bastion._jose.keys import fits
from bastion.storage import Store

__all__ = ["KEY_NAMESPACE", "SUPPORTED_ALGORITHMS", "KeyRing", "SigningKey", "stored_ring"]

KEY_NAMESPACE = "signing-key"
_RING = "ring"

#: The algorithms the server signs with, and the key each is generated with.
SUPPORTED_ALGORITHMS: dict[str, tuple[type[ECKey] | type[RSAKey] | type[OKPKey], str | int]] = {
    "ES256": (ECKey, "P-256"),
    "RS256": (RSAKey, 2048),
    "EdDSA": (OKPKey, "Ed25519"),
}

#: How often a process re-reads the ring from the store (to see another worker's rotation).
RELOAD_INTERVAL = 60.0


@dataclass(frozen=True)
class SigningKey:
    """One key of the ring: its private JWK, and when it was created."""

    kid: str
    alg: str
    created: float
    key: Key

    def to_dict(self) -> dict[str, Any]:
        return {
            "kid": self.kid,
            "alg": self.alg,
            "created": self.created,
            "jwk": dict(self.key.as_dict(private=True)),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SigningKey:
        alg = data["alg"]
        key_class = SUPPORTED_ALGORITHMS[alg][0]
        return cls(kid=data["kid"], alg=alg, created=float(data["created"]), key=key_class.import_key(data["jwk"]))

    def public_jwk(self) -> dict[str, Any]:
        """The public half as a JWK with ``kid``, ``alg`` and ``use``."""
        return dict(self.key.as_dict(private=False, kid=self.kid, alg=self.alg, use="sig"))


def _generate(alg: str, now: float) -> SigningKey:
    key_class, size = SUPPORTED_ALGORITHMS[alg]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)
        key = key_class.generate_key(size)  # type: ignore[arg-type]
    return SigningKey(kid=new_identifier(12), alg=alg, created=now, key=key)


class KeyRing:
    """The server's signing keys, shared through the store by every worker.

    Args:
        store: Where the ring lives.
        algorithm: The algorithm new keys are made for.
        rotation: Seconds a key signs before a new one replaces it.
        overlap: Seconds a replaced key stays published (at least the access token lifetime).
        clock: Seconds since the epoch.
    """

    def __init__(
        self, store: Store, *, algorithm: str, rotation: float, overlap: float, clock: Callable[[], float]
    ) -> None:
        if algorithm not in SUPPORTED_ALGORITHMS:
            raise ConfigurationError(f"signing_algorithm must be one of {sorted(SUPPORTED_ALGORITHMS)}")
        self.store = store
        self.algorithm = algorithm
        self.rotation = rotation
        self.overlap = overlap
        self._clock = clock
        self._keys: list[SigningKey] = []
        self._loaded_at = -math.inf
        # Per event loop: a server object may outlive one loop (tests, a restarted app).
        self._locks = LoopLocks()

    @property
    def keys(self) -> list[SigningKey]:
        """The keys as last loaded, newest last."""
        return list(self._keys)

    async def signing_key(self) -> SigningKey:
        """The key to sign with now, rotating the ring first when it is due."""
        now = self._clock()
        if now - self._loaded_at >= RELOAD_INTERVAL or not self._keys or self._due(now):
            await self._sync()
        return self._keys[-1]

    async def public_jwks(self) -> dict[str, Any]:
        """The JWK Set to publish: every key that signs or may have signed a live token."""
        await self.signing_key()
        return {"keys": [key.public_jwk() for key in self._keys]}

    async def keys_for(self, kid: str | None, alg: JWSAlgModel) -> list[Key]:
        """The verification keys for a token header; an unknown kid re-reads the ring once.

        This is the key source of the server's own verifier (see ``JWTVerifier(key_set=...)``).
        """
        selected = self._select(kid, alg)
        if not selected and (not self._keys or self._clock() - self._loaded_at >= 1.0):
            await self._sync()
            selected = self._select(kid, alg)
        return selected

    async def rotate(self) -> SigningKey:
        """Add a new signing key now, whatever the schedule; it signs from now on, and is returned.

        The keys it replaces stay published for the overlap, as after a scheduled rotation.
        Other workers sign with the new key once they re-read the ring (within
        ``RELOAD_INTERVAL``), and verify its tokens at once (an unknown ``kid`` re-reads it).
        """
        await self._sync(force=True)
        return self._keys[-1]

    async def stored(self) -> list[SigningKey]:
        """The ring as the store holds it now, oldest first; empty when no key was made yet (none is made)."""
        return await stored_ring(self.store)

    def _select(self, kid: str | None, alg: JWSAlgModel) -> list[Key]:
        return [k.key for k in self._keys if (kid is None or k.kid == kid) and fits(k.key, alg)]

    def _due(self, now: float) -> bool:
        return bool(self._keys) and now - self._keys[-1].created >= self.rotation

    async def _sync(self, *, force: bool = False) -> None:
        """Load the ring, creating or rotating it when due (or ``force``); other workers may race, the store decides."""
        async with self._locks.lock():
            for _ in range(10):
                now = self._clock()
                raw = await self.store.get(KEY_NAMESPACE, _RING)
                if raw is None:
                    ring = [_generate(self.algorithm, now)]
                    if await self.store.add(KEY_NAMESPACE, _RING, _dump(ring)):
                        self._install(ring, now)
                        return
                    continue
                ring = _load(raw)
                fresh = bool(ring) and now - ring[-1].created < self.rotation and ring[-1].alg == self.algorithm
                if fresh and not force:
                    self._install(ring, now)
                    return
                # Rotate: add a new key, drop keys replaced longer ago than the overlap.
                new = [*ring, _generate(self.algorithm, now)]
                kept = [k for i, k in enumerate(new[:-1]) if now - new[i + 1].created < self.overlap]
                new = [*kept, new[-1]]
                if await self.store.swap(KEY_NAMESPACE, _RING, raw, _dump(new)):
                    self._install(new, now)
                    return
            raise ConfigurationError("could not agree on the signing key ring with other workers")

    def _install(self, ring: list[SigningKey], now: float) -> None:
        self._keys = ring
        self._loaded_at = now


async def stored_ring(store: Store) -> list[SigningKey]:
    """The signing key ring ``store`` holds, oldest first (empty when there is none yet).

    For tools working on a server's store from outside it (its algorithm is the newest key's).
    """
    raw = await store.get(KEY_NAMESPACE, _RING)
    return [] if raw is None else _load(raw)


def _dump(ring: list[SigningKey]) -> bytes:
    return json.dumps({"keys": [k.to_dict() for k in ring]}, separators=(",", ":")).encode()


def _load(raw: bytes) -> list[SigningKey]:
    return [SigningKey.from_dict(item) for item in json.loads(raw)["keys"]]


def registry_for(alg: str) -> JWSRegistry:
    """A joserfc registry allowing only ``alg``."""
    return JWSRegistry(algorithms=[alg])
