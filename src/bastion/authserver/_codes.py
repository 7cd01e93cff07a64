"""Authorization codes: random, stored hashed, about a minute of life, redeemed once.

A code's record is claimed by a compare-and-set from "issued" to "used", so of
any number of concurrent redemptions (in any worker process) exactly one wins.
A used record is kept a while longer: a second redemption of the same code is
an attack or a bug, and revokes every token the first one produced (RFC 6749
section 4.1.2, OAuth 2.1 section 4.1.3).

A code whose authorization request carried ``dpop_jkt`` (RFC 9449 section 10) is
redeemed only with a DPoP proof of that key; a request without one, or with another
key's, is refused and leaves the code unspent, as a request of another client does:
whoever captured the code cannot spoil it for the client holding the key.
"""

from __future__ import annotations

import hmac
import json
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from bastion.authserver._errors import InvalidDPoPProofError, InvalidGrant
from bastion.authserver._models import User, hash_secret
from bastion.storage import Store

__all__ = ["CODE_NAMESPACE", "CodeGrant", "CodeStore"]

CODE_NAMESPACE = "code"
#: How long a used code is remembered to detect its replay.
REPLAY_WINDOW = 600.0


@dataclass(frozen=True)
class CodeGrant:
    """What an authorization code stands for."""

    client_id: str
    redirect_uri: str
    #: Whether the authorization request carried ``redirect_uri`` (then the token request must too).
    redirect_uri_sent: bool
    code_challenge: str
    scopes: tuple[str, ...]
    resource: str
    user: User
    grant_id: str
    auth_time: int
    extra: dict[str, Any] = field(default_factory=dict)
    #: The ``dpop_jkt`` of the authorization request: the thumbprint of the only key that may redeem it.
    dpop_jkt: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "client_id": self.client_id,
            "redirect_uri": self.redirect_uri,
            "redirect_uri_sent": self.redirect_uri_sent,
            "code_challenge": self.code_challenge,
            "scopes": list(self.scopes),
            "resource": self.resource,
            "user": self.user.to_dict(),
            "grant_id": self.grant_id,
            "auth_time": self.auth_time,
            "extra": self.extra,
            "dpop_jkt": self.dpop_jkt,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CodeGrant:
        """The inverse of :meth:`to_dict`."""
        return cls(
            client_id=data["client_id"],
            redirect_uri=data["redirect_uri"],
            redirect_uri_sent=bool(data["redirect_uri_sent"]),
            code_challenge=data["code_challenge"],
            scopes=tuple(data["scopes"]),
            resource=data["resource"],
            user=User.from_dict(data["user"]),
            grant_id=data["grant_id"],
            auth_time=int(data["auth_time"]),
            extra=dict(data.get("extra") or {}),
            dpop_jkt=data.get("dpop_jkt"),
        )


class CodeStore:
    """Issues and redeems authorization codes in a :class:`~bastion.storage.Store`.

    Args:
        store: Where code records live (only their SHA-256 is the key).
        ttl: The code's life in seconds (OAuth 2.1 recommends a short one; 60 by default).
        on_replay: Called with the code's grant when a used code is presented again;
            it revokes the grant (and reports the replay).
    """

    def __init__(self, store: Store, *, ttl: float = 60.0, on_replay: Callable[[CodeGrant], Awaitable[None]]) -> None:
        self.store = store
        self.ttl = ttl
        self._on_replay = on_replay

    async def issue(self, grant: CodeGrant) -> str:
        """A new code for ``grant``."""
        code = secrets.token_urlsafe(32)
        record = {"state": "issued", "grant": grant.to_dict()}
        await self.store.put(CODE_NAMESPACE, hash_secret(code), _dump(record), self.ttl)
        return code

    async def redeem(self, code: str, client_id: str, jkt: str | None = None) -> CodeGrant:
        """Claim ``code`` for ``client_id``, whose DPoP proof's key is ``jkt``; exactly one concurrent caller succeeds.

        Raises:
            InvalidGrant: the code is unknown, expired, another client's, bound to another
                DPoP key, or was redeemed before (then the tokens of its first redemption
                are revoked).
            InvalidDPoPProofError: the code is bound to a DPoP key and the request has no proof.
        """
        key = hash_secret(code)
        raw = await self.store.get(CODE_NAMESPACE, key)
        for _ in range(2):
            if raw is None:
                raise InvalidGrant("the authorization code is invalid or expired")
            record = json.loads(raw)
            grant = CodeGrant.from_dict(record["grant"])
            if grant.client_id != client_id:
                # Not burnt: a client that is not the code's owner must not be able to spoil it.
                raise InvalidGrant("the authorization code was issued to another client")
            _check_binding(grant, jkt)
            if record["state"] == "used":
                await self._on_replay(grant)
                raise InvalidGrant("the authorization code was already used")
            used = _dump({"state": "used", "grant": record["grant"]})
            if await self.store.swap(CODE_NAMESPACE, key, raw, used, REPLAY_WINDOW):
                return grant
            raw = await self.store.get(CODE_NAMESPACE, key)
        raise InvalidGrant("the authorization code was already used")


def _check_binding(grant: CodeGrant, jkt: str | None) -> None:
    """A code bound by ``dpop_jkt`` goes only with a proof of that key (RFC 9449 section 10); not burnt."""
    if grant.dpop_jkt is None:
        return
    if jkt is None:
        raise InvalidDPoPProofError(
            "the authorization code is bound to a DPoP key (dpop_jkt): send a DPoP proof",
            reason="no proof for a code bound by dpop_jkt",
        )
    if not hmac.compare_digest(jkt.encode(), grant.dpop_jkt.encode()):
        raise InvalidGrant("the authorization code is bound to another DPoP key (dpop_jkt)")


def _dump(record: dict[str, Any]) -> bytes:
    return json.dumps(record, separators=(",", ":")).encode()
