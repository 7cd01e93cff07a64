"""The verified access token and where a handler finds it.

:class:`AccessToken` subclasses the SDK's ``mcp.server.auth.provider.AccessToken`` so
that bastion's verifiers plug into a plain SDK server, and the SDK's own
``get_access_token()`` returns the same object as ours: both read the SDK's
``auth_context_var``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from mcp.server.auth.middleware.auth_context import auth_context_var
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken as SDKAccessToken
from pydantic import ConfigDict, Field, PrivateAttr

from bastion._core.errors import NoAccessToken, UpstreamUnavailable

__all__ = [
    "NOT_PROXIED",
    "AccessToken",
    "get_access_token",
    "get_access_token_or_none",
    "proxied_by",
    "verified_access_token",
]


class AccessToken(SDKAccessToken):
    """A verified credential: who is calling, for which client, with which scopes.

    Attributes:
        token: The raw credential. Never logged or shown in ``repr``.
        client_id: The OAuth client the token was issued to (``client_id``/``azp``).
        subject: The resource owner (``sub``), unique per issuer.
        scopes: The scopes granted.
        roles: The roles granted (from the verifier's roles claim).
        expires_at: Expiry as seconds since the epoch, or ``None``.
        resource: The resource (RFC 8707 audience) the token was issued for.
        issuer: The token's issuer (``iss``), where known.
        claims: Every claim of the token, for application-specific use (``email``
            and ``name`` have properties of their own; a proxy adds the provider's
            user fields, such as GitHub's ``login``).
    """

    model_config = ConfigDict(frozen=True)

    token: str = Field(repr=False)
    roles: list[str] = Field(default_factory=list)
    issuer: str | None = None

    def expired(self, now: float | None = None) -> bool:
        """Whether the token has expired at ``now`` (default: the current time)."""
        if self.expires_at is None:
            return False
        return (time.time() if now is None else now) >= self.expires_at

    def claim(self, name: str, default: Any = None) -> Any:
        """One claim of the token, or ``default``."""
        return (self.claims or {}).get(name, default)

    @property
    def email(self) -> str | None:
        """The user's email address (the ``email`` claim), when the token carries one."""
        value = self.claim("email")
        return value if isinstance(value, str) else None

    @property
    def name(self) -> str | None:
        """The user's display name (the ``name`` claim), when the token carries one."""
        value = self.claim("name")
        return value if isinstance(value, str) else None

    #: Set by an OAuth proxy's verifier: what :meth:`upstream` asks for the provider's token.
    _upstream_source: Any = PrivateAttr(default=None)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in self.__private_attributes__:
            # Tokens built by one verifier share their private values (see verified_access_token):
            # a change to one token's gets a copy of its own.
            private = dict(self.__pydantic_private__ or {})
            private[name] = value
            object.__setattr__(self, "__pydantic_private__", private)
            return
        super().__setattr__(name, value)

    async def upstream(self) -> str:
        """The upstream identity provider's access token for this user, valid for at least a minute.

        Only for tokens issued by a bastion OAuth proxy (``bastion.providers``): the
        provider's token is refreshed first when it is about to expire.

        Raises:
            UpstreamUnavailable: the token was not issued by a proxy, or the upstream
                sign-in is gone (the user must sign in again).
        """
        source = self._upstream_source
        if source is None:
            raise UpstreamUnavailable("this access token was not issued by an OAuth proxy")
        token: str = await source.upstream_token(self)
        return token

    async def exchange(self, *, audience: str | None = None, scopes: Sequence[str] = ()) -> str:
        """An upstream token for another API (``audience``, ``scopes``), acting for this user.

        Uses the provider's RFC 8693 token exchange, or Entra ID's on-behalf-of
        flow; only for tokens issued by a bastion OAuth proxy whose provider
        supports one of them.

        Raises:
            UpstreamUnavailable: not a proxy's token, no exchange at this provider,
                the upstream sign-in is gone, or the provider refused.
        """
        source = self._upstream_source
        if source is None:
            raise UpstreamUnavailable("this access token was not issued by an OAuth proxy")
        token: str = await source.exchange_token(self, audience, scopes)
        return token


#: What pydantic records as set for a token whose every field a verifier gave.
_EVERY_FIELD = frozenset(AccessToken.model_fields)
#: The private values of a token no OAuth proxy issued, shared by all such tokens.
NOT_PROXIED: dict[str, Any] = {"_upstream_source": None}


def proxied_by(source: Any) -> dict[str, Any]:
    """The private values of tokens issued by ``source`` (an OAuth proxy), for :func:`verified_access_token`."""
    return {"_upstream_source": source}


def verified_access_token(fields: dict[str, Any], private: dict[str, Any] = NOT_PROXIED) -> AccessToken:
    """An :class:`AccessToken` of ``fields`` that a verifier has already type-checked.

    Pydantic's validation copies every list and dict it is given and records the fields
    set in a new set: about 1 KB and several microseconds per token, for values already
    checked claim by claim. ``fields`` must hold every field with its declared type; they
    and ``private`` are kept, not copied (``private`` may be shared by every token of one
    verifier).
    """
    token = object.__new__(AccessToken)
    setattr_ = object.__setattr__
    setattr_(token, "__dict__", fields)
    setattr_(token, "__pydantic_fields_set__", _EVERY_FIELD)
    setattr_(token, "__pydantic_extra__", None)
    setattr_(token, "__pydantic_private__", private)
    return token


def get_access_token_or_none() -> AccessToken | None:
    """The access token of the request being handled, or ``None`` outside of one."""
    user = auth_context_var.get()
    if user is None:
        return None
    token = user.access_token
    if isinstance(token, AccessToken):
        return token
    # A token verified by an SDK verifier that is not one of ours.
    return AccessToken(**token.model_dump())


def get_access_token() -> AccessToken:
    """The verified access token of the request being handled.

    Works in any tool, resource or prompt handler, and in custom routes and
    policies of a bastion-protected server.

    Raises:
        NoAccessToken: when called outside an authenticated request.
    """
    token = get_access_token_or_none()
    if token is None:
        raise NoAccessToken("get_access_token() was called outside an authenticated request")
    return token


def authenticated_user(token: AccessToken) -> AuthenticatedUser:
    """The SDK's user object for ``scope["user"]`` and ``auth_context_var``."""
    return AuthenticatedUser(token)
