"""Opaque tokens checked with the authorization server (RFC 7662 token introspection)."""

from __future__ import annotations

import base64
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal
from urllib.parse import quote_plus, urlsplit

import anyio
import httpx2

from bastion._core.errors import (
    ConfigurationError,
    InsufficientScope,
    InvalidAudience,
    InvalidClaims,
    InvalidIssuer,
    InvalidToken,
    KeysUnavailable,
    TokenExpired,
    TokenInactive,
)
from bastion._core.http import DEFAULT_TIMEOUT, FetchError, fetch_json, http_client
from bastion._resource.tokens import AccessToken
from bastion._resource.verifier import TokenCache, Verifier

__all__ = ["IntrospectionVerifier"]

logger = logging.getLogger("bastion")

AuthMethod = Literal["client_secret_basic", "client_secret_post"]
_AUTH_METHODS = ("client_secret_basic", "client_secret_post")


class IntrospectionVerifier(Verifier):
    """Verifies opaque (or any) tokens by asking the authorization server (RFC 7662).

    Each token not in the cache costs one ``POST`` to the introspection endpoint,
    authenticated as the resource server's own client. An answer other than
    ``"active": true`` refuses the token. When the endpoint is down, slow or
    answers nonsense the token cannot be checked: :class:`~bastion.KeysUnavailable`,
    a 503 with ``Retry-After`` to the client (the token may be fine).

    Args:
        introspection_endpoint: The authorization server's introspection URL.
        client_id: The resource server's client id at the authorization server.
        client_secret: Its client secret.
        auth_method: How to send the client credentials: HTTP Basic (default) or
            in the form body.
        issuer: The trusted issuer(s). When the answer has ``iss``, it must be one of
            them. Also advertised as the resource's authorization server.
        audience: The accepted audience(s). When the answer has ``aud``, one of its
            values must be one of them. When unset, the server's resource URL is used.
        required_scopes: Scopes every token must carry; a valid token without them is
            refused with :class:`~bastion.InsufficientScope` (HTTP 403, step-up).
        roles_claim: The member of the answer holding roles (a dotted path such as
            ``realm_access.roles`` reaches into objects).
        cache_ttl: Seconds an answer is reused, never past the token's ``exp``.
            ``0`` asks every time.
        timeout: Seconds to wait for the endpoint, in all.
        clock: The time source (seconds since the epoch), for tests.
        cache: The cache of verified tokens (default: a new one).
    """

    def __init__(
        self,
        introspection_endpoint: str,
        client_id: str,
        client_secret: str,
        *,
        auth_method: AuthMethod = "client_secret_basic",
        issuer: str | Sequence[str] | None = None,
        audience: str | Sequence[str] | None = None,
        required_scopes: Iterable[str] | None = None,
        roles_claim: str = "roles",
        cache_ttl: float = 60,
        timeout: float = DEFAULT_TIMEOUT,
        clock: Callable[[], float] = time.time,
        cache: TokenCache | None = None,
    ) -> None:
        parts = urlsplit(introspection_endpoint or "")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigurationError("introspection_endpoint must be an absolute http(s) URL")
        if parts.username or parts.password:
            raise ConfigurationError("introspection_endpoint must not contain credentials")
        if not client_id:
            raise ConfigurationError("introspection needs a client_id")
        if not client_secret:
            raise ConfigurationError("introspection needs a client_secret")
        if auth_method not in _AUTH_METHODS:
            raise ConfigurationError(f"auth_method must be one of {', '.join(_AUTH_METHODS)}, got {auth_method!r}")
        if not (cache_ttl >= 0 and math.isfinite(cache_ttl)):
            raise ConfigurationError("cache_ttl must be a finite number of seconds, 0 or more")
        if not (timeout > 0 and math.isfinite(timeout)):
            raise ConfigurationError("timeout must be a positive number of seconds")
        super().__init__(cache=TokenCache(ttl=cache_ttl, clock=clock) if cache is None else cache)
        self.introspection_endpoint = introspection_endpoint
        self._shown = f"{parts.scheme}://{parts.netloc}{parts.path}"  # for messages: no query
        self.client_id = client_id
        self._client_secret = client_secret
        self.auth_method: AuthMethod = auth_method
        self.issuers = _as_tuple(issuer, "issuer")
        self.audience: tuple[str, ...] | None = _as_tuple(audience, "audience") or None
        self.required_scopes = tuple(required_scopes or ())
        self.roles_claim = roles_claim
        self.ttl = float(cache_ttl)
        self.timeout = float(timeout)
        self._clock = clock
        self._client: httpx2.AsyncClient | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.introspection_endpoint!r}, client_id={self.client_id!r})"

    # -- Verifier hooks -----------------------------------------------------

    def cache_ttl(self, access: AccessToken) -> float | None:
        """Answers are reused for ``cache_ttl`` seconds at most (and never past ``exp``)."""
        return self.ttl

    def expect_audience(self, audience: str) -> None:
        """Adopt the server's resource URL as the audience when none was configured."""
        if self.audience is None:
            self.audience = (audience,)

    async def aclose(self) -> None:
        """Close the HTTP client; a later request opens a new one."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def check(self, token: str) -> AccessToken:
        """Ask the introspection endpoint about ``token`` and check its answer.

        Raises:
            KeysUnavailable: the endpoint could not be asked or answered nonsense.
            TokenInactive: the answer is not ``"active": true``.
            TokenExpired, InvalidIssuer, InvalidAudience, InvalidClaims:
                an active token that this resource does not accept.
            InsufficientScope: an active token without the ``required_scopes``.
        """
        answer = await self._introspect(token)
        if answer.get("active") is not True:
            raise TokenInactive("introspection answered: not active")
        return self._access_token(token, answer)

    # -- internals ----------------------------------------------------------

    async def _introspect(self, token: str) -> dict[str, Any]:
        form = {"token": token, "token_type_hint": "access_token"}
        headers = {"Accept": "application/json"}
        if self.auth_method == "client_secret_basic":
            headers["Authorization"] = _basic_authorization(self.client_id, self._client_secret)
        else:
            form["client_id"] = self.client_id
            form["client_secret"] = self._client_secret
        if self._client is None:
            self._client = http_client(self.timeout)
        # A failure is not logged here, once per request: whoever answers the request logs it, throttled.
        try:
            # httpx's timeout bounds each read; this bounds the whole exchange (a slow trickle too).
            with anyio.fail_after(self.timeout):
                _, answer = await fetch_json(
                    self._client, "POST", self.introspection_endpoint, data=form, headers=headers
                )
        except FetchError as exc:
            raise KeysUnavailable(f"token introspection failed: {exc}") from None
        except TimeoutError:
            raise KeysUnavailable(f"token introspection at {self._shown} timed out after {self.timeout:g} s") from None
        if not isinstance(answer, dict):
            raise KeysUnavailable(f"token introspection at {self._shown} answered JSON that is not an object")
        return answer

    def _access_token(self, token: str, answer: dict[str, Any]) -> AccessToken:
        token_type = _optional_str(answer, "token_type")
        if token_type is not None and token_type.lower() in ("refresh_token", "refresh"):
            # token_type_hint is only a hint: some servers introspect refresh tokens as active.
            raise InvalidToken("introspection answered a refresh token", description="This is not an access token")
        expires_at = _number(answer, "exp")
        if expires_at is not None and expires_at <= self._clock():
            raise TokenExpired("introspection answered an active token whose exp has passed")
        issuer = _optional_str(answer, "iss")
        if self.issuers and issuer is not None and issuer not in self.issuers:
            raise InvalidIssuer(f"iss {issuer!r} is not one of the trusted issuers")
        resource = self._check_audience(answer.get("aud"))
        scopes = _scopes(answer.get("scope"))
        missing = [scope for scope in self.required_scopes if scope not in scopes]
        if missing:
            # A valid token short of scope: a step-up (403), not a token to throw away (401).
            raise InsufficientScope(
                self.required_scopes, f"token lacks required scopes {' '.join(missing)}", granted=scopes
            )
        return AccessToken(
            token=token,
            client_id=_optional_str(answer, "client_id") or "",
            subject=_optional_str(answer, "sub"),
            scopes=scopes,
            roles=_roles(answer, self.roles_claim),
            expires_at=None if expires_at is None else int(expires_at),
            resource=resource,
            issuer=issuer,
            claims=answer,
        )

    def _check_audience(self, aud: Any) -> str | None:
        if aud is None:
            return None
        if isinstance(aud, str):
            values = [aud]
        elif isinstance(aud, list) and all(isinstance(v, str) for v in aud):
            values = [str(v) for v in aud]
        else:
            raise InvalidClaims("aud is neither a string nor a list of strings")
        if self.audience is None:
            return values[0] if len(values) == 1 else None
        # A resource URL and the same URL with a trailing slash name one resource (RFC 8707 canonical form).
        accepted = {a.rstrip("/") for a in self.audience}
        for value in values:
            if value.rstrip("/") in accepted:
                return value
        raise InvalidAudience("aud does not name this resource")


def _basic_authorization(client_id: str, client_secret: str) -> str:
    """RFC 6749 section 2.3.1: form-urlencode id and secret, then HTTP Basic."""
    pair = f"{quote_plus(client_id, safe='')}:{quote_plus(client_secret, safe='')}"
    return "Basic " + base64.b64encode(pair.encode("ascii")).decode("ascii")


def _as_tuple(value: str | Sequence[str] | None, name: str) -> tuple[str, ...]:
    if value is None:
        return ()
    values = (value,) if isinstance(value, str) else tuple(value)
    if not all(isinstance(v, str) and v for v in values):
        raise ConfigurationError(f"{name} must be a non-empty string or a list of them")
    return values


def _number(answer: Mapping[str, Any], name: str) -> float | None:
    value = answer.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidClaims(f"{name} is not a number")
    return float(value)


def _optional_str(answer: Mapping[str, Any], name: str) -> str | None:
    value = answer.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidClaims(f"{name} is not a string")
    return value


def _strings(value: Any, name: str) -> list[str]:
    """A space-separated string or a list of strings, as a list; absent is empty."""
    if value is None:
        return []
    if isinstance(value, str):
        return value.split()
    # RFC 7662 says a space-separated string for scope; some servers send a list.
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise InvalidClaims(f"{name} is neither a string nor a list of strings")


def _scopes(value: Any) -> list[str]:
    return _strings(value, "scope")


def _roles(answer: Mapping[str, Any], claim: str) -> list[str]:
    value: Any = answer.get(claim)
    if value is None and "." in claim:
        value = answer
        for part in claim.split("."):
            value = value.get(part) if isinstance(value, dict) else None
    return _strings(value, claim)
