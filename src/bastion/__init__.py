"""bastion: authentication and authorization for MCP servers.

Change one import (``from bastion import MCPServer``) and an MCP server built on
the official Python SDK becomes an OAuth 2.1 protected resource.
"""

from bastion._adapters.mcpserver import MCPServer
from bastion._adapters.protect import protect
from bastion._config.auth import from_env
from bastion._config.settings import ServerSettings, server_settings
from bastion._core.audit import Audit, AuditEvent
from bastion._core.errors import (
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
    UpstreamUnavailable,
)
from bastion._core.telemetry import instrument, uninstrument
from bastion._jose.jwks import JWKSOptions
from bastion._resource.apikeys import APIKey, APIKeyVerifier, StaticTokenVerifier, hash_api_key
from bastion._resource.callable import CallableVerifier
from bastion._resource.dpop import DPoPOptions
from bastion._resource.introspection import IntrospectionVerifier
from bastion._resource.jwt import ClaimNames, JWTVerifier
from bastion._resource.multi import MultiVerifier
from bastion._resource.policy import (
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
from bastion._resource.registry import PolicyRegistry
from bastion._resource.remote import RemoteAuthorization
from bastion._resource.tokens import AccessToken, get_access_token
from bastion._resource.verifier import TokenCache, Verifier
from bastion.authserver import AuthorizationServer, Client, User
from bastion.storage import MemoryStore, SQLiteStore, Store

__version__ = "0.1.0"

__all__ = [
    "APIKey",
    "APIKeyVerifier",
    "AccessContext",
    "AccessDenied",
    "AccessToken",
    "Audit",
    "AuditEvent",
    "AuthenticationError",
    "AuthorizationError",
    "AuthorizationServer",
    "BastionError",
    "CallableVerifier",
    "ClaimNames",
    "Client",
    "ConfigurationError",
    "DPoPOptions",
    "Decision",
    "InsufficientScope",
    "IntrospectionVerifier",
    "InvalidAudience",
    "InvalidClaims",
    "InvalidIssuer",
    "InvalidSignature",
    "InvalidToken",
    "JWKSOptions",
    "JWTVerifier",
    "KeysUnavailable",
    "MCPServer",
    "MemoryStore",
    "MultiVerifier",
    "NoAccessToken",
    "Policy",
    "PolicyRegistry",
    "RemoteAuthorization",
    "SQLiteStore",
    "ScopeHierarchy",
    "ServerSettings",
    "StaticTokenVerifier",
    "Store",
    "TokenCache",
    "TokenExpired",
    "TokenInactive",
    "TokenNotYetValid",
    "UnsupportedAlgorithm",
    "UpstreamUnavailable",
    "User",
    "Verifier",
    "__version__",
    "from_env",
    "get_access_token",
    "hash_api_key",
    "instrument",
    "protect",
    "require_all",
    "require_any",
    "require_auth",
    "require_role",
    "require_scopes",
    "server_settings",
    "uninstrument",
]
