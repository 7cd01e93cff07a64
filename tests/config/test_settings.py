"""from_env(): every branch, every missing or contradictory setting, and no secret in a message."""

from __future__ import annotations

import json
import logging
import socket
import time
from pathlib import Path
from typing import Any

import httpx2
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc import jwt
from joserfc.jwk import OctKey, RSAKey

from bastion import (
    ConfigurationError,
    InsufficientScope,
    InvalidAudience,
    InvalidIssuer,
    MCPServer,
    TokenExpired,
    get_access_token,
)
from bastion._config.auth import auth_from_env, from_env
from bastion._config.settings import ServerSettings, server_settings
from bastion._resource.apikeys import APIKeyVerifier, hash_api_key
from bastion._resource.introspection import IntrospectionVerifier
from bastion._resource.jwt import JWTVerifier
from bastion._resource.remote import RemoteAuthorization
from bastion.authserver._vault import TokenVault
from bastion.providers import OIDC
from bastion.providers._env import PROVIDERS, Provider
from bastion.providers.auth0 import Auth0
from bastion.providers.cognito import Cognito
from bastion.providers.entra import EntraID
from bastion.providers.github import GitHub
from bastion.providers.google import Google
from bastion.providers.keycloak import Keycloak
from bastion.providers.okta import Okta
from bastion.providers.workos import WorkOS
from bastion.proxy import OAuthProxy
from bastion.storage import MemoryStore, RedisStore, SQLiteStore
from bastion.testing import serve

from support.notes import MCP_HEADERS, rpc, served
from support.oidc import OIDCProvider, skip_without_node

SECRET = "hs256-shared-secret-of-at-least-32-bytes!"
CLIENT_SECRET = "introspection-client-secret-value"
API_KEY = "sk-live-settings-test-key"
UPSTREAM_SECRET = "upstream-client-secret-value"


@pytest.fixture(scope="module")
def public_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )


def refused(environ: dict[str, str], *names: str) -> ConfigurationError:
    """from_env's error for ``environ``, checked to name ``names`` and to echo no secret."""
    with pytest.raises(ConfigurationError) as info:
        from_env(environ)
    message = str(info.value)
    for name in names:
        assert name in message
    for secret in (SECRET, CLIENT_SECRET, API_KEY, UPSTREAM_SECRET, KEY_1, KEY_2):
        assert secret not in message
    return info.value


def hs256(claims: dict[str, Any]) -> str:
    return jwt.encode({"alg": "HS256"}, {"exp": int(time.time()) + 300, **claims}, OctKey.import_key(SECRET.encode()))


# -- BASTION_AUTH --------------------------------------------------------------


def test_bastion_auth_is_required() -> None:
    refused({}, "BASTION_AUTH", "jwt", "introspection", "apikeys", "remote", "oidc", "google", "workos")
    refused({"BASTION_AUTH": ""}, "BASTION_AUTH")


@pytest.mark.parametrize("value", ["facebook", "saml", "entra id", "jwt,apikeys"])
def test_unknown_bastion_auth_lists_the_supported_values(value: str) -> None:
    error = refused({"BASTION_AUTH": value}, "unknown BASTION_AUTH", "jwt, introspection, apikeys")
    assert value in str(error)


def test_values_and_names_are_case_insensitive_and_unknown_variables_ignored() -> None:
    environ = {"bastion_auth": " APIKeys ", "Bastion_Api_Keys": json.dumps({API_KEY: "ci"}), "BASTION_FUTURE": "x"}
    assert isinstance(from_env(environ), APIKeyVerifier)


def test_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BASTION_AUTH", "apikeys")
    monkeypatch.setenv("BASTION_API_KEYS", json.dumps({API_KEY: "ci"}))
    monkeypatch.setenv("BASTION_API_KEY_HEADER", "X-API-Key")
    verifier = from_env()
    assert isinstance(verifier, APIKeyVerifier)
    assert verifier.header == "X-API-Key"


def test_settings_of_other_methods_are_ignored_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    environ = {"BASTION_AUTH": "apikeys", "BASTION_API_KEYS": json.dumps({API_KEY: "ci"}), "BASTION_JWT_SECRET": SECRET}
    with caplog.at_level(logging.WARNING, logger="bastion"):
        from_env(environ)
    assert "BASTION_JWT_SECRET" in caplog.text
    assert SECRET not in caplog.text


# -- jwt -------------------------------------------------------------------------


def jwt_from_env(environ: dict[str, str]) -> JWTVerifier:
    verifier = from_env(environ)
    assert isinstance(verifier, JWTVerifier)
    return verifier


async def test_jwt_with_a_secret_and_every_option() -> None:
    verifier = jwt_from_env(
        {
            "BASTION_AUTH": "jwt",
            "BASTION_JWT_SECRET": SECRET,
            "BASTION_JWT_ISSUER": "https://as.example, https://old-as.example",
            "BASTION_JWT_AUDIENCE": "https://notes.example/mcp",
            "BASTION_JWT_ALGORITHMS": "HS256",
            "BASTION_JWT_LEEWAY": "5",
            "BASTION_JWT_REQUIRED_SCOPES": "mcp",
            "BASTION_JWT_SCOPE_CLAIM": "permissions",
            "BASTION_JWT_ROLES_CLAIM": "realm_access.roles",
        }
    )
    assert verifier.issuers == ("https://as.example", "https://old-as.example")
    good = {
        "iss": "https://old-as.example",
        "aud": "https://notes.example/mcp",
        "sub": "ann",
        "permissions": ["mcp", "notes:read"],
        "realm_access": {"roles": ["admin"]},
    }
    access = await verifier.verify(hs256(good))
    assert access.subject == "ann"
    assert access.scopes == ["mcp", "notes:read"]
    assert access.roles == ["admin"]
    with pytest.raises(InvalidIssuer):
        await verifier.verify(hs256({**good, "iss": "https://evil.example"}))
    with pytest.raises(InvalidAudience):
        await verifier.verify(hs256({**good, "aud": "https://other.example/mcp"}))
    with pytest.raises(InsufficientScope):
        await verifier.verify(hs256({**good, "permissions": ["notes:read"]}))
    # The leeway is 5 seconds: a token that expired a minute ago is refused.
    with pytest.raises(TokenExpired):
        await verifier.verify(hs256({**good, "exp": int(time.time()) - 60}))


def test_jwt_with_a_public_key_inline_in_a_file_on_one_line_or_as_a_jwk(public_pem: str, tmp_path: Path) -> None:
    path = tmp_path / "key.pem"
    path.write_text(public_pem)
    one_line = public_pem.strip().replace("\n", "\\n")
    jwk = json.dumps(RSAKey.import_key(public_pem).as_dict())
    for value in (public_pem, f"@{path}", one_line, jwk):
        verifier = jwt_from_env({"BASTION_AUTH": "jwt", "BASTION_JWT_PUBLIC_KEY": value, "BASTION_JWT_AUDIENCE": "a"})
        assert verifier.algorithms == ("RS256",)
    verifier = jwt_from_env(
        {"BASTION_AUTH": "JWT", "BASTION_JWT_PUBLIC_KEY": public_pem, "BASTION_JWT_ALGORITHMS": "RS256, PS256"}
    )
    assert verifier.algorithms == ("RS256", "PS256")


def test_jwt_with_a_key_set() -> None:
    verifier = jwt_from_env(
        {
            "BASTION_AUTH": "jwt",
            "BASTION_JWT_JWKS_URI": "https://as.example/jwks.json",
            "BASTION_JWT_ISSUER": "https://as.example",
            "BASTION_JWT_AUDIENCE": "https://notes.example/mcp, https://notes.example/",
        }
    )
    assert verifier.issuers == ("https://as.example",)
    assert verifier.audiences == ("https://notes.example/mcp", "https://notes.example/")


def test_jwt_needs_exactly_one_source_of_keys(public_pem: str) -> None:
    names = ("BASTION_JWT_JWKS_URI", "BASTION_JWT_PUBLIC_KEY", "BASTION_JWT_SECRET")
    refused({"BASTION_AUTH": "jwt", "BASTION_JWT_ISSUER": "https://as.example"}, *names)
    refused(
        {"BASTION_AUTH": "jwt", "BASTION_JWT_SECRET": SECRET, "BASTION_JWT_PUBLIC_KEY": public_pem},
        "BASTION_JWT_PUBLIC_KEY",
        "BASTION_JWT_SECRET",
        "contradict",
    )
    refused(
        {"BASTION_AUTH": "jwt", "BASTION_JWT_SECRET": SECRET, "BASTION_JWT_JWKS_URI": "https://as.example/jwks"},
        "BASTION_JWT_JWKS_URI",
        "BASTION_JWT_SECRET",
    )


@pytest.mark.parametrize(
    ("extra", "name"),
    [
        ({"BASTION_JWT_LEEWAY": "half a minute"}, "BASTION_JWT_LEEWAY"),
        ({"BASTION_JWT_LEEWAY": "-1"}, "BASTION_JWT_LEEWAY"),
        ({"BASTION_JWT_LEEWAY": "nan"}, "BASTION_JWT_LEEWAY"),
        ({"BASTION_JWT_ALGORITHMS": "none"}, "BASTION_AUTH=jwt"),
        ({"BASTION_JWT_ALGORITHMS": "RS256"}, "BASTION_AUTH=jwt"),
    ],
)
def test_jwt_bad_options(extra: dict[str, str], name: str) -> None:
    refused({"BASTION_AUTH": "jwt", "BASTION_JWT_SECRET": SECRET, **extra}, name)


def test_jwt_bad_keys(tmp_path: Path) -> None:
    refused({"BASTION_AUTH": "jwt", "BASTION_JWT_SECRET": "short"}, "BASTION_AUTH=jwt", "32 bytes")
    error = refused({"BASTION_AUTH": "jwt", "BASTION_JWT_SECRET": "too-short-" + SECRET[:8]})
    assert "too-short" not in str(error)
    missing = tmp_path / "missing.pem"
    refused({"BASTION_AUTH": "jwt", "BASTION_JWT_PUBLIC_KEY": f"@{missing}"}, "BASTION_JWT_PUBLIC_KEY", str(missing))
    refused({"BASTION_AUTH": "jwt", "BASTION_JWT_PUBLIC_KEY": "/etc/key.pem"}, "BASTION_JWT_PUBLIC_KEY", "PEM")
    for value in ("{not json", "[1]"):
        refused({"BASTION_AUTH": "jwt", "BASTION_JWT_PUBLIC_KEY": value}, "BASTION_JWT_PUBLIC_KEY")
    refused({"BASTION_AUTH": "jwt", "BASTION_JWT_JWKS_URI": "as.example/jwks"}, "BASTION_JWT_JWKS_URI")


# -- introspection ---------------------------------------------------------------

INTROSPECTION = {
    "BASTION_AUTH": "introspection",
    "BASTION_INTROSPECTION_URL": "https://as.example/introspect",
    "BASTION_INTROSPECTION_CLIENT_ID": "notes-rs",
    "BASTION_INTROSPECTION_CLIENT_SECRET": CLIENT_SECRET,
}


def test_introspection_with_defaults_and_with_every_option() -> None:
    verifier = from_env(INTROSPECTION)
    assert isinstance(verifier, IntrospectionVerifier)
    assert verifier.introspection_endpoint == "https://as.example/introspect"
    assert verifier.client_id == "notes-rs"
    assert verifier.auth_method == "client_secret_basic"
    assert (verifier.issuers, verifier.audience, verifier.ttl) == ((), None, 60)
    verifier = from_env(
        {
            **INTROSPECTION,
            "BASTION_INTROSPECTION_AUTH_METHOD": "Client_Secret_Post",
            "BASTION_INTROSPECTION_ISSUER": "https://as.example",
            "BASTION_INTROSPECTION_AUDIENCE": "https://notes.example/mcp,https://notes.example",
            "BASTION_INTROSPECTION_REQUIRED_SCOPES": "mcp notes:read",
            "BASTION_INTROSPECTION_ROLES_CLAIM": "groups",
            "BASTION_INTROSPECTION_CACHE_TTL": "15",
            "BASTION_INTROSPECTION_TIMEOUT": "2.5",
        }
    )
    assert isinstance(verifier, IntrospectionVerifier)
    assert verifier.auth_method == "client_secret_post"
    assert verifier.issuers == ("https://as.example",)
    assert verifier.audience == ("https://notes.example/mcp", "https://notes.example")
    assert verifier.required_scopes == ("mcp", "notes:read")
    assert (verifier.roles_claim, verifier.ttl, verifier.timeout) == ("groups", 15, 2.5)
    assert CLIENT_SECRET not in repr(verifier)


@pytest.mark.parametrize(
    "name", ["BASTION_INTROSPECTION_URL", "BASTION_INTROSPECTION_CLIENT_ID", "BASTION_INTROSPECTION_CLIENT_SECRET"]
)
def test_introspection_needs_url_and_client_credentials(name: str) -> None:
    refused({k: v for k, v in INTROSPECTION.items() if k != name}, name)


@pytest.mark.parametrize(
    ("extra", "name"),
    [
        ({"BASTION_INTROSPECTION_AUTH_METHOD": "private_key_jwt"}, "BASTION_INTROSPECTION_AUTH_METHOD"),
        ({"BASTION_INTROSPECTION_URL": "as.example/introspect"}, "BASTION_INTROSPECTION_URL"),
        ({"BASTION_INTROSPECTION_CACHE_TTL": "soon"}, "BASTION_INTROSPECTION_CACHE_TTL"),
        ({"BASTION_INTROSPECTION_CACHE_TTL": "-5"}, "BASTION_INTROSPECTION_CACHE_TTL"),
        ({"BASTION_INTROSPECTION_TIMEOUT": "0"}, "BASTION_INTROSPECTION_TIMEOUT"),
        ({"BASTION_INTROSPECTION_TIMEOUT": "inf"}, "BASTION_INTROSPECTION_TIMEOUT"),
        ({"BASTION_INTROSPECTION_ISSUER": ","}, "BASTION_INTROSPECTION_ISSUER"),
    ],
)
def test_introspection_bad_options(extra: dict[str, str], name: str) -> None:
    refused({**INTROSPECTION, **extra}, name)


# -- apikeys ---------------------------------------------------------------------


async def test_api_keys_raw_and_hashed_inline_or_from_a_file(tmp_path: Path) -> None:
    table = {
        API_KEY: {"subject": "ci", "scopes": ["notes:read"], "roles": ["robot"]},
        "sha256:" + hash_api_key("sk-other-key"): "alice",
    }
    path = tmp_path / "keys.json"
    path.write_text(json.dumps(table))
    for value in (json.dumps(table), f"@{path}"):
        verifier = from_env({"BASTION_AUTH": "apikeys", "BASTION_API_KEYS": value})
        assert isinstance(verifier, APIKeyVerifier)
        assert verifier.header is None
        access = await verifier.verify(API_KEY)
        assert (access.subject, access.scopes, access.roles) == ("ci", ["notes:read"], ["robot"])
        assert (await verifier.verify("sk-other-key")).subject == "alice"


@pytest.mark.parametrize(
    ("keys", "names"),
    [
        (None, ("BASTION_API_KEYS",)),
        (f'{{"{API_KEY}": ', ("BASTION_API_KEYS", "not valid JSON")),
        (json.dumps([API_KEY]), ("BASTION_API_KEYS", "JSON object")),
        ("{}", ("BASTION_API_KEYS", "non-empty")),
        (json.dumps({API_KEY: {"scopes": ["a"]}}), ("BASTION_API_KEYS", "key #1", "subject")),
        (json.dumps({"ok-key-1": "a", API_KEY: {"subject": "b", "colour": "red"}}), ("key #2", "colour")),
        (json.dumps({API_KEY: 7}), ("BASTION_API_KEYS", "key #1")),
        (json.dumps({f"{API_KEY} x": "a"}), ("BASTION_API_KEYS", "whitespace")),
        (json.dumps({"sha256:abc": "a"}), ("BASTION_API_KEYS", "SHA-256")),
        (json.dumps({API_KEY: "a", "sha256:" + hash_api_key(API_KEY): "b"}), ("key #2", "twice")),
    ],
)
def test_api_keys_bad_table(keys: str | None, names: tuple[str, ...]) -> None:
    environ = {"BASTION_AUTH": "apikeys"}
    if keys is not None:
        environ["BASTION_API_KEYS"] = keys
    refused(environ, *names)


def test_api_keys_bad_header_or_missing_file(tmp_path: Path) -> None:
    keys = json.dumps({API_KEY: "ci"})
    refused({"BASTION_AUTH": "apikeys", "BASTION_API_KEYS": keys, "BASTION_API_KEY_HEADER": "X API"}, "HEADER")
    refused({"BASTION_AUTH": "apikeys", "BASTION_API_KEYS": f"@{tmp_path / 'nope.json'}"}, "BASTION_API_KEYS")


# -- server settings -------------------------------------------------------------


def test_server_settings() -> None:
    assert server_settings({}) == ServerSettings()
    settings = server_settings(
        {"BASTION_RESOURCE_URL": "https://notes.example/mcp", "BASTION_BASE_URL": "https://notes.example"}
    )
    assert settings.resource_url == "https://notes.example/mcp"
    assert settings.base_url == "https://notes.example"
    with pytest.raises(ConfigurationError, match="BASTION_RESOURCE_URL"):
        server_settings({"BASTION_RESOURCE_URL": "notes.example/mcp"})
    with pytest.raises(ConfigurationError, match="BASTION_BASE_URL"):
        server_settings({"BASTION_BASE_URL": "ftp://notes.example"})


# -- through MCPServer -----------------------------------------------------------


async def test_mcp_server_builds_its_verifier_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BASTION_AUTH", "apikeys")
    monkeypatch.setenv("BASTION_API_KEYS", json.dumps({API_KEY: {"subject": "ci"}}))
    monkeypatch.setenv("BASTION_API_KEY_HEADER", "X-API-Key")
    monkeypatch.setenv("BASTION_RESOURCE_URL", "https://notes.example/mcp")
    mcp = MCPServer("Notes")
    assert isinstance(mcp.verifier, APIKeyVerifier)

    @mcp.tool()
    def whoami() -> str:
        return get_access_token().subject or ""

    with served(mcp, stateless_http=True, json_response=True) as url:
        async with httpx2.AsyncClient() as http:
            call = rpc("tools/call", {"name": "whoami", "arguments": {}})
            ok = await http.post(url, json=call, headers={**MCP_HEADERS, "X-API-Key": API_KEY})
            assert ok.json()["result"]["content"][0]["text"] == "ci"
            missing = await http.post(url, json=call, headers=MCP_HEADERS)
            assert missing.status_code == 401


def test_mcp_server_fails_at_start_up_on_a_bad_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BASTION_AUTH", "introspection")
    monkeypatch.setenv("BASTION_INTROSPECTION_CLIENT_SECRET", CLIENT_SECRET)
    with pytest.raises(ConfigurationError, match="BASTION_INTROSPECTION_URL") as info:
        MCPServer("Notes")
    assert CLIENT_SECRET not in str(info.value)


# -- OAuth proxies of bastion.providers -------------------------------------------------

BASE = "https://notes.example.com"
KEY_1 = TokenVault.generate_key()
KEY_2 = TokenVault.generate_key()

#: Each provider's minimal settings, without BASTION_AUTH and BASTION_BASE_URL.
PROXIES: dict[str, dict[str, str]] = {
    "github": {"BASTION_GITHUB_CLIENT_ID": "client-1", "BASTION_GITHUB_CLIENT_SECRET": UPSTREAM_SECRET},
    "google": {"BASTION_GOOGLE_CLIENT_ID": "client-1", "BASTION_GOOGLE_CLIENT_SECRET": UPSTREAM_SECRET},
    "entra": {"BASTION_ENTRA_CLIENT_ID": "client-1", "BASTION_ENTRA_CLIENT_SECRET": UPSTREAM_SECRET},
    "auth0": {
        "BASTION_AUTH0_DOMAIN": "tenant.eu.auth0.com",
        "BASTION_AUTH0_CLIENT_ID": "client-1",
        "BASTION_AUTH0_CLIENT_SECRET": UPSTREAM_SECRET,
    },
    "okta": {
        "BASTION_OKTA_DOMAIN": "acme.okta.com",
        "BASTION_OKTA_CLIENT_ID": "client-1",
        "BASTION_OKTA_CLIENT_SECRET": UPSTREAM_SECRET,
    },
    "keycloak": {
        "BASTION_KEYCLOAK_SERVER_URL": "https://sso.example.com",
        "BASTION_KEYCLOAK_REALM": "staff",
        "BASTION_KEYCLOAK_CLIENT_ID": "client-1",
        "BASTION_KEYCLOAK_CLIENT_SECRET": UPSTREAM_SECRET,
    },
    "cognito": {
        "BASTION_COGNITO_DOMAIN": "acme.auth.eu-west-1.amazoncognito.com",
        "BASTION_COGNITO_REGION": "eu-west-1",
        "BASTION_COGNITO_USER_POOL_ID": "eu-west-1_AbCd",
        "BASTION_COGNITO_CLIENT_ID": "client-1",
        "BASTION_COGNITO_CLIENT_SECRET": UPSTREAM_SECRET,
    },
    "workos": {"BASTION_WORKOS_DOMAIN": "acme.authkit.app", "BASTION_WORKOS_CLIENT_ID": "client-1"},
}

#: Each provider's class, and what its settings above make of its upstream endpoints.
EXPECTED: dict[str, tuple[type[OAuthProxy], str, str]] = {
    "github": (GitHub, "https://github.com/login/oauth/authorize", "https://github.com/login/oauth/access_token"),
    "google": (
        Google,
        "https://accounts.google.com/o/oauth2/v2/auth",
        "https://oauth2.googleapis.com/token",
    ),
    "entra": (
        EntraID,
        "https://login.microsoftonline.com/common/oauth2/v2.0/authorize",
        "https://login.microsoftonline.com/common/oauth2/v2.0/token",
    ),
    "auth0": (Auth0, "https://tenant.eu.auth0.com/authorize", "https://tenant.eu.auth0.com/oauth/token"),
    "okta": (
        Okta,
        "https://acme.okta.com/oauth2/default/v1/authorize",
        "https://acme.okta.com/oauth2/default/v1/token",
    ),
    "keycloak": (
        Keycloak,
        "https://sso.example.com/realms/staff/protocol/openid-connect/auth",
        "https://sso.example.com/realms/staff/protocol/openid-connect/token",
    ),
    "cognito": (
        Cognito,
        "https://acme.auth.eu-west-1.amazoncognito.com/oauth2/authorize",
        "https://acme.auth.eu-west-1.amazoncognito.com/oauth2/token",
    ),
    "workos": (WorkOS, "https://acme.authkit.app/oauth2/authorize", "https://acme.authkit.app/oauth2/token"),
}


def proxy(kind: str, **extra: str) -> OAuthProxy:
    """The proxy from ``kind``'s minimal settings, an in-memory store and ``extra`` variables."""
    environ = {"BASTION_AUTH": kind, "BASTION_BASE_URL": BASE, "BASTION_STORE": "memory://", **PROXIES[kind], **extra}
    server = from_env(environ)
    assert isinstance(server, OAuthProxy)
    return server


@pytest.mark.parametrize("kind", sorted(PROXIES))
def test_each_provider_from_its_variables(kind: str) -> None:
    cls, authorize, token = EXPECTED[kind]
    server = proxy(kind)
    assert type(server) is cls
    assert server.issuer == BASE + "/"
    assert server.callback_url == BASE + "/auth/callback"
    assert (server.upstream.client_id, server.upstream.authorization_endpoint) == ("client-1", authorize)
    assert server.upstream.token_endpoint == token
    assert server.upstream.client_secret == (None if kind == "workos" else UPSTREAM_SECRET)
    assert isinstance(server.store, MemoryStore)
    assert UPSTREAM_SECRET not in repr(server.upstream)


@pytest.mark.parametrize(
    ("kind", "extra", "check"),
    [
        (
            "github",
            {"BASTION_GITHUB_URL": "https://git.acme.com", "BASTION_GITHUB_API_URL": "https://git.acme.com/api/v3"},
            lambda u: (
                (u.authorization_endpoint, u.user_endpoint)
                == ("https://git.acme.com/login/oauth/authorize", "https://git.acme.com/api/v3/user")
            ),
        ),
        (
            "google",
            {"BASTION_GOOGLE_HOSTED_DOMAIN": "acme.com"},
            lambda u: u.authorize_params["hd"] == "acme.com" and u.required_claims == {"hd": "acme.com"},
        ),
        (
            "entra",
            {"BASTION_ENTRA_TENANT": "acme.onmicrosoft.com", "BASTION_ENTRA_API_SCOPES": "api://notes/read"},
            lambda u: (
                u.authorization_endpoint.startswith("https://login.microsoftonline.com/acme.onmicrosoft.com/")
                and "api://notes/read" in u.scopes
            ),
        ),
        ("auth0", {"BASTION_AUTH0_AUDIENCE": "https://api.acme.com"}, lambda u: u.authorize_params["audience"]),
        (
            "okta",
            {"BASTION_OKTA_AUTHORIZATION_SERVER": "aus1notes"},
            lambda u: u.token_endpoint == "https://acme.okta.com/oauth2/aus1notes/v1/token",
        ),
        (
            "workos",
            {"BASTION_WORKOS_CLIENT_SECRET": UPSTREAM_SECRET},
            lambda u: u.client_secret == UPSTREAM_SECRET,
        ),
    ],
)
def test_provider_specific_variables(kind: str, extra: dict[str, str], check: Any) -> None:
    assert check(proxy(kind, **extra).upstream)


def test_scopes_asked_upstream_and_offered_to_mcp_clients() -> None:
    server = proxy("google", BASTION_GOOGLE_SCOPES="openid, email  https://www.googleapis.com/auth/drive.readonly")
    assert server.upstream.scopes == ("openid", "email", "https://www.googleapis.com/auth/drive.readonly")
    assert server.scopes == {}
    server = proxy("keycloak", BASTION_MCP_SCOPES="notes:read,notes:write")
    assert set(server.scopes) == {"notes:read", "notes:write"}
    refused({"BASTION_AUTH": "github", "BASTION_BASE_URL": BASE, **PROXIES["github"], "BASTION_GITHUB_SCOPES": " , "},
            "BASTION_GITHUB_SCOPES", "names nothing")  # fmt: skip
    refused({"BASTION_AUTH": "okta", "BASTION_BASE_URL": BASE, **PROXIES["okta"], "BASTION_OKTA_SCOPES": 'openid "x'},
            "BASTION_OKTA_SCOPES")  # fmt: skip


def test_offered_scopes_default_for_a_caller_and_the_environment_wins() -> None:
    environ = {"BASTION_AUTH": "google", "BASTION_BASE_URL": BASE, "BASTION_STORE": "memory://", **PROXIES["google"]}
    demo = {"notes:read": "Read your notes"}
    server = auth_from_env(environ, mcp_scopes=demo)
    assert isinstance(server, OAuthProxy)
    assert server.scopes == demo
    server = auth_from_env({**environ, "BASTION_MCP_SCOPES": "mcp"}, mcp_scopes=demo)
    assert isinstance(server, OAuthProxy)
    assert server.scopes == {"mcp": "mcp"}


async def test_store_url(tmp_path: Path) -> None:
    db = tmp_path / "auth.db"
    server = proxy("github", BASTION_STORE=f"sqlite:///{db}")
    assert isinstance(server.store, SQLiteStore)
    assert server.store.path == db
    await server.store.put("probe", "k", b"v")
    assert db.exists()
    redis = proxy("github", BASTION_STORE="redis://127.0.0.1:6379/0?prefix=app:")
    assert isinstance(redis.store, RedisStore)
    assert redis.store.prefix == "app:"
    refused({"BASTION_AUTH": "github", "BASTION_BASE_URL": BASE, **PROXIES["github"], "BASTION_STORE": "postgres://x"},
            "BASTION_STORE", "postgres")  # fmt: skip


async def test_encryption_keys_seal_with_the_first_and_open_with_all() -> None:
    old = proxy("google", BASTION_ENCRYPTION_KEYS=KEY_2)
    sealed = await old.vault.seal(b"upstream token", context=b"ctx")
    server = proxy("google", BASTION_ENCRYPTION_KEYS=f"{KEY_1}, {KEY_2}")
    assert await server.vault.open(sealed, context=b"ctx") == b"upstream token"
    assert not server.vault.needs_rotation(await server.vault.seal(b"x", context=b"ctx"))
    assert server.vault.needs_rotation(sealed)


@pytest.mark.parametrize("keys", ["not-a-key", f"{KEY_1},{KEY_1}", f"{KEY_1},{KEY_2[:-3]}", " , "])
def test_bad_encryption_keys_are_refused_at_start_without_showing_them(keys: str) -> None:
    environ = {"BASTION_AUTH": "google", "BASTION_BASE_URL": BASE, **PROXIES["google"], "BASTION_ENCRYPTION_KEYS": keys}
    error = refused(environ, "BASTION_ENCRYPTION_KEYS")
    assert "not-a-key" not in str(error)


@pytest.mark.parametrize(
    ("kind", "name"),
    [(kind, name) for kind, settings in sorted(PROXIES.items()) for name in settings] + [("oidc", "")],
)
def test_a_missing_variable_is_named(kind: str, name: str) -> None:
    environ = {"BASTION_AUTH": kind, "BASTION_BASE_URL": BASE, **PROXIES.get(kind, {})}
    if name:
        del environ[name]
    if kind == "oidc":
        refused(environ, "BASTION_OIDC_CONFIG_URL", "BASTION_OIDC_CLIENT_ID")
    else:
        refused(environ, f"BASTION_AUTH={kind}", name)
    del environ["BASTION_BASE_URL"]
    refused(environ, "BASTION_BASE_URL")


@pytest.mark.parametrize(
    ("kind", "extra", "names"),
    [
        ("okta", {"BASTION_OKTA_DOMAIN": "https://acme.okta.com"}, ("BASTION_OKTA_DOMAIN", "host name")),
        ("auth0", {"BASTION_AUTH0_DOMAIN": "acme.auth0.com/x"}, ("BASTION_AUTH0_DOMAIN",)),
        ("keycloak", {"BASTION_KEYCLOAK_REALM": "a/b"}, ("BASTION_KEYCLOAK_REALM",)),
        ("keycloak", {"BASTION_KEYCLOAK_SERVER_URL": "sso.example.com"}, ("BASTION_KEYCLOAK_SERVER_URL",)),
        ("github", {"BASTION_GITHUB_API_URL": "ftp://git.acme.com"}, ("BASTION_GITHUB_API_URL",)),
        ("github", {"BASTION_BASE_URL": "notes.example.com"}, ("BASTION_BASE_URL",)),
        ("entra", {"BASTION_ENTRA_TENANT": "acme tenant"}, ("BASTION_ENTRA_TENANT",)),
        ("cognito", {"BASTION_COGNITO_REGION": "eu west"}, ("BASTION_COGNITO_REGION",)),
    ],
)
def test_a_malformed_variable_is_named(kind: str, extra: dict[str, str], names: tuple[str, ...]) -> None:
    refused({"BASTION_AUTH": kind, "BASTION_BASE_URL": BASE, **PROXIES[kind], **extra}, *names)


def test_provider_names_are_case_insensitive_and_entra_has_aliases() -> None:
    for value in ("EntraID", "entra_id", " Entra "):
        server = from_env({"BASTION_AUTH": value, "BASTION_BASE_URL": BASE, "BASTION_STORE": "memory://",
                           **PROXIES["entra"]})  # fmt: skip
        assert isinstance(server, EntraID)


def test_settings_of_other_providers_are_ignored_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="bastion"):
        proxy("google", BASTION_GITHUB_CLIENT_SECRET=UPSTREAM_SECRET, BASTION_JWT_SECRET=SECRET)
    assert "BASTION_GITHUB_CLIENT_SECRET" in caplog.text
    assert "BASTION_JWT_SECRET" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="bastion"):
        from_env({"BASTION_AUTH": "jwt", "BASTION_JWT_SECRET": SECRET, "BASTION_STORE": "memory://",
                  "BASTION_ENCRYPTION_KEYS": KEY_1})  # fmt: skip
    assert "BASTION_STORE" in caplog.text
    assert "BASTION_ENCRYPTION_KEYS" in caplog.text
    for secret in (SECRET, UPSTREAM_SECRET, KEY_1):
        assert secret not in caplog.text


# -- oidc and remote ---------------------------------------------------------------


def test_oidc_with_every_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls: list[dict[str, Any]] = []

    class Recording(OIDC):
        def __init__(self, **arguments: Any) -> None:  # no discovery: only the arguments
            calls.append(arguments)

    monkeypatch.setitem(PROVIDERS, "oidc", Provider(OIDC.env, Recording))
    environ = {
        "BASTION_AUTH": "oidc",
        "BASTION_BASE_URL": BASE,
        "BASTION_OIDC_CONFIG_URL": "https://id.example.com/.well-known/openid-configuration",
        "BASTION_OIDC_CLIENT_ID": "client-1",
        "BASTION_OIDC_CLIENT_SECRET": UPSTREAM_SECRET,
        "BASTION_OIDC_SCOPES": "openid email groups",
        "BASTION_OIDC_NAME": "Example ID",
        "BASTION_MCP_SCOPES": "notes:read",
        "BASTION_ENCRYPTION_KEYS": KEY_1,
        "BASTION_STORE": f"sqlite:///{tmp_path / 'auth.db'}",
    }
    assert isinstance(from_env(environ), Recording)
    (arguments,) = calls
    store = arguments.pop("store")
    assert isinstance(store, SQLiteStore)
    assert store.path == tmp_path / "auth.db"
    assert arguments == {
        "base_url": BASE,
        "config_url": "https://id.example.com/.well-known/openid-configuration",
        "client_id": "client-1",
        "client_secret": UPSTREAM_SECRET,
        "scopes": ["openid", "email", "groups"],
        "name": "Example ID",
        "mcp_scopes": ["notes:read"],
        "encryption_keys": KEY_1,
    }
    calls.clear()
    public = {k: v for k, v in environ.items() if k not in ("BASTION_OIDC_CLIENT_SECRET", "BASTION_STORE")}
    from_env(public)
    assert "client_secret" not in calls[0]
    assert "store" not in calls[0]


def test_oidc_bad_config_url_is_named() -> None:
    environ = {"BASTION_AUTH": "oidc", "BASTION_BASE_URL": BASE, "BASTION_OIDC_CLIENT_ID": "client-1",
               "BASTION_OIDC_CLIENT_SECRET": UPSTREAM_SECRET}  # fmt: skip
    refused({**environ, "BASTION_OIDC_CONFIG_URL": "https://id.example.com/"}, "BASTION_OIDC_CONFIG_URL")
    refused({**environ, "BASTION_OIDC_CONFIG_URL": "id.example.com"}, "BASTION_OIDC_CONFIG_URL")


def test_oidc_discovers_a_real_provider() -> None:
    skip_without_node()
    with OIDCProvider() as provider:
        server = from_env(
            {
                "BASTION_AUTH": "oidc",
                "BASTION_BASE_URL": BASE,
                "BASTION_STORE": "memory://",
                "BASTION_OIDC_CONFIG_URL": provider.config_url,
                "BASTION_OIDC_CLIENT_ID": provider.client_id,
                "BASTION_OIDC_CLIENT_SECRET": provider.client_secret,
            }
        )
        assert isinstance(server, OIDC)
        assert server.upstream.issuer in (provider.issuer, provider.issuer + "/")
        assert server.upstream.authorization_endpoint.startswith(provider.issuer)
    assert server.upstream.scopes == ("openid", "email", "profile")


def test_remote_authorization_from_its_variables() -> None:
    verifier = from_env(
        {
            "BASTION_AUTH": "remote",
            "BASTION_REMOTE_ISSUER": "https://sso.example.com/realms/mcp",
            "BASTION_REMOTE_CONFIG_URL": "https://sso.example.com/realms/mcp/.well-known/openid-configuration",
            "BASTION_REMOTE_AUDIENCE": "https://notes.example.com/mcp",
            "BASTION_MCP_SCOPES": "notes:read notes:write",
        }
    )
    assert isinstance(verifier, RemoteAuthorization)
    assert verifier.issuer == "https://sso.example.com/realms/mcp"
    assert verifier.scopes_supported == ("notes:read", "notes:write")
    refused({"BASTION_AUTH": "remote"}, "BASTION_REMOTE_ISSUER")
    refused({"BASTION_AUTH": "remote", "BASTION_REMOTE_ISSUER": "sso.example.com"}, "BASTION_AUTH=remote",
            "BASTION_REMOTE_ISSUER")  # fmt: skip


async def test_mcp_server_serves_a_provider_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    origin = f"http://127.0.0.1:{port}"
    environ = {"BASTION_AUTH": "google", "BASTION_BASE_URL": origin, "BASTION_STORE": "memory://", **PROXIES["google"]}
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    mcp = MCPServer("Notes", resource_url=origin + "/mcp")
    assert isinstance(mcp.authorization_server, Google)
    with serve(mcp.streamable_http_app(stateless_http=True, json_response=True), port=port):
        async with httpx2.AsyncClient() as http:
            challenge = await http.post(origin + "/mcp", json=rpc("tools/list"), headers=MCP_HEADERS)
            assert challenge.status_code == 401
            resource = (await http.get(origin + "/.well-known/oauth-protected-resource/mcp")).json()
            assert [s.rstrip("/") for s in resource["authorization_servers"]] == [origin]
            metadata = (await http.get(origin + "/.well-known/oauth-authorization-server")).json()
            assert metadata["issuer"].rstrip("/") == origin
            assert metadata["authorization_endpoint"] == origin + "/authorize"
