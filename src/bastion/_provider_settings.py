"""The OAuth proxies of :mod:`bastion.providers`, and ``RemoteAuthorization``, from ``BASTION_*`` variables.

Each proxy reads ``BASTION_BASE_URL``, its client registration
(``BASTION_<PROVIDER>_CLIENT_ID``, ``..._CLIENT_SECRET``, ``..._SCOPES``), its own
settings (:data:`PROVIDERS`), and the settings of every authorization server:
``BASTION_STORE``, ``BASTION_ENCRYPTION_KEYS`` and ``BASTION_MCP_SCOPES``.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from bastion._errors import ConfigurationError
from bastion._settings import _check_url, _list, _one_or_many, _Settings, _var
from bastion._verifier import Verifier

if TYPE_CHECKING:
    from bastion.authserver import AuthorizationServer

__all__ = ["PROVIDERS", "Provider", "Setting", "provider", "remote"]


@dataclass(frozen=True)
class Setting:
    """One keyword argument of a provider, read from ``BASTION_<FIELD>``.

    Attributes:
        argument: The provider's keyword argument.
        field: The settings field; the variable is ``BASTION_`` and its name in capitals.
        kind: ``text``, ``secret`` (never shown), ``url`` (an absolute http(s) URL) or
            ``list`` (space- or comma-separated).
        required: Whether the provider cannot do without it.
    """

    argument: str
    field: str
    kind: Literal["text", "secret", "url", "list"] = "text"
    required: bool = False

    @property
    def variable(self) -> str:
        """The environment variable, e.g. ``BASTION_GOOGLE_CLIENT_ID``."""
        return _var(self.field)


@dataclass(frozen=True)
class Provider:
    """A class of :mod:`bastion.providers` and the variables its arguments come from."""

    module: str
    class_name: str
    settings: tuple[Setting, ...]


def _client(prefix: str, *, secret_required: bool = True) -> tuple[Setting, ...]:
    """The client registration at the provider: ``<PREFIX>_CLIENT_ID``, ``_CLIENT_SECRET``, ``_SCOPES``."""
    return (
        Setting("client_id", f"{prefix}_client_id", required=True),
        Setting("client_secret", f"{prefix}_client_secret", "secret", required=secret_required),
        Setting("scopes", f"{prefix}_scopes", "list"),
    )


#: Each proxy by its ``BASTION_AUTH`` value.
PROVIDERS: dict[str, Provider] = {
    "oidc": Provider(
        "_oidc",
        "OIDC",
        (
            Setting("config_url", "oidc_config_url", "url", required=True),
            *_client("oidc", secret_required=False),
            Setting("name", "oidc_name"),
        ),
    ),
    "github": Provider(
        "github",
        "GitHub",
        (*_client("github"), Setting("github_url", "github_url", "url"), Setting("api_url", "github_api_url", "url")),
    ),
    "google": Provider("google", "Google", (*_client("google"), Setting("hosted_domain", "google_hosted_domain"))),
    "entra": Provider(
        "entra",
        "EntraID",
        (*_client("entra"), Setting("tenant", "entra_tenant"), Setting("api_scopes", "entra_api_scopes", "list")),
    ),
    "auth0": Provider(
        "auth0",
        "Auth0",
        (Setting("domain", "auth0_domain", required=True), *_client("auth0"), Setting("audience", "auth0_audience")),
    ),
    "okta": Provider(
        "okta",
        "Okta",
        (
            Setting("domain", "okta_domain", required=True),
            *_client("okta"),
            Setting("authorization_server", "okta_authorization_server"),
        ),
    ),
    "keycloak": Provider(
        "keycloak",
        "Keycloak",
        (
            Setting("server_url", "keycloak_server_url", "url", required=True),
            Setting("realm", "keycloak_realm", required=True),
            *_client("keycloak"),
        ),
    ),
    "cognito": Provider(
        "cognito",
        "Cognito",
        (
            Setting("domain", "cognito_domain", required=True),
            Setting("region", "cognito_region", required=True),
            Setting("user_pool_id", "cognito_user_pool_id", required=True),
            *_client("cognito"),
        ),
    ),
    "workos": Provider(
        "workos",
        "WorkOS",
        (Setting("domain", "workos_domain", required=True), *_client("workos", secret_required=False)),
    ),
}


def provider(
    settings: _Settings, kind: str, *, mcp_scopes: Mapping[str, str] | Sequence[str] | None = None
) -> AuthorizationServer:
    """The proxy ``BASTION_AUTH=<kind>`` describes; ``mcp_scopes`` when ``BASTION_MCP_SCOPES`` is unset.

    Raises:
        ConfigurationError: a setting is missing or malformed; the message names the
            variable and never shows a secret.
    """
    spec = PROVIDERS[kind]
    missing = [s.variable for s in spec.settings if s.required and getattr(settings, s.field) is None]
    if settings.base_url is None:
        missing.append(_var("base_url"))
    if missing:
        raise ConfigurationError(f"BASTION_AUTH={kind} needs {', '.join(missing)}")
    assert settings.base_url is not None
    _check_url(settings.base_url, "base_url")
    arguments: dict[str, Any] = {"base_url": settings.base_url}
    for setting in spec.settings:
        value = _value(settings, setting)
        if value is not None:
            arguments[setting.argument] = value
    offered = _list(settings, "mcp_scopes")
    if offered is not None or mcp_scopes is not None:
        arguments["mcp_scopes"] = offered if offered is not None else mcp_scopes
    if settings.encryption_keys is not None:
        keys = settings.encryption_keys.get_secret_value()
        _check_keys(keys)
        arguments["encryption_keys"] = keys
    cls = getattr(importlib.import_module(f"bastion.providers.{spec.module}"), spec.class_name)
    if settings.store is not None:
        arguments["store"] = _store(settings.store)
    try:
        server: AuthorizationServer = cls(**arguments)
    except ConfigurationError as exc:
        raise ConfigurationError(f"BASTION_AUTH={kind}: {_naming(str(exc), spec.settings)}") from None
    return server


def remote(settings: _Settings) -> Verifier:
    """The :class:`~bastion.RemoteAuthorization` of ``BASTION_AUTH=remote``."""
    from bastion._remote import RemoteAuthorization

    if settings.remote_issuer is None:
        raise ConfigurationError("BASTION_AUTH=remote needs BASTION_REMOTE_ISSUER")
    if settings.remote_config_url is not None:
        _check_url(settings.remote_config_url, "remote_config_url")
    try:
        return RemoteAuthorization(
            settings.remote_issuer,
            audience=_one_or_many(settings, "remote_audience"),
            scopes_supported=_list(settings, "mcp_scopes") or (),
            config_url=settings.remote_config_url,
        )
    except ConfigurationError as exc:
        where = (Setting("issuer", "remote_issuer"), Setting("config_url", "remote_config_url"))
        raise ConfigurationError(f"BASTION_AUTH=remote: {_naming(str(exc), where)}") from None


def _value(settings: _Settings, setting: Setting) -> Any:
    raw = getattr(settings, setting.field)
    if raw is None:
        return None
    if setting.kind == "secret":
        return raw.get_secret_value()
    if setting.kind == "list":
        return _list(settings, setting.field)
    value = str(raw).strip()
    if setting.kind == "url":
        _check_url(value, setting.field)
    return value


def _check_keys(keys: str) -> None:
    from bastion.authserver._vault import parse_keys

    try:
        parse_keys(keys)
    except ConfigurationError as exc:
        raise ConfigurationError(f"BASTION_ENCRYPTION_KEYS: {exc}") from None


def _store(url: str) -> Any:
    from bastion.storage import open_store

    try:
        return open_store(url)
    except ConfigurationError as exc:
        raise ConfigurationError(f"BASTION_STORE: {exc}") from None


def _naming(message: str, settings: Sequence[Setting]) -> str:
    """``message``, followed by the variables of the arguments it mentions."""
    named = [s.variable for s in settings if re.search(rf"\b{re.escape(s.argument)}\b", message)]
    return f"{message} (see {', '.join(named)})" if named else message
