"""The verifier or OAuth proxy that ``BASTION_AUTH`` names, built from the ``BASTION_*`` variables.

``BASTION_AUTH`` chooses a verifier (``jwt``: RFC 7519 / RFC 9068 access tokens,
``introspection``: RFC 7662, ``apikeys``, ``remote``: an authorization server found
through RFC 8414 discovery) or an OAuth proxy of :mod:`bastion.providers` (``oidc``,
``google``, ``github``...; built by :mod:`bastion._config.providers`). The variables
are read by :mod:`bastion._config.settings`; this module checks that they make the
object they describe and builds it, at start-up: a missing or contradictory setting
raises a :class:`~bastion.ConfigurationError` that names the variable and never shows
a secret's value.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from bastion._config.settings import (
    _check_seconds,
    _check_url,
    _file_or_value,
    _list,
    _load,
    _one_or_many,
    _Settings,
    _var,
    known_variables,
)
from bastion._core.errors import ConfigurationError
from bastion._resource.verifier import Verifier

if TYPE_CHECKING:
    from bastion.authserver import AuthorizationServer

__all__ = ["auth_from_env", "from_env", "known_variables"]

logger = logging.getLogger("bastion")

#: The verifiers' BASTION_AUTH values; the OAuth proxies' are their providers' (bastion.providers).
VERIFIERS = ("jwt", "introspection", "apikeys", "remote")
#: Settings read by every proxy; ``mcp_scopes`` also by ``remote``.
_PROXY_FIELDS = ("store", "encryption_keys", "mcp_scopes")
_JWT_KEYS = ("jwt_jwks_uri", "jwt_public_key", "jwt_secret")


def from_env(environ: Mapping[str, str] | None = None) -> Verifier | AuthorizationServer:
    """The verifier or authorization server the ``BASTION_*`` variables describe (default: ``os.environ``).

    ``BASTION_AUTH`` is one of the values below (any case). Verifiers:

    - ``jwt``: exactly one of ``BASTION_JWT_JWKS_URI``, ``BASTION_JWT_PUBLIC_KEY``
      (PEM, or ``@/path/to/key.pem``) and ``BASTION_JWT_SECRET``; optionally
      ``BASTION_JWT_ISSUER``, ``BASTION_JWT_AUDIENCE``, ``BASTION_JWT_ALGORITHMS``,
      ``BASTION_JWT_REQUIRED_SCOPES`` (comma-separated lists), ``BASTION_JWT_LEEWAY``,
      ``BASTION_JWT_SCOPE_CLAIM``, ``BASTION_JWT_ROLES_CLAIM``.
    - ``introspection``: ``BASTION_INTROSPECTION_URL``, ``BASTION_INTROSPECTION_CLIENT_ID``,
      ``BASTION_INTROSPECTION_CLIENT_SECRET``; optionally ``..._AUTH_METHOD``
      (``client_secret_basic`` or ``client_secret_post``), ``..._ISSUER``, ``..._AUDIENCE``,
      ``..._REQUIRED_SCOPES``, ``..._ROLES_CLAIM``, ``..._CACHE_TTL``, ``..._TIMEOUT``.
    - ``apikeys``: ``BASTION_API_KEYS``, a JSON object (or ``@/path/to/keys.json``)
      mapping each key, or ``sha256:<hex digest>`` of it, to its principal
      (``{"subject": ..., "scopes": [...], "roles": [...]}`` or a subject string);
      optionally ``BASTION_API_KEY_HEADER`` (such as ``X-API-Key``).
    - ``remote``: a :class:`~bastion.RemoteAuthorization`: ``BASTION_REMOTE_ISSUER``;
      optionally ``BASTION_REMOTE_CONFIG_URL``, ``BASTION_REMOTE_AUDIENCE`` and
      ``BASTION_MCP_SCOPES`` (the scopes advertised).

    OAuth proxies of :mod:`bastion.providers` (``oidc``, ``github``, ``google``,
    ``entra``, ``auth0``, ``okta``, ``keycloak``, ``cognito``, ``workos``) need
    ``BASTION_BASE_URL`` and ``BASTION_<PROVIDER>_CLIENT_ID``, and take
    ``BASTION_<PROVIDER>_CLIENT_SECRET``, ``BASTION_<PROVIDER>_SCOPES`` (the scopes asked
    of the provider, space- or comma-separated), the provider's own settings (each
    provider class's ``env`` declares them), and for every proxy ``BASTION_STORE``
    (``sqlite:////var/lib/bastion/auth.db``, ``redis://host:6379/0`` or ``memory://``), ``BASTION_ENCRYPTION_KEYS``
    (comma-separated, newest first) and ``BASTION_MCP_SCOPES`` (the scopes MCP clients
    may ask for).

    Raises:
        ConfigurationError: a setting is missing, malformed or contradictory.
    """
    return auth_from_env(environ)


def auth_from_env(
    environ: Mapping[str, str] | None = None, *, mcp_scopes: Mapping[str, str] | Sequence[str] | None = None
) -> Verifier | AuthorizationServer:
    """:func:`from_env`, with the MCP scopes a proxy offers when ``BASTION_MCP_SCOPES`` is unset."""
    # The proxies are imported when asked for: importing bastion loads no provider.
    from bastion._config.providers import provider, proxies, remote

    settings = _load(environ)
    supported = (*VERIFIERS, *proxies())
    if not settings.auth:
        raise ConfigurationError(f"BASTION_AUTH is not set; set it to one of: {', '.join(supported)}")
    kind = settings.auth.strip().lower()
    kind = {alias: name for name, env in proxies().items() for alias in env.aliases}.get(kind, kind)
    if kind not in supported:
        raise ConfigurationError(f"unknown BASTION_AUTH {settings.auth!r}; supported values: {', '.join(supported)}")
    _warn_unused(settings, kind, os.environ if environ is None else environ)
    if kind == "jwt":
        return _jwt(settings)
    if kind == "introspection":
        return _introspection(settings)
    if kind == "apikeys":
        return _apikeys(settings)
    if kind == "remote":
        return remote(settings)
    return provider(settings, kind, environ, mcp_scopes=mcp_scopes)


def _warn_unused(settings: _Settings, kind: str, environ: Mapping[str, str]) -> None:
    from bastion._config.providers import proxies

    prefixes = {"jwt": "jwt_", "introspection": "introspection_", "apikeys": "api_key", "remote": "remote_"}
    providers = proxies()
    used = _PROXY_FIELDS if kind in providers else ("mcp_scopes",) if kind == "remote" else ()
    unused = [
        _var(name)
        for name in type(settings).model_fields
        if getattr(settings, name) is not None
        and (
            any(name.startswith(p) for k, p in prefixes.items() if k != kind)
            or (name in _PROXY_FIELDS and name not in used)
        )
    ]
    # Set as the settings read them: any case, empty means unset.
    present = {name.upper() for name, value in environ.items() if value != ""}
    unused += [name for other, env in providers.items() if other != kind for name in env.variables if name in present]
    if unused:
        logger.warning("BASTION_AUTH=%s: ignoring %s", kind, ", ".join(unused))


# -- the verifiers --------------------------------------------------------------


def _jwt(settings: _Settings) -> Verifier:
    sources = [name for name in _JWT_KEYS if getattr(settings, name) is not None]
    if not sources:
        raise ConfigurationError(
            "BASTION_AUTH=jwt needs one of BASTION_JWT_JWKS_URI, BASTION_JWT_PUBLIC_KEY or BASTION_JWT_SECRET"
        )
    if len(sources) > 1:
        raise ConfigurationError(f"set only one of {' and '.join(map(_var, sources))}: they contradict each other")
    options: dict[str, Any] = {}
    if settings.jwt_jwks_uri is not None:
        _check_url(settings.jwt_jwks_uri, "jwt_jwks_uri")
        options["jwks_uri"] = settings.jwt_jwks_uri
    elif settings.jwt_public_key is not None:
        options["public_key"] = _public_key(_file_or_value(settings.jwt_public_key, "jwt_public_key").strip())
    elif settings.jwt_secret is not None:
        options["secret"] = settings.jwt_secret.get_secret_value()
    optional: dict[str, Any] = {
        "issuer": _one_or_many(settings, "jwt_issuer"),
        "audience": _one_or_many(settings, "jwt_audience"),
        "algorithms": _list(settings, "jwt_algorithms"),
        "leeway": settings.jwt_leeway,
        "required_scopes": _list(settings, "jwt_required_scopes"),
    }
    _check_seconds(settings, "jwt_leeway")
    options.update({name: value for name, value in optional.items() if value is not None})
    from bastion._resource.jwt import ClaimNames, JWTVerifier

    names = {"scope": settings.jwt_scope_claim, "roles": settings.jwt_roles_claim}
    options["claims"] = ClaimNames(**{name: value for name, value in names.items() if value is not None})

    try:
        # Without BASTION_JWT_AUDIENCE, the server hands it its resource URL (BASTION_RESOURCE_URL).
        verifier: Verifier = JWTVerifier(**options, _server_sets_audience=True)
    except ConfigurationError as exc:
        raise ConfigurationError(f"BASTION_AUTH=jwt: {exc}") from None
    if settings.jwt_issuer is None:
        logger.warning(
            "BASTION_AUTH=jwt without BASTION_JWT_ISSUER: a token's iss is not checked (any issuer's token the "
            "key verifies is accepted), and the resource metadata names no authorization server unless "
            "authorization_servers= does; set BASTION_JWT_ISSUER to the issuer's identifier (comma-separated "
            "for several)"
        )
    return verifier


def _public_key(text: str) -> str | dict[str, Any]:
    """A PEM public key, or a JWK as a JSON object."""
    if text.startswith("{"):
        try:
            jwk = json.loads(text)
        except ValueError:
            raise ConfigurationError("BASTION_JWT_PUBLIC_KEY is neither PEM nor a JSON JWK") from None
        if not isinstance(jwk, dict):
            raise ConfigurationError("BASTION_JWT_PUBLIC_KEY is neither PEM nor a JSON JWK")
        return jwk
    if "\n" not in text and "\\n" in text:
        # One-line PEMs with escaped newlines are how .env files and CI secrets often hold them.
        text = text.replace("\\n", "\n")
    if not text.startswith("-----BEGIN"):
        raise ConfigurationError("BASTION_JWT_PUBLIC_KEY must be a PEM public key, a JSON JWK, or @/path/to/a/file")
    return text


def _introspection(settings: _Settings) -> Verifier:
    from bastion._resource.introspection import IntrospectionVerifier

    for name in ("introspection_url", "introspection_client_id", "introspection_client_secret"):
        if getattr(settings, name) is None:
            raise ConfigurationError(f"BASTION_AUTH=introspection needs {_var(name)}")
    assert settings.introspection_url is not None
    assert settings.introspection_client_id is not None
    assert settings.introspection_client_secret is not None
    _check_url(settings.introspection_url, "introspection_url")
    method = (settings.introspection_auth_method or "client_secret_basic").strip().lower()
    if method not in ("client_secret_basic", "client_secret_post"):
        raise ConfigurationError(
            "BASTION_INTROSPECTION_AUTH_METHOD must be client_secret_basic or client_secret_post, "
            f"got {settings.introspection_auth_method!r}"
        )
    _check_seconds(settings, "introspection_cache_ttl")
    _check_seconds(settings, "introspection_timeout", positive=True)
    options: dict[str, Any] = {
        "issuer": _one_or_many(settings, "introspection_issuer"),
        "audience": _one_or_many(settings, "introspection_audience"),
        "required_scopes": _list(settings, "introspection_required_scopes"),
        "roles_claim": settings.introspection_roles_claim,
        "cache_ttl": settings.introspection_cache_ttl,
        "timeout": settings.introspection_timeout,
    }
    try:
        return IntrospectionVerifier(
            settings.introspection_url,
            settings.introspection_client_id,
            settings.introspection_client_secret.get_secret_value(),
            auth_method="client_secret_post" if method == "client_secret_post" else "client_secret_basic",
            **{name: value for name, value in options.items() if value is not None},
        )
    except ConfigurationError as exc:
        raise ConfigurationError(f"BASTION_AUTH=introspection: {exc}") from None


def _apikeys(settings: _Settings) -> Verifier:
    from bastion._resource.apikeys import APIKeyVerifier, hash_api_key

    if settings.api_keys is None:
        raise ConfigurationError("BASTION_AUTH=apikeys needs BASTION_API_KEYS")
    header = settings.api_key_header
    if header is not None:
        try:
            APIKeyVerifier({}, header=header)
        except ConfigurationError as exc:
            raise ConfigurationError(f"BASTION_API_KEY_HEADER: {exc}") from None
    text = _file_or_value(settings.api_keys.get_secret_value(), "api_keys")
    try:
        table = json.loads(text)
    except json.JSONDecodeError as exc:
        # Only the position: the document holds the keys.
        raise ConfigurationError(
            f"BASTION_API_KEYS is not valid JSON (line {exc.lineno}, column {exc.colno})"
        ) from None
    if not isinstance(table, dict) or not table:
        raise ConfigurationError('BASTION_API_KEYS must be a non-empty JSON object: {"<key>": {"subject": ...}}')
    hashes: dict[str, Any] = {}
    for number, (key, principal) in enumerate(table.items(), 1):
        if not key or key != key.strip() or any(c.isspace() for c in key):
            raise ConfigurationError(f"BASTION_API_KEYS: key #{number} is empty or contains whitespace")
        digest = key[len("sha256:") :] if key.startswith("sha256:") else hash_api_key(key)
        if digest.lower() in hashes:
            raise ConfigurationError(f"BASTION_API_KEYS: key #{number} appears twice")
        hashes[digest.lower()] = principal
    try:
        return APIKeyVerifier.from_hashes(hashes, header=header)
    except ConfigurationError as exc:
        message = str(exc).replace("API key hash #", "key #").replace("API key #", "key #")
        raise ConfigurationError(f"BASTION_API_KEYS: {message}") from None
