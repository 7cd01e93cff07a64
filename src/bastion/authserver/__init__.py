"""bastion's OAuth 2.1 authorization server: the building blocks beyond :class:`AuthorizationServer`."""

from bastion.authserver._errors import (
    AccessDeniedError,
    InvalidClient,
    InvalidClientMetadata,
    InvalidGrant,
    InvalidRedirectURI,
    InvalidRequest,
    InvalidScope,
    InvalidTarget,
    OAuthError,
    UnauthorizedClient,
    UnsupportedGrantType,
)
from bastion.authserver._models import Client, User
from bastion.authserver._server import AuthorizationServer

__all__ = [
    "AccessDeniedError",
    "AuthorizationServer",
    "Client",
    "InvalidClient",
    "InvalidClientMetadata",
    "InvalidGrant",
    "InvalidRedirectURI",
    "InvalidRequest",
    "InvalidScope",
    "InvalidTarget",
    "OAuthError",
    "UnauthorizedClient",
    "UnsupportedGrantType",
    "User",
]
