"""Ready-made identity providers for the OAuth proxy.

- :class:`OIDC`: any OpenID provider, from its discovery document.
"""

from bastion.providers._oidc import OIDC

__all__ = ["OIDC"]
