"""bastion's OAuth 2.1 authorization server and its building blocks.

- :class:`AuthorizationServer`: the server; give it to ``bastion.MCPServer(auth=...)``.
- :class:`User`, :class:`Client`: who signs in, and the clients it knows.
- :class:`LoginStep`, :class:`PasswordLogin`, :func:`signed_in`: the pluggable sign-in step.
- :class:`TokenLifetimes`, :class:`Registration`, :class:`Signing`, :class:`DPoPSettings`, :class:`Branding`:
  its grouped settings.
- :class:`SafeFetcher`: the SSRF-safe fetcher of client metadata documents and key sets.
- :class:`RememberedConsent`: what :meth:`AuthorizationServer.consents` lists.
- :class:`AuditStore`: audit events kept in the store (:meth:`AuthorizationServer.keep_audit`).
- :class:`Admin` (``server.admin``), :class:`ClientInfo`, :class:`GrantInfo`, :class:`SigningKeyInfo`,
  :class:`AdminError`: list, revoke and rotate on the server's store.
- The OAuth errors, each rendering its RFC 6749 body.
"""

from bastion.authserver._admin import Admin, AdminError, ClientInfo, GrantInfo, SigningKeyInfo
from bastion.authserver._audit_log import AuditStore
from bastion.authserver._branding import Branding
from bastion.authserver._browser.consent import RememberedConsent
from bastion.authserver._browser.login import LoginStep, PasswordLogin, signed_in
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
from bastion.authserver._fetch import SafeFetcher
from bastion.authserver._models import Client, User
from bastion.authserver._server import AuthorizationServer
from bastion.authserver._settings import DPoPSettings, Registration, Signing, TokenLifetimes

__all__ = [
    "AccessDeniedError",
    "Admin",
    "AdminError",
    "AuditStore",
    "AuthorizationServer",
    "Branding",
    "Client",
    "ClientInfo",
    "DPoPSettings",
    "GrantInfo",
    "InvalidClient",
    "InvalidClientMetadata",
    "InvalidGrant",
    "InvalidRedirectURI",
    "InvalidRequest",
    "InvalidScope",
    "InvalidTarget",
    "LoginStep",
    "OAuthError",
    "PasswordLogin",
    "Registration",
    "RememberedConsent",
    "SafeFetcher",
    "Signing",
    "SigningKeyInfo",
    "TokenLifetimes",
    "UnauthorizedClient",
    "UnsupportedGrantType",
    "User",
    "signed_in",
]
