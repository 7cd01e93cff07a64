"""``EntraID``: sign users in with Microsoft Entra ID (the Microsoft identity platform, v2.0 endpoints)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import ClassVar

from typing_extensions import Unpack

from bastion._core.errors import ConfigurationError
from bastion.providers._checks import identifier, required, scope_list
from bastion.providers._env import ProviderEnv, Setting, client, register
from bastion.proxy._options import ProxyOptions
from bastion.proxy._proxy import OAuthProxy
from bastion.proxy._upstream import Upstream

__all__ = ["EntraID"]

LOGIN = "https://login.microsoftonline.com"
USERINFO = "https://graph.microsoft.com/oidc/userinfo"
#: Tenants whose users come from many directories: the id_token's issuer names the user's own (``tid``).
MULTI_TENANT = frozenset({"common", "organizations", "consumers"})
_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
#: Claims of Entra ID's id_token worth keeping for tools.
CLAIMS = ("oid", "tid", "sub", "name", "given_name", "family_name", "preferred_username", "upn", "email", "groups")


@register
class EntraID(OAuthProxy):
    """Sign users in with Microsoft Entra ID.

    Register a web application (App registrations, New registration) with the
    redirect URI ``<base_url>/auth/callback`` (platform "Web"), add a client
    secret (Certificates & secrets), and give its Application (client) ID and
    the secret's value here.

    The user's subject is Entra's ``oid``: the user's object id in their
    directory, the same for every application of the tenant (``sub`` is
    pairwise, different per application). ``tid`` (the user's tenant),
    ``preferred_username``, ``name`` and ``email`` are kept in the claims, and
    the application roles assigned to the user (``roles``) become the user's
    roles. ``email`` is not verified by Microsoft and can be edited by a
    tenant's administrators: authorize on ``oid`` and ``tid``, never on email.

    Args:
        client_id: The application's (client) ID.
        client_secret: The value of a client secret of the application.
        base_url: This server's public URL.
        tenant: The directory whose users may sign in: its id (a GUID), a
            verified domain (``contoso.onmicrosoft.com``), ``organizations`` (any
            work or school account), ``consumers`` (personal Microsoft accounts)
            or ``common`` (both). With a GUID the id_token's issuer is checked
            exactly; otherwise the issuer must name the token's own tenant
            (``https://login.microsoftonline.com/{tid}/v2.0``), so check
            ``token.claim("tid")`` when only some tenants are welcome.
        scopes: The sign-in scopes (``openid`` and ``profile`` are required:
            ``oid`` comes with ``profile``).
        api_scopes: Scopes of one API of yours (``api://<app-id>/notes.read``)
            or of Microsoft Graph (``https://graph.microsoft.com/Mail.Read``).
            Entra ID issues an access token for one resource at a time: with
            ``api_scopes`` the upstream token (``token.upstream()``) is for that
            API, and is refreshed for it; without them it is for Microsoft Graph
            (user profile). All must name the same resource.
        mcp_scopes: The scopes MCP clients may ask of this server, with descriptions.
        name: The provider's name on the consent page.
        authorize_params: Extra authorization request parameters (``prompt``,
            ``domain_hint``...).
        **options: Everything :class:`~bastion.proxy.OAuthProxy` takes.
    """

    env: ClassVar[ProviderEnv] = ProviderEnv(
        "entra",
        (*client(), Setting("tenant", "TENANT"), Setting("api_scopes", "API_SCOPES", "list")),
        aliases=("entraid", "entra_id", "entra-id"),
    )

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        base_url: str,
        tenant: str = "common",
        scopes: str | Sequence[str] = ("openid", "email", "profile", "offline_access"),
        api_scopes: str | Sequence[str] = (),
        mcp_scopes: Mapping[str, str] | Sequence[str] | None = None,
        name: str = "Microsoft",
        authorize_params: Mapping[str, str] | None = None,
        **options: Unpack[ProxyOptions],
    ) -> None:
        tenant = identifier(tenant, "tenant")
        sign_in = scope_list(scopes)
        if "openid" not in sign_in or "profile" not in sign_in:
            raise ConfigurationError("EntraID needs the openid and profile scopes (the user's oid comes with profile)")
        api = scope_list(api_scopes, "api_scopes")
        _one_resource(api)
        base = f"{LOGIN}/{tenant}"
        multi_tenant = _GUID.fullmatch(tenant) is None
        upstream = Upstream(
            name=name,
            authorization_endpoint=f"{base}/oauth2/v2.0/authorize",
            token_endpoint=f"{base}/oauth2/v2.0/token",
            client_id=required(client_id, "client_id"),
            client_secret=required(client_secret, "client_secret"),
            scopes=tuple(dict.fromkeys(sign_in + api)),
            identity="id_token",
            issuer=None if multi_tenant else f"{LOGIN}/{tenant.lower()}/v2.0",
            issuer_template=f"{LOGIN}/{{tid}}/v2.0" if multi_tenant else None,
            jwks_uri=f"{base}/discovery/v2.0/keys",
            # The userinfo endpoint is Microsoft Graph's: an access token for another API cannot call it.
            userinfo_endpoint=None if api else USERINFO,
            pkce=True,
            token_auth="client_secret_post",
            authorize_params=dict(authorize_params or {}),
            subject_claim="oid",
            identity_claims=CLAIMS,
            refresh_scope=True,
            roles_claim="roles",
            # Entra's on-behalf-of flow: token.exchange(scopes=["api://other-api/.default"]).
            token_exchange="entra_obo",
        )
        super().__init__(upstream, base_url=base_url, scopes=mcp_scopes, **options)


def _one_resource(api_scopes: Sequence[str]) -> None:
    """Entra ID refuses scopes of two resources in one request: say so at start-up instead."""
    resources = set()
    for scope in api_scopes:
        resource, slash, permission = scope.rpartition("/")
        if not slash or not resource or not permission:
            raise ConfigurationError(
                f"api_scopes: {scope!r:.100} names no resource (write api://<app-id>/{scope} or the API's URI)"
            )
        resources.add(resource.lower())
    if len(resources) > 1:
        raise ConfigurationError("api_scopes must all be scopes of one API: Entra ID issues a token for one resource")
