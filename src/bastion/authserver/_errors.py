"""OAuth errors as exceptions that render the RFC 6749 error bodies.

Each endpoint raises one of these; the endpoint's wrapper turns it into the JSON
body of RFC 6749 section 5.2 (token, registration, revocation, introspection) or,
for the authorization endpoint, into a redirect to the client or an error page
(section 4.1.2.1). ``description`` is shown to the client: it never holds a
token, a secret, a code, an internal name or a value the client sent (a
parameter's name defined by a specification may be named). What was refused
goes in ``detail``, the error's ``str()`` for the logs, which is never sent.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import ClassVar

from starlette.responses import JSONResponse, Response

from bastion._core.errors import RETRY_AFTER, BastionError, KeysUnavailable
from bastion._core.log import ThrottledLog
from bastion.storage import StoreError

__all__ = [
    "AccessDeniedError",
    "InvalidClient",
    "InvalidClientMetadata",
    "InvalidDPoPProofError",
    "InvalidGrant",
    "InvalidRedirectURI",
    "InvalidRequest",
    "InvalidScope",
    "InvalidTarget",
    "OAuthError",
    "RequestTooLarge",
    "ServerError",
    "SlowDown",
    "TemporarilyUnavailable",
    "UnauthorizedClient",
    "UnsupportedGrantType",
    "UnsupportedResponseType",
    "UnsupportedTokenType",
    "UseDPoPNonceError",
    "guarded",
]

logger = logging.getLogger("bastion")

#: The public text of a store outage.
UNAVAILABLE = "the server cannot answer now, try again later"

#: RFC 6749 section 5.1 and OAuth 2.1: token and error responses are never cached.
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class OAuthError(BastionError):
    """An OAuth error response: ``error`` code, human ``description``, HTTP ``status``.

    Args:
        description: The ``error_description`` sent to the client (or shown on the error
            page): safe to show, it names no value the client sent.
        detail: What exactly was refused, for the logs (``str(error)``); never sent.
        headers: Extra response headers (``WWW-Authenticate``, ``Retry-After``).
    """

    error: ClassVar[str] = "invalid_request"
    status: ClassVar[int] = 400

    def __init__(
        self, description: str = "", *, detail: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(detail or description or self.error)
        self.description = description
        self.detail = detail
        self.headers = dict(headers or {})

    def body(self) -> dict[str, str]:
        """The JSON error object (RFC 6749 section 5.2)."""
        body = {"error": self.error}
        if self.description:
            body["error_description"] = self.description
        return body

    def response(self) -> JSONResponse:
        """The error as an HTTP response, never cached."""
        return JSONResponse(self.body(), status_code=self.status, headers={**NO_STORE, **self.headers})


class InvalidRequest(OAuthError):
    """A parameter is missing, repeated, oversized or malformed."""

    error = "invalid_request"


class RequestTooLarge(InvalidRequest):
    """The request body is larger than the endpoint reads: 413 (RFC 9110 section 15.5.14)."""

    status = 413


class InvalidClient(OAuthError):
    """Client authentication failed (RFC 6749 section 5.2): 401."""

    error = "invalid_client"
    status = 401


class InvalidGrant(OAuthError):
    """The code, refresh token or assertion is invalid, expired, revoked or not this client's."""

    error = "invalid_grant"


class InvalidDPoPProofError(OAuthError):
    """The token request's DPoP proof is missing where one is required, malformed, or replayed (RFC 9449 section 5).

    The token endpoint's answer to :class:`~bastion.InvalidDPoPProof`: a 400 ``invalid_dpop_proof``.
    ``reason``, a short fixed phrase naming the check (the description unless given), is the
    ``dpop.refused`` audit event's; ``None`` for no event.
    """

    error = "invalid_dpop_proof"

    def __init__(
        self,
        description: str = "",
        *,
        detail: str | None = None,
        headers: dict[str, str] | None = None,
        reason: str | None = "",
    ) -> None:
        super().__init__(description, detail=detail, headers=headers)
        self.reason = description if reason == "" else reason


class UseDPoPNonceError(InvalidDPoPProofError):
    """The proof lacks the server's current nonce: a 400 ``use_dpop_nonce`` with the nonce to use (section 8)."""

    error = "use_dpop_nonce"

    def __init__(self, nonce: str, *, detail: str | None = None, reason: str | None = None) -> None:
        super().__init__(
            "Authorization server requires nonce in DPoP proof",
            detail=detail,
            headers={"DPoP-Nonce": nonce},
            reason=reason,
        )


class UnauthorizedClient(OAuthError):
    """The client may not use this grant or response type."""

    error = "unauthorized_client"


class UnsupportedGrantType(OAuthError):
    """The grant type is not supported."""

    error = "unsupported_grant_type"


class UnsupportedResponseType(OAuthError):
    """The response type is not supported (only ``code`` is)."""

    error = "unsupported_response_type"


class UnsupportedTokenType(OAuthError):
    """Revocation of this token type is not supported (RFC 7009 section 2.2.1)."""

    error = "unsupported_token_type"


class InvalidScope(OAuthError):
    """The requested scope is unknown, malformed, or beyond what was granted."""

    error = "invalid_scope"


class InvalidTarget(OAuthError):
    """The ``resource`` is not one this server issues tokens for (RFC 8707 section 2)."""

    error = "invalid_target"


class AccessDeniedError(OAuthError):
    """The user or the server refused the request."""

    error = "access_denied"
    status = 403


class InvalidRedirectURI(OAuthError):
    """A registered redirect URI is not acceptable (RFC 7591 section 3.2.2)."""

    error = "invalid_redirect_uri"


class InvalidClientMetadata(OAuthError):
    """A registration field is not acceptable (RFC 7591 section 3.2.2)."""

    error = "invalid_client_metadata"


class SlowDown(OAuthError):
    """Too many requests from this address: 429 with ``Retry-After``."""

    error = "slow_down"
    status = 429


class TemporarilyUnavailable(OAuthError):
    """The server cannot answer now (its store is down): 503 with ``Retry-After``."""

    error = "temporarily_unavailable"
    status = 503

    def __init__(
        self, description: str = "", *, detail: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(description, detail=detail, headers={"Retry-After": str(RETRY_AFTER), **(headers or {})})


class ServerError(OAuthError):
    """An unexpected condition on the server side."""

    error = "server_error"
    status = 500


async def guarded(handle: Callable[[], Awaitable[Response]], outages: ThrottledLog) -> Response:
    """Run an endpoint: OAuth errors as their JSON bodies, a store outage as 503, nothing else leaking.

    An outage meets every request alike: it is logged on ``outages``, once per interval with a
    count and without a traceback (it is expected, not a bug).
    """
    try:
        return await handle()
    except OAuthError as exc:
        return exc.response()
    except StoreError as exc:
        outages.warning(f"the authorization server's store failed: {exc}")
        return TemporarilyUnavailable(UNAVAILABLE).response()
    except KeysUnavailable as exc:
        # The server's own verifier (/introspect, /revoke) could not read its keys or revocations.
        outages.warning(str(exc))
        return TemporarilyUnavailable(UNAVAILABLE).response()
    except Exception:
        logger.exception("unexpected error in an authorization server endpoint")
        return ServerError("unexpected server error").response()
