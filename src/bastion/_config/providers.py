"""The OAuth proxies of :mod:`bastion.providers`, and ``RemoteAuthorization``, from ``BASTION_*`` variables.

Each provider declares the variables it reads (its ``env``, see
:mod:`bastion.providers._env`): its client registration
(``BASTION_<PROVIDER>_CLIENT_ID``, ``..._CLIENT_SECRET``, ``..._SCOPES``) and its own
settings. Every proxy also reads ``BASTION_BASE_URL`` and the settings of every
authorization server: ``BASTION_STORE``, ``BASTION_ENCRYPTION_KEYS`` and ``BASTION_MCP_SCOPES``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr, create_model

import bastion.providers  # noqa: F401  (its modules register the built-in providers)
from bastion._config.settings import _check_url, _EnvSettings, _list, _one_or_many, _read, _Settings, _var
from bastion._core.errors import ConfigurationError
from bastion._resource.verifier import Verifier
from bastion.providers._env import PROVIDERS, ProviderEnv, Setting

if TYPE_CHECKING:
    from bastion.authserver import AuthorizationServer

__all__ = ["provider", "proxies", "remote"]


def proxies() -> dict[str, ProviderEnv]:
    """What every registered provider reads, by its ``BASTION_AUTH`` value, in the order of registration."""
    return {name: entry.env for name, entry in PROVIDERS.items()}


def provider(
    settings: _Settings,
    kind: str,
    environ: Mapping[str, str] | None,
    *,
    mcp_scopes: Mapping[str, str] | Sequence[str] | None = None,
) -> AuthorizationServer:
    """The proxy ``BASTION_AUTH=<kind>`` describes; ``mcp_scopes`` when ``BASTION_MCP_SCOPES`` is unset.

    Its own variables are read from ``environ`` (default: ``os.environ``) as ``settings`` were.

    Raises:
        ConfigurationError: a setting is missing or malformed; the message names the
            variable and never shows a secret.
    """
    entry = PROVIDERS[kind]
    env = entry.env
    values = _read(_model(env), environ)
    missing = [env.variable(s) for s in env.settings if s.required and getattr(values, _field(env, s)) is None]
    if settings.base_url is None:
        missing.append(_var("base_url"))
    if missing:
        raise ConfigurationError(f"BASTION_AUTH={kind} needs {', '.join(missing)}")
    assert settings.base_url is not None
    _check_url(settings.base_url, "base_url")
    arguments: dict[str, Any] = {"base_url": settings.base_url}
    for setting in env.settings:
        value = _value(values, _field(env, setting), setting)
        if value is not None:
            arguments[setting.argument] = value
    offered = _list(settings, "mcp_scopes")
    if offered is not None or mcp_scopes is not None:
        arguments["mcp_scopes"] = offered if offered is not None else mcp_scopes
    if settings.encryption_keys is not None:
        keys = settings.encryption_keys.get_secret_value()
        _check_keys(keys)
        arguments["encryption_keys"] = keys
    if settings.store is not None:
        arguments["store"] = _store(settings.store)
    try:
        server: AuthorizationServer = entry.cls(**arguments)
    except ConfigurationError as exc:
        where = {s.argument: env.variable(s) for s in env.settings}
        raise ConfigurationError(f"BASTION_AUTH={kind}: {_naming(str(exc), where)}") from None
    return server


def _field(env: ProviderEnv, setting: Setting) -> str:
    """The settings field of ``setting``: its variable without ``BASTION_``, lower-cased."""
    return f"{env.name}_{setting.suffix.lower()}"


@functools.cache
def _model(env: ProviderEnv) -> type[_EnvSettings]:
    """The settings class reading ``env``'s variables, as the general ones are read."""
    fields: dict[str, Any] = {
        _field(env, s): (SecretStr | None if s.kind == "secret" else str | None, None) for s in env.settings
    }
    return create_model(f"_{env.name.capitalize()}Settings", __base__=_EnvSettings, **fields)


def remote(settings: _Settings) -> Verifier:
    """The :class:`~bastion.RemoteAuthorization` of ``BASTION_AUTH=remote``."""
    from bastion._resource.remote import RemoteAuthorization

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
        where = {"issuer": _var("remote_issuer"), "config_url": _var("remote_config_url")}
        raise ConfigurationError(f"BASTION_AUTH=remote: {_naming(str(exc), where)}") from None


def _value(values: _EnvSettings, field: str, setting: Setting) -> Any:
    raw = getattr(values, field)
    if raw is None:
        return None
    if setting.kind == "secret":
        return raw.get_secret_value()
    if setting.kind == "list":
        return _list(values, field)
    value = str(raw).strip()
    if setting.kind == "url":
        _check_url(value, field)
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


def _naming(message: str, variables: Mapping[str, str]) -> str:
    """``message``, followed by the variables of the arguments (``variables``' keys) it mentions."""
    named = [v for argument, v in variables.items() if re.search(rf"\b{re.escape(argument)}\b", message)]
    return f"{message} (see {', '.join(named)})" if named else message
