"""Ready-made identity providers for the OAuth proxy (each a :class:`bastion.proxy.OAuthProxy`).

- :class:`OIDC`: any OpenID provider, from its discovery document.
- :class:`GitHub`: GitHub OAuth Apps and GitHub Apps (user tokens).
- :class:`Google`: Google accounts, optionally one Workspace domain.
- :class:`EntraID`: Microsoft Entra ID (v2 endpoints, one tenant or many, app-specific API scopes).
- :class:`Auth0`, :class:`Okta`, :class:`Keycloak`, :class:`Cognito` (AWS), :class:`WorkOS` (AuthKit).

Register ``<base_url>/auth/callback`` at the provider; see ``docs/providers.md``.
"""

from bastion.providers._oidc import OIDC
from bastion.providers.auth0 import Auth0
from bastion.providers.cognito import Cognito
from bastion.providers.entra import EntraID
from bastion.providers.github import GitHub
from bastion.providers.google import Google
from bastion.providers.keycloak import Keycloak
from bastion.providers.okta import Okta
from bastion.providers.workos import WorkOS

__all__ = ["OIDC", "Auth0", "Cognito", "EntraID", "GitHub", "Google", "Keycloak", "Okta", "WorkOS"]
