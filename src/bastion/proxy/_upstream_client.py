"""The proxy's HTTP conversations with its upstream identity provider.

:class:`UpstreamClient` talks to the provider an :class:`~bastion.proxy.Upstream`
describes: the code exchange and refreshes at the token endpoint (RFC 6749 sections
4.1.3 and 6, with PKCE, RFC 7636), the user's identity (a verified OpenID Connect
``id_token``, the userinfo endpoint, or a provider's own user endpoint such as GitHub's
``/user``) and revocation (RFC 7009, or GitHub's own). Every call has a deadline and
a size limit, and a provider that answers badly raises :class:`~bastion.proxy.UpstreamError`,
whose message names the provider and the HTTP status, never a token or a secret.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import string
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import httpx2

from bastion._core import telemetry
from bastion._core.errors import InvalidToken
from bastion._core.http import DEFAULT_TIMEOUT, FetchError, fetch_json, http_client
from bastion._resource.jwt import ClaimNames, JWTVerifier
from bastion.proxy._upstream import Identity, Upstream, UpstreamError, UpstreamTokens

__all__ = ["UpstreamClient", "pkce_pair"]

_T = TypeVar("_T")

#: The ``operation`` of a token request in the metrics and spans, by grant type (anything else: ``token``).
_OPERATIONS = {"authorization_code": "code", "refresh_token": "refresh"}


def pkce_pair() -> tuple[str, str]:
    """A fresh ``(code_verifier, S256 code_challenge)``."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


class UpstreamClient:
    """The proxy's HTTP conversations with one :class:`Upstream`."""

    def __init__(
        self, upstream: Upstream, *, timeout: float = DEFAULT_TIMEOUT, clock: Callable[[], float] = time.time
    ) -> None:
        self.upstream = upstream
        self.timeout = timeout
        self.clock = clock
        self._id_tokens: JWTVerifier | None = None

    def _client(self) -> httpx2.AsyncClient:
        return http_client(self.timeout)

    def _auth(self, data: dict[str, str]) -> dict[str, Any]:
        """The client authentication for a token or revocation request."""
        up = self.upstream
        if up.client_secret is not None and up.token_auth == "client_secret_basic":
            return {"data": data, "auth": httpx2.BasicAuth(up.client_id, up.client_secret)}
        data = {**data, "client_id": up.client_id}
        if up.client_secret is not None:
            data["client_secret"] = up.client_secret
        return {"data": data}

    def _observed(self, operation: str, call: Callable[[], Awaitable[_T]]) -> Awaitable[_T]:
        """``call()``, timed and in a span when bastion is instrumented."""
        observer = telemetry.active
        return call() if observer is None else observer.upstream(self.upstream.name, operation, call)

    async def token_request(self, data: dict[str, str]) -> UpstreamTokens:
        """One request to the token endpoint (any grant), with the client authentication."""
        operation = _OPERATIONS.get(data.get("grant_type", ""), "token")
        return await self._observed(operation, lambda: self._token_request(data))

    async def _token_request(self, data: dict[str, str]) -> UpstreamTokens:
        name = self.upstream.name
        try:
            async with self._client() as http:
                _, body = await fetch_json(
                    http,
                    "POST",
                    self.upstream.token_endpoint,
                    headers={"Accept": "application/json"},
                    **self._auth(data),
                )
        except FetchError as exc:
            raise UpstreamError(f"{name}'s token endpoint failed: {_reason(exc)}", transient=exc.transient) from None
        if not isinstance(body, dict):
            raise UpstreamError(f"{name}'s token endpoint answered something that is not a JSON object")
        if "error" in body:
            # GitHub answers errors with HTTP 200.
            raise UpstreamError(f"{name} refused the token request: {str(body.get('error'))[:60]}")
        token = body.get("access_token")
        if not isinstance(token, str) or not token:
            raise UpstreamError(f"{name}'s token response has no access_token")
        expires_in = body.get("expires_in")
        expires_at = None
        if isinstance(expires_in, (int, float)) and not isinstance(expires_in, bool) and 0 < expires_in < 10**9:
            expires_at = self.clock() + float(expires_in)
        refresh = body.get("refresh_token")
        id_token = body.get("id_token")
        scope = body.get("scope")
        return UpstreamTokens(
            access_token=token,
            refresh_token=refresh if isinstance(refresh, str) and refresh else None,
            expires_at=expires_at,
            scope=scope if isinstance(scope, str) else None,
            id_token=id_token if isinstance(id_token, str) else None,
        )

    async def exchange_code(self, code: str, redirect_uri: str, code_verifier: str | None) -> UpstreamTokens:
        """Redeem the provider's authorization code."""
        data = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
        if code_verifier is not None:
            data["code_verifier"] = code_verifier
        return await self.token_request(data)

    async def refresh(self, tokens: UpstreamTokens) -> UpstreamTokens:
        """New tokens from the refresh token; the old refresh token is kept when none is returned."""
        if tokens.refresh_token is None:
            raise UpstreamError(f"{self.upstream.name} gave no refresh token")
        data = {"grant_type": "refresh_token", "refresh_token": tokens.refresh_token}
        if self.upstream.refresh_scope and self.upstream.scopes:
            data["scope"] = " ".join(self.upstream.scopes)
        fresh = await self.token_request(data)
        if fresh.refresh_token is None:
            fresh = UpstreamTokens(fresh.access_token, tokens.refresh_token, fresh.expires_at, fresh.scope)
        return fresh

    async def revoke(self, tokens: UpstreamTokens) -> None:
        """Revoke the tokens at the provider, when it has a revocation endpoint.

        Best effort: a failure or a refusal is neither raised nor logged; the caller
        keeps no copy of the tokens, which expire at the provider in time.
        """
        await self._observed("revoke", lambda: self._revoke(tokens))

    async def _revoke(self, tokens: UpstreamTokens) -> None:
        endpoint = self.upstream.revocation_endpoint
        if endpoint is None:
            return
        if self.upstream.revocation == "github":
            await self._revoke_github(endpoint, tokens.access_token)
            return
        for token, hint in ((tokens.refresh_token, "refresh_token"), (tokens.access_token, "access_token")):
            if token is None:
                continue
            try:
                async with self._client() as http:
                    await http.post(endpoint, **self._auth({"token": token, "token_type_hint": hint}))
            except httpx2.HTTPError:
                return

    async def _revoke_github(self, endpoint: str, access_token: str) -> None:
        """GitHub's ``DELETE /applications/{client_id}/token``: that one token, not the user's other sign-ins."""
        up = self.upstream
        if up.client_secret is None:
            return
        try:
            async with self._client() as http:
                await http.request(
                    "DELETE",
                    endpoint,
                    json={"access_token": access_token},
                    auth=httpx2.BasicAuth(up.client_id, up.client_secret),
                    headers={"Accept": "application/vnd.github+json"},
                )
        except httpx2.HTTPError:
            return

    async def identity(self, tokens: UpstreamTokens, nonce: str | None) -> Identity:
        """The signed-in user, from the source the provider is configured with."""
        return await self._observed("identity", lambda: self._identity(tokens, nonce))

    async def _identity(self, tokens: UpstreamTokens, nonce: str | None) -> Identity:
        up = self.upstream
        if up.identity == "id_token":
            claims = await self._id_token_claims(tokens, nonce)
            if up.userinfo_endpoint is not None and not claims.get("email"):
                claims = {**await self._get_json(up.userinfo_endpoint, tokens.access_token), **claims}
        elif up.identity == "userinfo":
            if up.userinfo_endpoint is None:
                raise UpstreamError(f"{up.name} has no userinfo endpoint configured")
            claims = await self._get_json(up.userinfo_endpoint, tokens.access_token)
        else:
            claims = await self._github_user(tokens.access_token)
        subject = claims.get(up.subject_claim)
        if isinstance(subject, int) and not isinstance(subject, bool):
            subject = str(subject)
        if not isinstance(subject, str) or not subject:
            raise UpstreamError(f"{up.name} did not say who signed in ({up.subject_claim} is missing)")
        for claim, expected in up.required_claims.items():
            if claims.get(claim) != expected:
                raise UpstreamError(f"{up.name} signed in an account outside the allowed {claim} ({expected[:100]})")
        roles = _roles(claims, up.roles_claim) if up.roles_claim is not None else ()
        if up.identity_claims is not None:
            kept = {*up.identity_claims, up.subject_claim}
            claims = {name: value for name, value in claims.items() if name in kept}
        name = claims.get("name") or claims.get("login")
        email = claims.get("email")
        return Identity(
            subject=subject,
            name=name if isinstance(name, str) else None,
            email=email if isinstance(email, str) else None,
            claims=claims,
            roles=roles,
        )

    async def _id_token_claims(self, tokens: UpstreamTokens, nonce: str | None) -> dict[str, Any]:
        up = self.upstream
        if tokens.id_token is None:
            raise UpstreamError(f"{up.name} returned no id_token (is the openid scope requested?)")
        if up.jwks_uri is None or (up.issuer is None and up.issuer_template is None):
            raise UpstreamError(f"{up.name} has no issuer or jwks_uri configured to verify its id_token")
        if self._id_tokens is None:
            self._id_tokens = JWTVerifier(
                jwks_uri=up.jwks_uri,
                # With a template the issuer depends on the token: checked below, once the signature is.
                issuer=(up.issuer, *up.extra_issuers) if up.issuer_template is None and up.issuer else None,
                audience=up.client_id,
                claims=ClaimNames(roles=None),
                clock=self.clock,
            )
        try:
            verified = await self._id_tokens.check(tokens.id_token)
        except InvalidToken as exc:
            raise UpstreamError(f"{up.name}'s id_token was refused: {exc.description}") from None
        claims = dict(verified.claims or {})
        if up.issuer_template is not None and claims.get("iss") != _templated_issuer(up.issuer_template, claims):
            raise UpstreamError(f"{up.name}'s id_token was refused: its issuer does not match its own claims")
        if nonce is not None and claims.get("nonce") != nonce:
            raise UpstreamError(f"{up.name}'s id_token does not carry the nonce of this sign-in")
        return claims

    async def _get_json(self, url: str, access_token: str) -> dict[str, Any]:
        try:
            async with self._client() as http:
                _, body = await fetch_json(
                    http,
                    "GET",
                    url,
                    headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"},
                )
        except FetchError as exc:
            raise UpstreamError(f"{self.upstream.name}'s user endpoint failed: {_reason(exc)}") from None
        if not isinstance(body, dict):
            raise UpstreamError(f"{self.upstream.name}'s user endpoint answered something that is not a JSON object")
        return body

    async def _github_user(self, access_token: str) -> dict[str, Any]:
        up = self.upstream
        base = (up.user_endpoint or "https://api.github.com/user").rstrip("/")
        user = await self._get_json(base, access_token)
        if not user.get("email"):
            # A private email is not in /user; /user/emails lists it (with the user:email scope).
            try:
                emails = await self._get_json_list(base + "/emails", access_token)
            except UpstreamError:
                emails = []
            primary = [e for e in emails if isinstance(e, dict) and e.get("primary") and e.get("verified")]
            if primary and isinstance(primary[0].get("email"), str):
                user["email"] = primary[0]["email"]
        return user

    async def _get_json_list(self, url: str, access_token: str) -> Sequence[Any]:
        try:
            async with self._client() as http:
                _, body = await fetch_json(
                    http, "GET", url, headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"}
                )
        except FetchError as exc:
            raise UpstreamError(f"{self.upstream.name}'s user endpoint failed: {_reason(exc)}") from None
        return body if isinstance(body, list) else []

    async def aclose(self) -> None:
        """Release the id_token verifier's resources."""
        if self._id_tokens is not None:
            await self._id_tokens.aclose()


#: A claim filling an issuer template: an identifier, never a path, a query or another host.
_TEMPLATE_VALUE = re.compile(r"[A-Za-z0-9._-]{1,128}")
#: At most this many roles are kept, each at most this long.
_MAX_ROLES = 100
_MAX_ROLE_LENGTH = 256


def _templated_issuer(template: str, claims: Mapping[str, Any]) -> str | None:
    """``template`` filled with the token's claims; ``None`` when a claim is missing or not an identifier."""
    values: dict[str, str] = {}
    for _, name, _, _ in string.Formatter().parse(template):
        if name is None:
            continue
        value = claims.get(name)
        if not isinstance(value, str) or not _TEMPLATE_VALUE.fullmatch(value):
            return None
        values[name] = value
    return template.format(**values)


def _roles(claims: Mapping[str, Any], path: str) -> tuple[str, ...]:
    """The list of strings at the dotted ``path`` of the claims (anything else: no roles)."""
    value: Any = claims
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        return ()
    roles = [role for role in value if isinstance(role, str) and role and len(role) <= _MAX_ROLE_LENGTH]
    return tuple(dict.fromkeys(roles))[:_MAX_ROLES]


def _reason(exc: FetchError) -> str:
    """The fetch error's text without the URL's host part repeated (it names no secret)."""
    return str(exc)[:200]
