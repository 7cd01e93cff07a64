"""The upstream identity provider described: its endpoints, scopes, identity source and quirks.

An :class:`Upstream` is plain data, the same for every provider (RFC 6749 and RFC 8414
endpoints, OpenID Connect's ``id_token`` or userinfo, RFC 7009 revocation): each of
:mod:`bastion.providers` fills one in, and :class:`~bastion.proxy._upstream_client.UpstreamClient`
does the HTTP. The values exchanged with the provider are here too: the tokens it
issues (:class:`UpstreamTokens`), who signed in (:class:`Identity`), and
:class:`UpstreamError`, whose message names the provider and the HTTP status, never a
token or a secret.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from bastion._core.errors import BastionError

__all__ = ["Identity", "Upstream", "UpstreamError", "UpstreamTokens"]

IdentitySource = Literal["id_token", "userinfo", "github"]


class UpstreamError(BastionError):
    """The upstream identity provider failed, refused, or answered something unusable.

    ``transient``: the provider was down or overloaded (no answer, a 5xx, 429), not refusing.
    """

    description = "The identity provider could not complete the request"

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


@dataclass(frozen=True)
class Upstream:
    """An upstream OAuth 2.0 / OpenID provider as the proxy uses it.

    Args:
        name: Shown to users ("Continue with Google").
        authorization_endpoint: The provider's authorization endpoint.
        token_endpoint: The provider's token endpoint.
        client_id: The client ID of the proxy's one registration at the provider.
        client_secret: Its client secret (``None`` for a public client).
        scopes: The scopes asked of the provider.
        identity: Where the user's identity comes from: ``id_token`` (verified
            against ``jwks_uri`` and ``issuer``), ``userinfo``, or ``github``
            (GitHub's ``/user`` and ``/user/emails``).
        issuer: The provider's issuer, for ``id_token`` verification.
        jwks_uri: The provider's key set, for ``id_token`` verification.
        userinfo_endpoint: For ``userinfo`` (and as a complement to the id_token).
        user_endpoint: A provider's own user endpoint (``github``).
        revocation_endpoint: RFC 7009 revocation, when the provider has it.
        pkce: Whether to send PKCE (S256) to the provider.
        token_auth: ``client_secret_post`` or ``client_secret_basic`` at the token endpoint.
        authorize_params: Extra authorization request parameters (``access_type=offline``...).
        subject_claim: The identity claim that becomes the user's subject.
        extra_issuers: More ``iss`` values accepted on id_tokens (Google also signs
            ``accounts.google.com`` without the scheme).
        required_claims: Identity claims that must have exactly these values (a
            Google Workspace domain in ``hd``); another value refuses the sign-in.
        identity_claims: The identity claims kept (``None``: all of them); the
            subject claim is always kept.
        revocation: ``rfc7009`` (a POST of the token to ``revocation_endpoint``) or
            ``github`` (``DELETE`` of ``{"access_token": ...}`` at ``revocation_endpoint``
            with the client's credentials as basic authentication).
        issuer_template: The id_token's issuer when it depends on the token, with
            claims in braces (Entra ID's multi-tenant
            ``https://login.microsoftonline.com/{tid}/v2.0``); used instead of
            ``issuer``: the token's ``iss`` must equal the template filled with the
            token's own claims (the signature, audience and lifetime are checked as
            always).
        refresh_scope: Whether a refresh request repeats ``scopes`` (Entra ID issues
            the refreshed access token for the resource of the scopes asked).
        roles_claim: The identity claim holding the user's roles, a dotted path
            for nested claims (Keycloak's ``realm_access.roles``); a list of strings.
    """

    name: str
    authorization_endpoint: str
    token_endpoint: str
    client_id: str
    client_secret: str | None = field(default=None, repr=False)
    scopes: tuple[str, ...] = ()
    identity: IdentitySource = "id_token"
    issuer: str | None = None
    jwks_uri: str | None = None
    userinfo_endpoint: str | None = None
    user_endpoint: str | None = None
    revocation_endpoint: str | None = None
    pkce: bool = True
    token_auth: Literal["client_secret_post", "client_secret_basic"] = "client_secret_post"
    authorize_params: Mapping[str, str] = field(default_factory=dict)
    subject_claim: str = "sub"
    #: How the provider exchanges a user's token for one meant for another API: RFC 8693
    #: token exchange, Entra ID's on-behalf-of flow, or not at all.
    token_exchange: Literal["rfc8693", "entra_obo"] | None = None
    extra_issuers: tuple[str, ...] = ()
    required_claims: Mapping[str, str] = field(default_factory=dict)
    identity_claims: tuple[str, ...] | None = None
    revocation: Literal["rfc7009", "github"] = "rfc7009"
    issuer_template: str | None = None
    refresh_scope: bool = False
    roles_claim: str | None = None


@dataclass(frozen=True)
class UpstreamTokens:
    """The provider's tokens for one user, as the proxy keeps them (sealed at rest)."""

    access_token: str = field(repr=False)
    refresh_token: str | None = field(default=None, repr=False)
    expires_at: float | None = None
    scope: str | None = None
    id_token: str | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "expires_at": self.expires_at,
            "scope": self.scope,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> UpstreamTokens:
        return cls(
            access_token=str(data["access_token"]),
            refresh_token=data.get("refresh_token"),
            expires_at=data.get("expires_at"),
            scope=data.get("scope"),
        )

    def fresh_for(self, seconds: float, now: float) -> bool:
        """Whether the access token is valid for at least ``seconds`` more (no expiry: assumed valid)."""
        return self.expires_at is None or self.expires_at - now >= seconds


@dataclass(frozen=True)
class Identity:
    """Who signed in at the provider."""

    subject: str
    name: str | None = None
    email: str | None = None
    claims: Mapping[str, Any] = field(default_factory=dict)
    roles: tuple[str, ...] = ()
