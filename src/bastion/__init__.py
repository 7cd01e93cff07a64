"""bastion: authentication and authorization for MCP servers.

Change one import (``from bastion import MCPServer``) and an MCP server built on
the official Python SDK becomes an OAuth 2.1 protected resource.
"""

from bastion._errors import (
    AccessDenied,
    AuthenticationError,
    AuthorizationError,
    BastionError,
    ConfigurationError,
    InsufficientScope,
    InvalidAudience,
    InvalidClaims,
    InvalidIssuer,
    InvalidSignature,
    InvalidToken,
    KeysUnavailable,
    NoAccessToken,
    TokenExpired,
    TokenInactive,
    TokenNotYetValid,
    UnsupportedAlgorithm,
)
from bastion._policy import (
    AccessContext,
    Decision,
    Policy,
    ScopeHierarchy,
    require_all,
    require_any,
    require_auth,
    require_role,
    require_scopes,
)
from bastion._protect import protect
from bastion._registry import PolicyRegistry
from bastion._server import MCPServer
from bastion._tokens import AccessToken, get_access_token
from bastion._verifier import TokenCache, Verifier

__version__ = "0.1.0"

__all__ = [
    "AccessContext",
    "AccessDenied",
    "AccessToken",
    "AuthenticationError",
    "AuthorizationError",
    "BastionError",
    "ConfigurationError",
    "Decision",
    "InsufficientScope",
    "InvalidAudience",
    "InvalidClaims",
    "InvalidIssuer",
    "InvalidSignature",
    "InvalidToken",
    "KeysUnavailable",
    "MCPServer",
    "NoAccessToken",
    "Policy",
    "PolicyRegistry",
    "ScopeHierarchy",
    "TokenCache",
    "TokenExpired",
    "TokenInactive",
    "TokenNotYetValid",
    "UnsupportedAlgorithm",
    "Verifier",
    "__version__",
    "get_access_token",
    "protect",
    "require_all",
    "require_any",
    "require_auth",
    "require_role",
    "require_scopes",
]
