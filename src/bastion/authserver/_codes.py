"""Authorization codes: random, stored hashed, about a minute of life, redeemed once.

A code's record is claimed by a compare-and-set from "issued" to "used", so of
any number of concurrent redemptions (in any worker process) exactly one wins.
A used record is kept a while longer: a second redemption of the same code is
an attack or a bug, and revokes every token the first one produced (RFC 6749
section 4.1.2, OAuth 2.1 section 4.1.3).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from bastion.authserver._errors import InvalidGrant
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

    async def redeem(self, code: str, client_id: str) -> CodeGrant:
        """Claim ``code`` for ``client_id``; exactly one concurrent caller succeeds.

        Raises:
            InvalidGrant: the code is unknown, expired, another client's, or was
                redeemed before (then the tokens of its first redemption are revoked).
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
            if record["state"] == "used":
                await self._on_replay(grant)
                raise InvalidGrant("the authorization code was already used")
            used = _dump({"state": "used", "grant": record["grant"]})
            if await self.store.swap(CODE_NAMESPACE, key, raw, used, REPLAY_WINDOW):
                return grant
            raw = await self.store.get(CODE_NAMESPACE, key)
        raise InvalidGrant("the authorization code was already used")


def _dump(record: dict[str, Any]) -> bytes:
    return json.dumps(record, separators=(",", ":")).encode()
