"""Refresh tokens: random, stored hashed, bound to their client, rotated on every use.

RFC 6749 section 6 and 10.4, OAuth 2.1 section 4.3.1, RFC 9700 section 4.14.2:

- A refresh token is 256 random bits; the store keeps only its SHA-256, with the
  grant id as secondary key so that revoking the grant deletes the whole family.
- Each use rotates it: the old token's record goes from ``active`` to ``rotated``
  with one compare-and-set (:meth:`~bastion.storage.Store.swap`), so of many
  concurrent refreshes, in any number of worker processes, exactly one rotates.
  The successor's record is written *before* that swap: whoever wins has a
  successor that already exists; the losers delete theirs.
- A rotated token presented again before its successor was first used is a
  retry (the answer was lost: the server stopped after the commit, the
  connection dropped; or requests raced): it gets the same successor pair,
  however long the server took to come back, up to ``TokenLifetimes.refresh_grace``
  (days) after the rotation. Presented after its successor was used, or past that
  bound, it was copied: the whole family is revoked. A retried successor
  follows the same rule: A rotated to B, B to C, C unused: B gets C back; A
  revokes the family, B having been used.
- The successor pair is kept sealed with AES-GCM under a key derived
  (HKDF-SHA256) from the old refresh token itself: the store holds only hashes
  and ciphertext, and whoever can open the sealed pair already holds the old
  token. The successor's first use drops it from the old token's record. The
  replayed access token keeps its expiry: ``expires_in`` counts down.
- A refresh token issued to a public client with a DPoP proof is bound to the proof's
  key (RFC 9449 section 5): its record keeps the key's thumbprint, each use needs a
  proof of that key (none: ``invalid_dpop_proof``; another key's: ``invalid_grant``,
  the token unspent), and its successor is bound to the same key. A confidential
  client's refresh tokens are bound to its authentication instead, not to a key; its
  access tokens are bound to the key of each request's proof. A retry gets the sealed
  pair only with a proof of the key of the request it retries, whose access token is
  bound to that key.
- The successor has the scope of the token it replaces (RFC 6749 section 6);
  only the access token's scope may be narrowed, and its audience is one of the
  resources the grant was given (RFC 8707 section 2.2).
"""

from __future__ import annotations

import base64
import dataclasses
import hmac
import json
import os
import secrets
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from bastion.authserver._errors import InvalidDPoPProofError, InvalidGrant, InvalidScope, InvalidTarget
from bastion.authserver._grant_records import REFRESH_NAMESPACE
from bastion.authserver._models import Client, TokenSet, User, as_scopes, hash_secret

if TYPE_CHECKING:
    from bastion.authserver._server import AuthorizationServer

__all__ = ["REFRESH_NAMESPACE", "RefreshTokens", "TokenSet"]

_HKDF_INFO = b"bastion refresh token successor v1"
_NONCE_BYTES = 12


def _sealing_key(token: str, salt: bytes) -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=_HKDF_INFO)
    return hkdf.derive(token.encode("utf-8", "surrogatepass"))


def seal(token: str, record_key: str, tokens: TokenSet) -> str:
    """``tokens`` encrypted under a key derived from ``token``, bound to the record it is kept in."""
    nonce = os.urandom(_NONCE_BYTES)
    aead = AESGCM(_sealing_key(token, record_key.encode()))
    sealed = nonce + aead.encrypt(nonce, tokens.to_json(), record_key.encode())
    return base64.urlsafe_b64encode(sealed).decode("ascii")


def unseal(token: str, record_key: str, sealed: str) -> TokenSet | None:
    """The inverse of :func:`seal`, or ``None`` when it does not open."""
    try:
        raw = base64.urlsafe_b64decode(sealed.encode("ascii"))
        aead = AESGCM(_sealing_key(token, record_key.encode()))
        plain = aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], record_key.encode())
        return TokenSet.from_json(plain)
    except (InvalidTag, ValueError, KeyError, TypeError):
        return None


def _dump(record: dict[str, Any]) -> bytes:
    return json.dumps(record, separators=(",", ":"), sort_keys=True).encode()


class RefreshTokens:
    """Issues and rotates the refresh tokens of one :class:`AuthorizationServer`."""

    def __init__(self, server: AuthorizationServer) -> None:
        self.server = server

    async def issue(
        self,
        *,
        client_id: str,
        user: User,
        scopes: tuple[str, ...],
        resources: tuple[str, ...],
        grant_id: str,
        parent: str | None = None,
        jkt: str | None = None,
    ) -> str:
        """A new refresh token of grant ``grant_id``, stored under its hash.

        ``resources`` are the audiences the grant was given; the first is the default.
        ``jkt``: the thumbprint of the DPoP key it is bound to (a public client's).
        """
        token, record = self._new(client_id, user, scopes, resources, grant_id, parent, jkt)
        await self._store(token, record)
        return token

    def _new(
        self,
        client_id: str,
        user: User,
        scopes: tuple[str, ...],
        resources: tuple[str, ...],
        grant_id: str,
        parent: str | None,
        jkt: str | None,
    ) -> tuple[str, dict[str, Any]]:
        now = self.server.clock()
        record: dict[str, Any] = {
            "state": "active",
            "client_id": client_id,
            "user": user.to_dict(),
            "scopes": list(scopes),
            "resources": list(resources),
            "grant_id": grant_id,
            "issued_at": now,
            "expires_at": now + self.server.lifetimes.refresh_token,
        }
        if parent is not None:
            record["parent"] = parent
        if jkt is not None:
            record["jkt"] = jkt
        return secrets.token_urlsafe(32), record

    async def _store(self, token: str, record: dict[str, Any]) -> None:
        await self.server.store.put(
            REFRESH_NAMESPACE,
            hash_secret(token),
            _dump(record),
            self.server.lifetimes.refresh_token,
            index=record["grant_id"],
        )

    async def discard(self, token: str) -> None:
        """Delete a refresh token that must not be used (its grant was revoked meanwhile)."""
        await self.server.store.delete(REFRESH_NAMESPACE, hash_secret(token))

    async def lookup(self, token: str) -> dict[str, Any] | None:
        """The live record of ``token`` (active or rotated), or ``None``."""
        raw = await self.server.store.get(REFRESH_NAMESPACE, hash_secret(token))
        return None if raw is None else dict(json.loads(raw))

    async def rotate(
        self,
        token: str,
        client: Client,
        requested_scope: str | None = None,
        resource: str | None = None,
        *,
        jkt: str | None = None,
    ) -> TokenSet:
        """Redeem ``token`` for a new access token and its successor refresh token.

        ``jkt`` is the thumbprint of the request's DPoP proof key: the new access token is
        bound to it, and a public client's successor refresh token too.

        Raises:
            InvalidGrant: the token is unknown, expired, another client's, revoked,
                or was presented again after its successor was used or past
                ``TokenLifetimes.refresh_grace`` (then its family is revoked); bound to
                another DPoP key than ``jkt``.
            InvalidDPoPProofError: the token is bound to a DPoP key and ``jkt`` is ``None``.
            InvalidScope: ``requested_scope`` goes beyond the token's scope.
            InvalidTarget: ``resource`` is not one the grant was given.
        """
        store = self.server.store
        key = hash_secret(token)
        raw = await store.get(REFRESH_NAMESPACE, key)
        if raw is None:
            raise InvalidGrant("the refresh token is invalid, expired or revoked")
        record = json.loads(raw)
        if record["client_id"] != client.client_id:
            raise InvalidGrant("the refresh token was issued to another client")
        _check_binding(record, jkt)
        grant_id = record["grant_id"]
        if await self.server.grants.is_revoked(grant_id):
            raise InvalidGrant("the refresh token is invalid, expired or revoked")
        if record["state"] != "active":
            return await self._replay(token, key, record, jkt)
        scopes = _narrow(tuple(record["scopes"]), requested_scope)
        audience = self._audience(tuple(record["resources"]), resource)

        user = User.from_dict(record["user"])
        await self.server.check_grant(user)
        successor, successor_record = self._new(
            client.client_id,
            user,
            tuple(record["scopes"]),
            tuple(record["resources"]),
            grant_id,
            key,
            jkt if client.is_public else None,
        )
        now = self.server.clock()
        access_token, expires_in = await self.server.access_tokens.mint(
            client_id=client.client_id,
            subject=user.subject,
            scopes=scopes,
            resource=audience,
            grant_id=grant_id,
            user=user,
            jkt=jkt,
        )
        tokens = TokenSet(
            access_token,
            expires_in,
            scopes,
            successor,
            now,
            subject=user.subject,
            grant_id=grant_id,
            resource=audience,
            jkt=jkt,
        )
        # The successor exists before the swap: whoever wins hands out a token that works.
        await self._store(successor, successor_record)
        rotated = _dump({**record, "state": "rotated", "rotated_at": now, "sealed": seal(token, key, tokens)})
        if await store.swap(REFRESH_NAMESPACE, key, raw, rotated, self._remaining(record)):
            if await self.server.grants.is_revoked(grant_id):
                # A reuse elsewhere revoked the family between our checks and the swap.
                await self.discard(successor)
                raise InvalidGrant("the refresh token is invalid, expired or revoked")
            await self._forget_parent(record)
            await self.server.grants.extend(grant_id)
            await self.server.audit.emit(
                "refresh.rotated",
                "success",
                subject=user.subject,
                client_id=client.client_id,
                grant_id=grant_id,
                scopes=scopes,
                resource=audience,
            )
            return tokens
        # Another request rotated it first: answer as a retry does.
        await self.discard(successor)
        current = await store.get(REFRESH_NAMESPACE, key)
        if current is None:
            raise InvalidGrant("the refresh token is invalid, expired or revoked")
        return await self._replay(token, key, json.loads(current), jkt)

    async def _replay(self, token: str, key: str, record: dict[str, Any], jkt: str | None) -> TokenSet:
        """A rotated token presented again: its successor pair while that successor is unused, else revocation."""
        now = self.server.clock()
        sealed = record.get("sealed")
        rotated_at = float(record.get("rotated_at", 0.0))
        within_grace = now - rotated_at <= self.server.lifetimes.refresh_grace
        tokens = None
        if isinstance(sealed, str) and within_grace:
            tokens = unseal(token, key, sealed)
        grant_id = record["grant_id"]
        who = {"subject": record["user"]["subject"], "client_id": record["client_id"], "grant_id": grant_id}
        if tokens is None or not await self._unused(tokens):
            # RFC 9700 section 4.14.2: reuse of a rotated token revokes the whole family.
            late = isinstance(sealed, str) and not within_grace
            reason = "presented again past the retry period" if late else "presented again after its successor was used"
            await self.server.audit.emit("refresh.reuse_detected", "refused", **who, reason=reason)
            await self.server.revoke_grant(grant_id, reason="refresh token reuse")
            raise InvalidGrant("the refresh token was already used")
        if await self.server.grants.is_revoked(grant_id):
            raise InvalidGrant("the refresh token is invalid, expired or revoked")
        if tokens.jkt != jkt:
            # The sealed access token is bound to the first request's key (or to none).
            raise InvalidGrant(
                "a retried refresh needs a DPoP proof of the first request's key, or none as it had none"
            )
        await self.server.audit.emit(
            "refresh.replayed", "success", **who, reason="a retry before the successor was used"
        )
        return dataclasses.replace(tokens, subject=who["subject"], grant_id=grant_id)

    async def _unused(self, tokens: TokenSet) -> bool:
        """Whether the successor refresh token of ``tokens`` was never redeemed.

        Asked of the successor's own record, not only of the parent's sealed pair,
        so a server stopped between the successor's rotation and the parent's
        clean-up still sees the successor as used.
        """
        if tokens.refresh_token is None:
            return False
        successor = await self.lookup(tokens.refresh_token)
        return successor is not None and successor["state"] == "active"

    async def _forget_parent(self, record: dict[str, Any]) -> None:
        """The token just rotated was used for the first time: drop the sealed pair kept for its parent."""
        parent = record.get("parent")
        if not isinstance(parent, str):
            return
        store = self.server.store
        raw = await store.get(REFRESH_NAMESPACE, parent)
        if raw is None:
            return
        parent_record = json.loads(raw)
        if "sealed" not in parent_record:
            return
        del parent_record["sealed"]
        # Lost races are harmless: whoever won wrote the same thing, or revoked the family.
        await store.swap(REFRESH_NAMESPACE, parent, raw, _dump(parent_record), self._remaining(parent_record))

    def _remaining(self, record: dict[str, Any]) -> float:
        """Seconds the record has left (at least one, so a swap never writes an expired record)."""
        return max(1.0, float(record["expires_at"]) - self.server.clock())

    def _audience(self, resources: tuple[str, ...], requested: str | None) -> str:
        if requested is None:
            if not resources:
                return self.server.resolve_resource(None)
            return resources[0]
        audience = self.server.resolve_resource(requested)
        if audience not in resources:
            raise InvalidTarget("the resource was not part of the original grant")
        return audience


def _check_binding(record: dict[str, Any], jkt: str | None) -> None:
    """A refresh token bound to a DPoP key goes only with a proof of that key (RFC 9449 section 5)."""
    bound = record.get("jkt")
    if not isinstance(bound, str):
        return
    if jkt is None:
        raise InvalidDPoPProofError(
            "the refresh token is bound to a DPoP key: send a DPoP proof of that key",
            reason="no proof for a refresh token bound to a key",
        )
    if not hmac.compare_digest(jkt.encode(), bound.encode()):
        raise InvalidGrant("the refresh token is bound to another DPoP key")


def _narrow(granted: tuple[str, ...], requested: str | None) -> tuple[str, ...]:
    """The requested scopes, which must all have been granted (RFC 6749 section 6)."""
    if requested is None:
        return granted
    scopes = as_scopes(requested)
    beyond = [scope for scope in scopes if scope not in granted]
    if beyond:
        raise InvalidScope("a requested scope was not granted", detail=f"the scope {beyond[0][:60]!r} was not granted")
    return scopes
