"""bastion's error tree: every error bastion raises on purpose is a :class:`BastionError`.

::

    BastionError                        bastion (this module), unless named otherwise
     +-- ConfigurationError             a setting or argument is missing, contradictory or unsafe
     |                                  (start-up, construction); also a ValueError
     +-- NoAccessToken                  get_access_token() outside an authenticated request;
     |                                  also a LookupError
     +-- KeysUnavailable                the token cannot be checked now: no key set, no introspection
     |                                  answer (HTTP 503 + Retry-After: the token may be fine)
     +-- AuthenticationError            a credential was presented and refused (HTTP 401)
     |    +-- InvalidToken              malformed, or refused for a reason we do not name
     |    |    +-- InvalidSignature
     |    |    +-- UnsupportedAlgorithm
     |    |    +-- TokenExpired
     |    |    +-- TokenNotYetValid
     |    |    +-- InvalidIssuer
     |    |    +-- InvalidAudience
     |    |    +-- InvalidClaims
     |    |    +-- TokenInactive        introspection said ``active: false``
     |    +-- InvalidDPoPProof          a DPoP proof (RFC 9449) missing, malformed or not matching
     |         +-- UseDPoPNonce         the proof lacks the server's current nonce (RFC 9449 section 8)
     +-- AuthorizationError             a valid credential that may not do this (HTTP 403)
     |    +-- InsufficientScope         more scope would help: step-up
     |    +-- AccessDenied              no scope would help (role, custom policy)
     +-- UpstreamUnavailable            a tool's upstream token cannot be had; also the SDK's ToolError
     +-- FetchError                     _core/http.py: an upstream answered badly or not at all
     +-- DiscoveryUnavailable           _resource/discovery.py: no metadata document could be had
     +-- BodyTooLarge                   _resource/jsonrpc.py: an MCP request body past the limit (413)
     +-- StoreError                     bastion.storage: the store is closed or its backend failed
     +-- VaultError                     authserver/_vault.py: a sealed blob cannot be opened
     +-- LeaseTimeout                   authserver/_lease.py: another process held a store lease past
     |                                  the wait's deadline
     +-- AdminError                     authserver/_admin.py: an administrative operation refused
     |                                  (an unknown client, one configured in code)
     +-- CommandRefused                 _cli/admin.py: a command that cannot go on (its message and
     |                                  exit status are printed)
     +-- FlowRefused                    authserver/_browser/responses.py: a browser step that cannot go
     |                                  on; its message is the page shown
     +-- UpstreamError                  bastion.proxy: the identity provider failed or refused
     +-- OAuthError                     bastion.authserver: an OAuth error response, one class per
          |                             error code (code, HTTP status)
          +-- InvalidRequest            invalid_request, 400
          |    +-- RequestTooLarge      invalid_request, 413
          +-- InvalidClient             invalid_client, 401
          +-- InvalidGrant              invalid_grant, 400
          +-- UnauthorizedClient        unauthorized_client, 400
          +-- UnsupportedGrantType      unsupported_grant_type, 400
          +-- UnsupportedResponseType   unsupported_response_type, 400
          +-- UnsupportedTokenType      unsupported_token_type, 400 (RFC 7009)
          +-- InvalidScope              invalid_scope, 400
          +-- InvalidTarget             invalid_target, 400 (RFC 8707)
          +-- AccessDeniedError         access_denied, 403
          +-- InvalidRedirectURI        invalid_redirect_uri, 400 (RFC 7591)
          +-- InvalidClientMetadata     invalid_client_metadata, 400 (RFC 7591)
          +-- InvalidDPoPProofError     invalid_dpop_proof, 400 (RFC 9449 section 5)
          |    +-- UseDPoPNonceError    use_dpop_nonce, 400 + DPoP-Nonce (RFC 9449 section 8)
          +-- SlowDown                  slow_down, 429 + Retry-After
          +-- TemporarilyUnavailable    temporarily_unavailable, 503 + Retry-After
          +-- ServerError               server_error, 500
          +-- LoginRequired             login_required (OpenID Connect), authserver/_endpoints/authorize.py
          +-- ConsentRequired           consent_required (OpenID Connect), authserver/_endpoints/authorize.py

The OAuth errors live in ``authserver/_errors.py`` but the last two; ``bastion.authserver``
exports :class:`OAuthError` and those a server's own code may raise (InvalidRequest,
InvalidClient, InvalidGrant, UnauthorizedClient, UnsupportedGrantType, InvalidScope,
InvalidTarget, AccessDeniedError, InvalidRedirectURI, InvalidClientMetadata).

Every error carries ``description``: a short text that is safe to show the
client (RFC 6750 / RFC 6749 ``error_description``, the text of an error page).
It never contains a token, a secret, an internal name (a host, an address, a
file) or a value taken from the request. Internal detail goes in the message
(``str(error)``), which is logged but never sent. A wrong *type* of argument
stays Python's ``TypeError``; anything an endpoint did not expect is answered
with a generic ``server_error`` and logged.
"""

from __future__ import annotations

from collections.abc import Iterable

from mcp.server.mcpserver.exceptions import ToolError

__all__ = [
    "AccessDenied",
    "AuthenticationError",
    "AuthorizationError",
    "BastionError",
    "ConfigurationError",
    "InsufficientScope",
    "InvalidAudience",
    "InvalidClaims",
    "InvalidDPoPProof",
    "InvalidIssuer",
    "InvalidSignature",
    "InvalidToken",
    "KeysUnavailable",
    "NoAccessToken",
    "TokenExpired",
    "TokenInactive",
    "TokenNotYetValid",
    "UnsupportedAlgorithm",
    "UseDPoPNonce",
]

#: Seconds a client is asked to wait (``Retry-After``, RFC 9110 section 10.2.3) when its request
#: cannot be answered now because keys, an introspection endpoint or the store are out of reach.
RETRY_AFTER = 5


class BastionError(Exception):
    """The root of every error bastion raises on purpose."""

    description: str = "error"

    def __init__(self, detail: str | None = None, *, description: str | None = None) -> None:
        if description is not None:
            self.description = description
        super().__init__(detail or self.description)


class ConfigurationError(BastionError, ValueError):
    """A setting is missing, contradictory or unsafe; raised when objects are built."""

    description = "invalid configuration"


class NoAccessToken(BastionError, LookupError):
    """``get_access_token()`` was called where no request was authenticated."""

    description = "no access token in this context"


class AuthenticationError(BastionError):
    """A credential was presented and refused; answered with HTTP 401."""

    error: str = "invalid_token"
    description = "The access token is invalid"


class InvalidToken(AuthenticationError):
    """The token is malformed or refused."""


class InvalidSignature(InvalidToken):
    """The token's signature does not verify with any key we trust."""

    description = "The access token signature is invalid"


class UnsupportedAlgorithm(InvalidToken):
    """The token names an algorithm outside the allow-list (``none`` always is)."""

    description = "The access token algorithm is not accepted"


class TokenExpired(InvalidToken):
    """The token's ``exp`` has passed (beyond the leeway)."""

    description = "The access token expired"


class TokenNotYetValid(InvalidToken):
    """The token's ``nbf`` or ``iat`` lies in the future (beyond the leeway)."""

    description = "The access token is not valid yet"


class InvalidIssuer(InvalidToken):
    """The token's ``iss`` is not a trusted issuer."""

    description = "The access token issuer is not trusted"


class InvalidAudience(InvalidToken):
    """The token was issued for another resource (RFC 8707 audience binding)."""

    description = "The access token was not issued for this resource"


class InvalidClaims(InvalidToken):
    """A claim is missing or has a value of the wrong type."""

    description = "The access token claims are invalid"


class TokenInactive(InvalidToken):
    """The authorization server says the token is not active (RFC 7662)."""

    description = "The access token is not active"


class InvalidDPoPProof(AuthenticationError):
    """A DPoP proof (RFC 9449 section 4) is missing, malformed, or does not match the request or the token.

    Answered with ``WWW-Authenticate: DPoP error="invalid_dpop_proof"`` at a resource
    (section 7.1) and the OAuth error ``invalid_dpop_proof`` at the token endpoint (section 5).
    """

    error = "invalid_dpop_proof"
    description = "The DPoP proof is invalid"


class UseDPoPNonce(InvalidDPoPProof):
    """The server asks for a DPoP proof carrying its nonce, sent in the ``DPoP-Nonce`` header (RFC 9449 section 8)."""

    error = "use_dpop_nonce"
    description = "Authorization server requires nonce in DPoP proof"

    def __init__(self, message: str, nonce: str) -> None:
        super().__init__(message)
        self.nonce = nonce


class KeysUnavailable(BastionError):
    """No key set or introspection answer could be had to check the token with; answered with HTTP 503.

    Not an :class:`AuthenticationError`: the token may well be valid, and a 401 would make the
    client throw it away. The client is asked to try again after :data:`RETRY_AFTER` seconds.
    """

    error: str = "temporarily_unavailable"
    description = "The access token cannot be verified right now; try again later"


class AuthorizationError(BastionError):
    """A valid credential that may not perform the operation; answered with HTTP 403."""

    error: str = "forbidden"
    description = "Forbidden"


class InsufficientScope(AuthorizationError):
    """The token lacks scope the operation needs; a client may step up (RFC 6750 section 3.1).

    Args:
        scopes: Every scope the operation needs.
        detail: The logged message.
        granted: The scopes the token holds, when the one raising knows them better than
            the request does (a verifier's ``required_scopes``): the challenge keeps those
            the server knows, so a client that replaces its scopes loses none.
    """

    error = "insufficient_scope"
    description = "The access token lacks the scope this operation needs"

    def __init__(self, scopes: Iterable[str], detail: str | None = None, *, granted: Iterable[str] = ()) -> None:
        self.scopes: tuple[str, ...] = tuple(dict.fromkeys(scopes))
        self.granted: tuple[str, ...] = tuple(dict.fromkeys(granted))
        super().__init__(detail or f"needs scopes {' '.join(self.scopes)}")


class AccessDenied(AuthorizationError):
    """The caller may not perform the operation, and no scope would change that."""

    error = "forbidden"
    description = "Forbidden"


class UpstreamUnavailable(BastionError, ToolError):
    """The identity provider's token for this user cannot be had: the upstream sign-in is gone.

    Raised by :meth:`AccessToken.upstream` in a tool; the user must sign in again.
    It is also the SDK's ``ToolError``, so a tool that lets it through answers the
    client with this message instead of a generic failure.
    """

    description = "The sign-in at the identity provider has ended; sign in again"
