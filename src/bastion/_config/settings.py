"""Reading the ``BASTION_*`` environment variables, and the server's own settings among them.

The general variables are declared once (``_Settings``, read with pydantic-settings,
from ``os.environ`` or a given mapping); each provider's own are read the same way by
:mod:`bastion._config.providers`. The helpers here read lists, URLs, durations and
``@file`` values, and name the variable in every :class:`~bastion.ConfigurationError`,
never a secret's value. :mod:`bastion._config.auth` builds what ``BASTION_AUTH`` names.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

from bastion._core.errors import ConfigurationError

__all__ = ["ServerSettings", "server_settings"]

_environ: ContextVar[Mapping[str, str] | None] = ContextVar("bastion_environ", default=None)


class _EnvSettings(BaseSettings):
    """``BASTION_*`` variables (names lower-cased, without the prefix), from ``os.environ`` or ``_environ``."""

    model_config = SettingsConfigDict(
        env_prefix="BASTION_", case_sensitive=False, extra="ignore", env_ignore_empty=True, hide_input_in_errors=True
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        environ = _environ.get()
        if environ is not None and isinstance(env_settings, EnvSettingsSource):
            # Case-insensitive, empty values ignored: what the source does with os.environ.
            env_settings.env_vars = {k.lower(): v for k, v in environ.items() if v != ""}
        return (env_settings,)


class _Settings(_EnvSettings):
    """The general ``BASTION_*`` variables; each provider's own by :mod:`bastion._config.providers`."""

    auth: str | None = None
    resource_url: str | None = None
    base_url: str | None = None
    initial_scopes: str | None = None

    jwt_jwks_uri: str | None = None
    jwt_public_key: str | None = None
    jwt_secret: SecretStr | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_algorithms: str | None = None
    jwt_leeway: float | None = None
    jwt_required_scopes: str | None = None
    jwt_scope_claim: str | None = None
    jwt_roles_claim: str | None = None

    introspection_url: str | None = None
    introspection_client_id: str | None = None
    introspection_client_secret: SecretStr | None = None
    introspection_auth_method: str | None = None
    introspection_issuer: str | None = None
    introspection_audience: str | None = None
    introspection_required_scopes: str | None = None
    introspection_roles_claim: str | None = None
    introspection_cache_ttl: float | None = None
    introspection_timeout: float | None = None

    api_keys: SecretStr | None = None
    api_key_header: str | None = None

    # The authorization servers (OAuth proxies) of bastion.providers.
    store: str | None = None
    encryption_keys: SecretStr | None = None
    mcp_scopes: str | None = None
    # Read by every AuthorizationServer itself (authserver/_audit_log.py), like BASTION_STORE.
    audit_retention: str | None = None

    # An identity provider MCP clients register with directly (RemoteAuthorization).
    remote_issuer: str | None = None
    remote_config_url: str | None = None
    remote_audience: str | None = None


_S = TypeVar("_S", bound=_EnvSettings)


class ServerSettings(BaseModel):
    """Where the server is and what a first sign-in asks for, from ``BASTION_AUTH``,
    ``BASTION_RESOURCE_URL``, ``BASTION_BASE_URL`` and ``BASTION_INITIAL_SCOPES``.

    Attributes:
        auth: The kind of authentication ``BASTION_AUTH`` names (:func:`~bastion.from_env` builds it).
        resource_url: The canonical URL of the MCP endpoint (the token audience).
        base_url: The public base URL of the server, when it sits behind a proxy.
        initial_scopes: The scopes the 401 challenge names for a first sign-in
            (comma- or space-separated in the variable).
    """

    model_config = ConfigDict(frozen=True)

    auth: str | None = None
    resource_url: str | None = None
    base_url: str | None = None
    initial_scopes: tuple[str, ...] | None = None


def server_settings(environ: Mapping[str, str] | None = None) -> ServerSettings:
    """The server's settings from the environment (default: ``os.environ``).

    Raises:
        ConfigurationError: a URL is not an absolute http(s) URL, or a list names nothing.
    """
    settings = _load(environ)
    for name in ("resource_url", "base_url"):
        value = getattr(settings, name)
        if value is not None:
            _check_url(value, name)
    initial_scopes = _list(settings, "initial_scopes")
    return ServerSettings(
        auth=settings.auth.strip() or None if settings.auth is not None else None,
        resource_url=settings.resource_url,
        base_url=settings.base_url,
        initial_scopes=None if initial_scopes is None else tuple(initial_scopes),
    )


# -- loading ------------------------------------------------------------------


@contextmanager
def _reading(environ: Mapping[str, str] | None) -> Iterator[None]:
    reset = _environ.set(environ)
    try:
        yield
    finally:
        _environ.reset(reset)


def _load(environ: Mapping[str, str] | None) -> _Settings:
    return _read(_Settings, environ)


def _read(model: type[_S], environ: Mapping[str, str] | None) -> _S:
    """The variables ``model`` declares, from ``environ`` (default: ``os.environ``)."""
    try:
        with _reading(os.environ if environ is None else environ):
            return model()
    except ValidationError as exc:
        problems = "; ".join(f"{_var(str(e['loc'][0]))}: {e['msg']}" for e in exc.errors(include_input=False))
        raise ConfigurationError(problems) from None


def _var(field: str) -> str:
    return "BASTION_" + field.upper()


# -- reading values -----------------------------------------------------------


def _list(settings: _EnvSettings, field: str) -> list[str] | None:
    """A comma- or space-separated list, or ``None`` when the variable is unset."""
    value = getattr(settings, field)
    if value is None:
        return None
    items = value.replace(",", " ").split()
    if not items:
        raise ConfigurationError(f"{_var(field)} is set but names nothing")
    return list(items)


def _one_or_many(settings: _Settings, field: str) -> str | list[str] | None:
    items = _list(settings, field)
    if items is None:
        return None
    return items[0] if len(items) == 1 else items


def _check_url(value: str, field: str) -> None:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(f"{_var(field)} must be an absolute http(s) URL")


def _check_seconds(settings: _Settings, field: str, *, positive: bool = False) -> None:
    value = getattr(settings, field)
    if value is not None and not (math.isfinite(value) and (value > 0 if positive else value >= 0)):
        raise ConfigurationError(
            f"{_var(field)} must be a {'positive' if positive else 'non-negative'} number of seconds"
        )


def _file_or_value(value: str, field: str) -> str:
    """The value, or the contents of the file it names with a leading ``@``."""
    if not value.startswith("@"):
        return value
    path = Path(value[1:]).expanduser()
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"{_var(field)}: cannot read {str(path)!r} ({exc.__class__.__name__})") from None
