"""from_env(): every branch, every missing or contradictory setting, and no secret in a message."""

from __future__ import annotations

import json
import logging
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
    InvalidAudience,
    InvalidClaims,
    InvalidIssuer,
    MCPServer,
    TokenExpired,
    get_access_token,
)
from bastion._apikeys import APIKeyVerifier, hash_api_key
from bastion._introspection import IntrospectionVerifier
from bastion._settings import ServerSettings, from_env, server_settings

from conftest import MCP_HEADERS, rpc, served

SECRET = "hs256-shared-secret-of-at-least-32-bytes!"
CLIENT_SECRET = "introspection-client-secret-value"
API_KEY = "sk-live-settings-test-key"


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
    for secret in (SECRET, CLIENT_SECRET, API_KEY):
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


async def test_jwt_with_a_secret_and_every_option() -> None:
    verifier = from_env(
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
    with pytest.raises(InvalidClaims):
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
        verifier = from_env({"BASTION_AUTH": "jwt", "BASTION_JWT_PUBLIC_KEY": value, "BASTION_JWT_AUDIENCE": "a"})
        assert verifier.algorithms == ("RS256",)  # type: ignore[attr-defined]
    verifier = from_env(
        {"BASTION_AUTH": "JWT", "BASTION_JWT_PUBLIC_KEY": public_pem, "BASTION_JWT_ALGORITHMS": "RS256, PS256"}
    )
    assert verifier.algorithms == ("RS256", "PS256")  # type: ignore[attr-defined]


def test_jwt_with_a_key_set() -> None:
    verifier = from_env(
        {
            "BASTION_AUTH": "jwt",
            "BASTION_JWT_JWKS_URI": "https://as.example/jwks.json",
            "BASTION_JWT_ISSUER": "https://as.example",
            "BASTION_JWT_AUDIENCE": "https://notes.example/mcp, https://notes.example/",
        }
    )
    assert verifier.issuers == ("https://as.example",)
    assert verifier.audiences == ("https://notes.example/mcp", "https://notes.example/")  # type: ignore[attr-defined]


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
