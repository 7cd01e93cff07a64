"""Reading the ``BASTION_*`` environment variables, and the server's own settings among them.

The general variables are declared once (``_Settings``, read with pydantic-settings,
from ``os.environ`` or a given mapping); each provider's own are read the same way by
:mod:`bastion._config.providers`. The helpers here read lists, URLs, durations and
``@file`` values, and name the variable in every :class:`~bastion.ConfigurationError`,
never a secret's value. :mod:`bastion._config.auth` builds what ``BASTION_AUTH`` names.
"""

from __future__ import annotations

import difflib
import logging
import math
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal, TypeVar, cast
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

from bastion._core.errors import ConfigurationError

__all__ = ["ServerSettings", "known_variables", "server_settings"]

logger = logging.getLogger("bastion")

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


def _doc(description: str, default: str) -> Any:
    """A variable's field, unset by default: what it means, and what applies when it is unset.

    ``default`` is empty when nothing does, and ``required`` when the ``BASTION_AUTH`` value
    it belongs to cannot do without it. docs/configuration.md is generated from these.
    """
    return Field(None, description=description, json_schema_extra={"unset": default})


class _Settings(_EnvSettings):
    """The general ``BASTION_*`` variables; each provider's own by :mod:`bastion._config.providers`.

    Each field's description and what applies when it is unset are data (``_doc``): the
    configuration page of the documentation is generated from them.
    """

    auth: str | None = _doc(
        "What protects the server: a verifier (`jwt`, `introspection`, `apikeys`, `remote`) or an OAuth proxy"
        " of `bastion.providers` (`oidc`, `github`, `google`, ...). Any case.",
        "`MCPServer` without `auth=` has no authentication",
    )
    resource_url: str | None = _doc(
        "The canonical URL of the MCP endpoint, the audience of its tokens (RFC 8707).",
        "derived from the first request, with a warning",
    )
    base_url: str | None = _doc(
        "The public URL of an OAuth proxy, its issuer; register `<BASTION_BASE_URL>/auth/callback` at the "
        "provider. Required by every provider.",
        "",
    )
    initial_scopes: str | None = _doc(
        "The scopes the 401 challenge names for a first sign-in (`initial_scopes`), space- or "
        "comma-separated; never `offline_access`.",
        "what the default policy and `required_scopes` need, else every scope the policies use",
    )
    allow_unauthenticated: bool | None = _doc(
        "`1` (or `true`): an `MCPServer` without authentication (no `auth=`, no `BASTION_AUTH`) may serve "
        "HTTP on a host other than loopback, for a server something in front of it authenticates "
        "(`allow_unauthenticated=`). It still logs a warning.",
        'such a server serves loopback hosts only, and refuses `host="0.0.0.0"` at start',
    )
    dpop: str | None = _doc(
        "DPoP-bound tokens at an `MCPServer` (RFC 9449, `dpop=`): `on` accepts them with their proofs and "
        "bearer tokens too, `required` bound tokens only, `off` bearer tokens only.",
        "`on`",
    )

    jwt_jwks_uri: str | None = _doc(
        "`jwt`: the URL of the issuer's key set (JWKS). One of the three key sources.",
        "",
    )
    jwt_public_key: str | None = _doc(
        "`jwt`: one public key, PEM or a JWK as JSON, or `@/path/to/file`. One of the three key sources.",
        "",
    )
    jwt_secret: SecretStr | None = _doc(
        "`jwt`: an HMAC secret of 32 bytes or more (HS256). One of the three key sources. Never shown.",
        "",
    )
    jwt_issuer: str | None = _doc(
        "`jwt`: the accepted `iss` value(s), comma-separated; also the authorization server the resource "
        "metadata names.",
        "any issuer, with a warning at start",
    )
    jwt_audience: str | None = _doc(
        "`jwt`: the accepted `aud` value(s), comma-separated.",
        "the server's resource URL",
    )
    jwt_algorithms: str | None = _doc(
        "`jwt`: the algorithm allow-list, comma-separated; `none` is never accepted.",
        "with a key set: RS256 to RS512, PS256 to PS512, ES256 to ES512, EdDSA, Ed25519; with one key: its algorithm",
    )
    jwt_leeway: float | None = _doc(
        "`jwt`: seconds of clock skew allowed on `exp`, `nbf` and `iat`.",
        "30",
    )
    jwt_required_scopes: str | None = _doc(
        "`jwt`: scopes every token must hold (a token without them gets the 403 step-up), comma-separated.",
        "none",
    )
    jwt_scope_claim: str | None = _doc(
        "`jwt`: the claim holding the scopes (a space-separated string or a list).",
        "`scope`, else `scp`",
    )
    jwt_roles_claim: str | None = _doc(
        "`jwt`: the claim holding the roles, a dotted path for nested claims (`realm_access.roles`).",
        "`roles`",
    )

    introspection_url: str | None = _doc(
        "`introspection`: the RFC 7662 introspection endpoint.",
        "required",
    )
    introspection_client_id: str | None = _doc(
        "`introspection`: this resource server's client id at the endpoint.",
        "required",
    )
    introspection_client_secret: SecretStr | None = _doc(
        "`introspection`: its client secret. Never shown.",
        "required",
    )
    introspection_auth_method: str | None = _doc(
        "`introspection`: `client_secret_basic` or `client_secret_post`.",
        "`client_secret_basic`",
    )
    introspection_issuer: str | None = _doc(
        "`introspection`: the accepted `iss` value(s) of the answers, comma-separated.",
        "any issuer",
    )
    introspection_audience: str | None = _doc(
        "`introspection`: the accepted `aud` value(s) of the answers, comma-separated.",
        "the server's resource URL",
    )
    introspection_required_scopes: str | None = _doc(
        "`introspection`: scopes every token must hold, comma-separated.",
        "none",
    )
    introspection_roles_claim: str | None = _doc(
        "`introspection`: the member of the answer holding the roles.",
        "`roles`",
    )
    introspection_cache_ttl: float | None = _doc(
        "`introspection`: seconds an active answer is kept (never past the token's `exp`).",
        "60",
    )
    introspection_timeout: float | None = _doc(
        "`introspection`: seconds to wait for the endpoint.",
        "5",
    )

    api_keys: SecretStr | None = _doc(
        "`apikeys`: a JSON object, or `@file.json`, mapping each key (or `sha256:<hex>` of it) to its principal: "
        '`{"subject": ..., "scopes": [...], "roles": [...]}` or a subject string. Never shown.',
        "required",
    )
    api_key_header: str | None = _doc(
        "`apikeys`: the header holding the key (`X-API-Key`).",
        "`Authorization: Bearer <key>`",
    )

    # The authorization servers (OAuth proxies) of bastion.providers.
    store: str | None = _doc(
        "Where an authorization server or OAuth proxy keeps its state: `sqlite:///auth.db` (relative to the "
        "current directory), `sqlite:////var/lib/bastion/auth.db` (absolute), `sqlite:///~/auth.db`, "
        "`redis://host:6379/0`, `rediss://...`, or `memory://`. A SQLite URL reads as SQLAlchemy's: three "
        "slashes, then the path; its directory must exist. Also read by `bastion serve`, `bastion demo` and "
        "the administration commands.",
        "a SQLite file under `~/.local/share/bastion/`",
    )
    encryption_keys: SecretStr | None = _doc(
        "An OAuth proxy's AES-256 keys for the provider's tokens at rest, base64, comma-separated, newest "
        "first (`bastion encryption-key` prints one). Never shown.",
        "a key generated on first start and kept in the store",
    )
    mcp_scopes: str | None = _doc(
        "The scopes an OAuth proxy (or `remote`) offers MCP clients, space- or comma-separated.",
        "the provider's own default",
    )
    # Read by every AuthorizationServer itself (authserver/_audit_log.py), like BASTION_STORE.
    audit_retention: str | None = _doc(
        "How long every authorization server of the process keeps its audit events in its store: seconds, or "
        "a number with `s`, `m`, `h`, `d` or `w` (`30d`).",
        "events are not kept in the store",
    )

    # An identity provider MCP clients register with directly (RemoteAuthorization).
    remote_issuer: str | None = _doc(
        "`remote`: the issuer of an authorization server MCP clients register with themselves.",
        "required",
    )
    remote_config_url: str | None = _doc(
        "`remote`: its metadata URL, when not at the RFC 8414 or OpenID well-known location.",
        "discovered from the issuer",
    )
    remote_audience: str | None = _doc(
        "`remote`: the accepted `aud` value(s), comma-separated.",
        "the server's resource URL",
    )


_S = TypeVar("_S", bound=_EnvSettings)


class ServerSettings(BaseModel):
    """Where the server is and what a first sign-in asks for, from ``BASTION_AUTH``,
    ``BASTION_RESOURCE_URL``, ``BASTION_BASE_URL``, ``BASTION_INITIAL_SCOPES`` and
    ``BASTION_ALLOW_UNAUTHENTICATED`` and ``BASTION_DPOP``.

    Attributes:
        auth: The kind of authentication ``BASTION_AUTH`` names (:func:`~bastion.from_env` builds it).
        resource_url: The canonical URL of the MCP endpoint (the token audience).
        base_url: The public base URL of the server, when it sits behind a proxy.
        initial_scopes: The scopes the 401 challenge names for a first sign-in
            (comma- or space-separated in the variable).
        allow_unauthenticated: Whether a server without authentication may serve a
            host other than loopback (``BASTION_ALLOW_UNAUTHENTICATED``).
        dpop: ``on``, ``required`` or ``off``: how an ``MCPServer`` built without ``dpop=``
            treats DPoP-bound tokens (``BASTION_DPOP``).
    """

    model_config = ConfigDict(frozen=True)

    auth: str | None = None
    resource_url: str | None = None
    base_url: str | None = None
    initial_scopes: tuple[str, ...] | None = None
    allow_unauthenticated: bool = False
    dpop: Literal["on", "required", "off"] = "on"


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
    dpop = (settings.dpop or "on").strip().lower()
    if dpop not in ("on", "required", "off"):
        raise ConfigurationError(f"BASTION_DPOP must be on, required or off, not {settings.dpop!r:.40}")
    return ServerSettings(
        auth=settings.auth.strip() or None if settings.auth is not None else None,
        resource_url=settings.resource_url,
        base_url=settings.base_url,
        initial_scopes=None if initial_scopes is None else tuple(initial_scopes),
        allow_unauthenticated=bool(settings.allow_unauthenticated),
        dpop=cast(Literal["on", "required", "off"], dpop),
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
    _report_unknown(os.environ if environ is None else environ)  # first: a typo may be why reading fails
    return _read(_Settings, environ)


def known_variables() -> tuple[str, ...]:
    """Every ``BASTION_*`` variable bastion reads: the general ones, then every registered provider's own."""
    from bastion._config.providers import proxies  # which imports this module

    own = (name for env in proxies().values() for name in env.variables)
    return (*map(_var, _Settings.model_fields), *own)


#: The names (in capitals) checked already: an unknown one is reported once per process, however often
#: the settings are read.
_checked: set[str] = set()


def _report_unknown(environ: Mapping[str, str]) -> None:
    """Warn of each ``BASTION_*`` variable nothing reads (a typo, or a setting of another version).

    Its name only, never its value, with the closest known name when one is close.
    """
    general = {_var(name) for name in _Settings.model_fields}
    # Set as the settings read them: any case, empty means unset.
    fresh = {
        name.upper(): name
        for name, value in environ.items()
        if value != "" and name.upper().startswith("BASTION_") and name.upper() not in general | _checked
    }
    if not fresh:
        return
    known = known_variables()  # the providers are loaded only now: some name is not a general setting
    suffixes = {name.removeprefix("BASTION_"): name for name in known}
    for upper, name in sorted(fresh.items()):
        _checked.add(upper)
        if upper in known:
            continue
        close = difflib.get_close_matches(upper.removeprefix("BASTION_"), list(suffixes), n=1)
        if close:
            logger.warning("unknown variable %s is ignored; did you mean %s?", name, suffixes[close[0]])
        else:
            logger.warning("unknown variable %s is ignored", name)


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
