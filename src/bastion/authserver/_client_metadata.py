"""Client metadata rules (RFC 7591 section 2): what makes a :class:`Client` record sound.

:func:`client_from_metadata` turns a metadata object into a :class:`Client`, checking
every field (strings bounded and printable, https URLs, a JWK Set of public keys only,
RFC 6749 section 3.3 scope names); :func:`check_client` checks that a record holds
together (grant types, response types, authentication method, secret and keys).
The registration endpoint, Client ID Metadata Documents and the static clients share
them; :func:`strict_json` is the JSON parser they all read metadata with.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from bastion.authserver._errors import InvalidClientMetadata, InvalidRedirectURI
from bastion.authserver._models import Client, ClientKind, as_scopes
from bastion.authserver._redirects import validate_redirect_uri

__all__ = [
    "APPLICATION_TYPES",
    "AUTH_METHODS",
    "CONFIDENTIAL_GRANTS",
    "GRANT_TYPES",
    "MAX_CONTACTS",
    "MAX_FIELD",
    "MAX_JWKS_KEYS",
    "MAX_REDIRECT_URIS",
    "SECRET_METHODS",
    "check_client",
    "client_from_metadata",
    "strict_json",
]

#: The longest string field of client metadata.
MAX_FIELD = 2048
#: The most redirect URIs one client may register.
MAX_REDIRECT_URIS = 10
#: The most contacts one client may register.
MAX_CONTACTS = 5
#: The most keys in a client's inline ``jwks``.
MAX_JWKS_KEYS = 10

#: Client authentication methods at the token endpoint (RFC 7591 section 2, RFC 7523).
AUTH_METHODS = frozenset({"none", "client_secret_basic", "client_secret_post", "private_key_jwt"})
#: Methods that authenticate with a shared secret, whose hash the server keeps.
SECRET_METHODS = frozenset({"client_secret_basic", "client_secret_post"})
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
#: Grant types a client may register for.
GRANT_TYPES = frozenset({"authorization_code", "refresh_token", "client_credentials", JWT_BEARER})
#: Grants that act without a user's redirect, so only for clients that authenticate.
CONFIDENTIAL_GRANTS = frozenset({"client_credentials", JWT_BEARER})
#: ``application_type`` values (OpenID Connect Dynamic Client Registration section 2).
APPLICATION_TYPES = frozenset({"web", "native"})
#: Members of a JWK that only a private or symmetric key has (RFC 7517, RFC 7518 section 6).
PRIVATE_JWK_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
URL_FIELDS = ("client_uri", "logo_uri", "tos_uri", "policy_uri")
TEXT_FIELDS = ("client_name", "software_id", "software_version")

_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")  # RFC 6749 section 3.3


def strict_json(raw: bytes | str) -> Any:
    """Parse JSON, refusing duplicate object keys, ``NaN``/``Infinity`` and absurd nesting.

    Raises:
        ValueError: the text is not such JSON (the message never quotes it).
    """

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for key, value in items:
            if key in data:
                raise ValueError("a member appears more than once")
            data[key] = value
        return data

    def constant(name: str) -> Any:
        raise ValueError(f"{name} is not a JSON number")

    try:
        return json.loads(raw, object_pairs_hook=pairs, parse_constant=constant)
    except RecursionError:
        raise ValueError("the JSON is nested too deeply") from None
    except UnicodeDecodeError:
        raise ValueError("the JSON is not valid UTF-8") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None


# -- reading one field ------------------------------------------------------------------------


def _text(data: Mapping[str, Any], name: str) -> str | None:
    value = data.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidClientMetadata(f"{name} must be a string")
    if len(value) > MAX_FIELD:
        raise InvalidClientMetadata(f"{name} is longer than {MAX_FIELD} characters")
    if not value.isprintable():
        raise InvalidClientMetadata(f"{name} holds control characters")
    return value


def _texts(data: Mapping[str, Any], name: str, limit: int) -> tuple[str, ...] | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise InvalidClientMetadata(f"{name} must be an array of strings")
    if len(value) > limit:
        raise InvalidClientMetadata(f"{name} holds more than {limit} values")
    for item in value:
        if len(item) > MAX_FIELD or not item.isprintable():
            raise InvalidClientMetadata(f"a value of {name} is too long or holds control characters")
    return tuple(dict.fromkeys(value))


def _https_url(name: str, value: str) -> str:
    try:
        parts = urlsplit(value)
    except ValueError:
        parts = None
    if (
        parts is None
        or parts.scheme != "https"
        or not parts.hostname
        or "@" in parts.netloc
        or not value.isascii()
        or any(c.isspace() for c in value)
    ):
        raise InvalidClientMetadata(f"{name} must be an https URL")
    return value


def _jwks(value: Any) -> dict[str, Any]:
    """A JWK Set of public keys (RFC 7517 section 5)."""
    if not isinstance(value, Mapping) or not isinstance(value.get("keys"), list):
        raise InvalidClientMetadata("jwks must be a JWK Set: an object with a keys array")
    keys = value["keys"]
    if not 1 <= len(keys) <= MAX_JWKS_KEYS:
        raise InvalidClientMetadata(f"jwks must hold between 1 and {MAX_JWKS_KEYS} keys")
    for key in keys:
        if not isinstance(key, Mapping) or not isinstance(key.get("kty"), str):
            raise InvalidClientMetadata("each key of jwks must be a JWK object with a kty")
        if PRIVATE_JWK_MEMBERS & key.keys():
            raise InvalidClientMetadata("jwks must hold public keys only")
    return {"keys": [dict(key) for key in keys]}


def _flag(data: Mapping[str, Any], name: str) -> bool:
    """A boolean member, ``False`` when absent (RFC 9449 section 5.2's ``dpop_bound_access_tokens``)."""
    value = data.get(name, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise InvalidClientMetadata(f"{name} must be true or false")
    return value


def _scope(value: str | None) -> str | None:
    if value is None:
        return None
    scopes = as_scopes(value)
    if not scopes or not all(_SCOPE_TOKEN.fullmatch(scope) for scope in scopes):
        raise InvalidClientMetadata("scope must be a space-separated list of scope names")
    return " ".join(scopes)


# -- the whole record -------------------------------------------------------------------------


def check_client(client: Client) -> None:
    """Check that a client's metadata holds together.

    Raises:
        InvalidRedirectURI: a redirect URI breaks the rules of ``_redirects``.
        InvalidClientMetadata: any other inconsistency (unknown method or grant,
            a confidential grant for a public client, a secret method without a
            secret, ``private_key_jwt`` without keys...).
    """
    for uri in client.redirect_uris:
        validate_redirect_uri(uri)
    method = client.token_endpoint_auth_method
    if method not in AUTH_METHODS:
        raise InvalidClientMetadata(f"token_endpoint_auth_method must be one of {sorted(AUTH_METHODS)}")
    unknown = [grant for grant in client.grant_types if grant not in GRANT_TYPES]
    if unknown or not client.grant_types:
        raise InvalidClientMetadata(f"grant_types must be a non-empty subset of {sorted(GRANT_TYPES)}")
    if set(client.grant_types) == {"refresh_token"}:
        raise InvalidClientMetadata("refresh_token needs a grant that issues refresh tokens")
    if any(response != "code" for response in client.response_types):
        raise InvalidClientMetadata("the only response type is code")
    if "authorization_code" in client.grant_types:
        if not client.redirect_uris:
            raise InvalidRedirectURI("the authorization_code grant needs at least one redirect URI")
        if "code" not in client.response_types:
            raise InvalidClientMetadata("the authorization_code grant needs the code response type")
    if client.is_public and CONFIDENTIAL_GRANTS & set(client.grant_types):
        raise InvalidClientMetadata("client_credentials and jwt-bearer grants need a client that authenticates")
    if method in SECRET_METHODS and not client.client_secret_hash:
        raise InvalidClientMetadata(f"{method} needs a client secret")
    if method not in SECRET_METHODS and client.client_secret_hash:
        raise InvalidClientMetadata(f"a client using {method} has no client secret")
    if client.jwks is not None and client.jwks_uri is not None:
        raise InvalidClientMetadata("jwks and jwks_uri must not both be present (RFC 7591 section 2)")
    if method == "private_key_jwt" and client.jwks is None and client.jwks_uri is None:
        raise InvalidClientMetadata("private_key_jwt needs jwks or jwks_uri")
    if client.jwks is not None:
        _jwks(client.jwks)
    if client.jwks_uri is not None:
        _https_url("jwks_uri", client.jwks_uri)
    if client.application_type is not None and client.application_type not in APPLICATION_TYPES:
        raise InvalidClientMetadata("application_type must be web or native")
    if not isinstance(client.dpop_bound_access_tokens, bool):
        raise InvalidClientMetadata("dpop_bound_access_tokens must be true or false")
    if client.introspection and client.is_public:
        raise InvalidClientMetadata("introspection needs a client that authenticates")


def client_from_metadata(
    data: Mapping[str, Any],
    *,
    client_id: str,
    kind: ClientKind,
    default_auth_method: str = "client_secret_basic",
    default_application_type: str | None = "web",
    client_secret_hash: str | None = None,
    client_id_issued_at: int | None = None,
    client_secret_expires_at: int | None = None,
    introspection: bool = False,
) -> Client:
    """A :class:`Client` from RFC 7591 client metadata, every field checked; unknown fields are ignored.

    Defaults: ``grant_types`` ``authorization_code`` and ``refresh_token`` (OAuth 2.1
    issues refresh tokens within the code flow), ``response_types`` ``code`` when
    the code grant is used, ``application_type`` ``default_application_type``.
    ``introspection`` is the operator's to give (the clients file), never read from ``data``.

    Raises:
        InvalidRedirectURI: ``redirect_uris`` is malformed or holds a refused URI.
        InvalidClientMetadata: any other field is wrong or inconsistent.
    """
    redirects = data.get("redirect_uris")
    if redirects is not None and (
        not isinstance(redirects, list) or not all(isinstance(uri, str) for uri in redirects)
    ):
        raise InvalidRedirectURI("redirect_uris must be an array of strings")
    if redirects is not None and len(redirects) > MAX_REDIRECT_URIS:
        raise InvalidRedirectURI(f"at most {MAX_REDIRECT_URIS} redirect URIs may be registered")
    redirect_uris = tuple(dict.fromkeys(validate_redirect_uri(uri) for uri in redirects or ()))
    grant_types = _texts(data, "grant_types", len(GRANT_TYPES)) or ("authorization_code", "refresh_token")
    default_responses = ("code",) if "authorization_code" in grant_types else ()
    response_types = _texts(data, "response_types", 1)
    if response_types is not None and ("code" in response_types) != ("authorization_code" in grant_types):
        raise InvalidClientMetadata("response_types code goes with the authorization_code grant, and only with it")
    application_type = _text(data, "application_type") or default_application_type
    if application_type is not None and application_type not in APPLICATION_TYPES:
        raise InvalidClientMetadata("application_type must be web or native")
    jwks = None if data.get("jwks") is None else _jwks(data["jwks"])
    jwks_uri = _text(data, "jwks_uri")
    urls = {name: _text(data, name) for name in URL_FIELDS}
    client = Client(
        client_id=client_id,
        redirect_uris=redirect_uris,
        token_endpoint_auth_method=_text(data, "token_endpoint_auth_method") or default_auth_method,
        grant_types=grant_types,
        response_types=default_responses if response_types is None else response_types,
        scope=_scope(_text(data, "scope")),
        application_type=application_type,
        contacts=_texts(data, "contacts", MAX_CONTACTS) or (),
        jwks=jwks,
        jwks_uri=None if jwks_uri is None else _https_url("jwks_uri", jwks_uri),
        client_secret_hash=client_secret_hash,
        client_id_issued_at=client_id_issued_at,
        client_secret_expires_at=client_secret_expires_at,
        kind=kind,
        introspection=introspection,
        dpop_bound_access_tokens=_flag(data, "dpop_bound_access_tokens"),
        **{name: _text(data, name) for name in TEXT_FIELDS},
        **{name: None if url is None else _https_url(name, url) for name, url in urls.items()},
    )
    check_client(client)
    return client
