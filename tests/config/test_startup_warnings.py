"""What start-up says about the configuration: unknown variables, an unchecked issuer, and no false alarm."""

from __future__ import annotations

import logging

import pytest

from bastion import InvalidAudience, JWTVerifier, MCPServer
from bastion._config.auth import from_env
from bastion._config.settings import server_settings
from bastion.authserver import AuthorizationServer
from bastion.providers.github import GitHub
from bastion.storage import MemoryStore
from bastion.testing import KeyPair

SECRET = "hs256-shared-secret-of-at-least-32-bytes!"
JWT = {"BASTION_AUTH": "jwt", "BASTION_JWT_SECRET": SECRET, "BASTION_JWT_ISSUER": "https://id.example"}


def logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "bastion" and r.levelno == logging.WARNING]


def unknown(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [message for message in logged(caplog) if message.startswith("unknown variable ")]


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The warnings but the unknown variables' (the test run's own, such as BASTION_ARTIFACTS, may be set)."""
    return [message for message in logged(caplog) if not message.startswith("unknown variable ")]


# -- unknown variables ------------------------------------------------------------------


def test_an_unknown_variable_is_named_with_the_closest_known_one_and_never_its_value(
    caplog: pytest.LogCaptureFixture,
) -> None:
    value = "https://keys.example/jwks-that-is-not-shown"
    with caplog.at_level(logging.WARNING, logger="bastion"):
        from_env({**JWT, "BASTION_JWT_JWKS_URL": value})
    assert "unknown variable BASTION_JWT_JWKS_URL is ignored; did you mean BASTION_JWT_JWKS_URI?" in unknown(caplog)
    assert value not in caplog.text


def test_a_providers_variables_are_known_and_close_to_a_misspelt_one(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="bastion"):
        server_settings({"BASTION_GITHUB_CLIENT_ID": "x", "BASTION_GITHB_CLIENT_SECRET": "y"})
    assert unknown(caplog) == [
        "unknown variable BASTION_GITHB_CLIENT_SECRET is ignored; did you mean BASTION_GITHUB_CLIENT_SECRET?"
    ]


def test_a_name_close_to_nothing_is_named_without_a_suggestion(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="bastion"):
        server_settings({"BASTION_ZZQX": "1"})
    assert unknown(caplog) == ["unknown variable BASTION_ZZQX is ignored"]


def test_names_are_case_insensitive_like_the_settings(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="bastion"):
        server_settings({"bastion_resource_url": "https://notes.example/mcp", "Bastion_Resource_Uri": "x"})
    assert unknown(caplog) == ["unknown variable Bastion_Resource_Uri is ignored; did you mean BASTION_RESOURCE_URL?"]


def test_an_unknown_variable_is_reported_once_per_process(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BASTION_INITIAL_SCOPE", "notes:read")
    with caplog.at_level(logging.WARNING, logger="bastion"):
        for _ in range(3):
            server_settings()
            MCPServer("Notes", allow_unauthenticated=True)
    assert (
        unknown(caplog).count("unknown variable BASTION_INITIAL_SCOPE is ignored; did you mean BASTION_INITIAL_SCOPES?")
        == 1
    )


def test_empty_and_other_variables_are_not_reported(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="bastion"):
        server_settings({"BASTION_EMPTY_ONE": "", "HOME": "/root", "MY_BASTION_THING": "1"})
    assert unknown(caplog) == []


# -- BASTION_AUTH=jwt without an issuer -------------------------------------------------


def test_jwt_without_an_issuer_says_what_is_not_checked_and_how_to_set_it(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="bastion"):
        verifier = from_env({"BASTION_AUTH": "jwt", "BASTION_JWT_SECRET": SECRET})
    assert isinstance(verifier, JWTVerifier)
    assert verifier.issuers == ()
    assert warnings(caplog) == [
        "BASTION_AUTH=jwt without BASTION_JWT_ISSUER: a token's iss is not checked (any issuer's token the key "
        "verifies is accepted), and the resource metadata names no authorization server unless "
        "authorization_servers= does; set BASTION_JWT_ISSUER to the issuer's identifier (comma-separated for "
        "several)"
    ]
    assert SECRET not in caplog.text


def test_jwt_with_an_issuer_says_nothing(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="bastion"):
        from_env(JWT)
    assert warnings(caplog) == []


# -- "JWTVerifier has no audience": only for a verifier the user built -----------------------


def test_a_users_own_verifier_without_audience_is_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="bastion"):
        JWTVerifier(secret=SECRET)
    assert [m for m in warnings(caplog) if m.startswith("JWTVerifier has no audience")] != []


def test_the_verifier_of_bastion_auth_jwt_takes_the_resource_url_without_a_warning(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {**JWT, "BASTION_RESOURCE_URL": "https://notes.example/mcp"}.items():
        monkeypatch.setenv(name, value)
    with caplog.at_level(logging.WARNING, logger="bastion"):
        mcp = MCPServer("Notes")
        assert mcp.guard is not None
    assert warnings(caplog) == []
    assert isinstance(mcp.verifier, JWTVerifier)
    assert mcp.guard.resource_url == "https://notes.example/mcp"


async def test_the_verifier_of_bastion_auth_jwt_still_checks_the_audience(monkeypatch: pytest.MonkeyPatch) -> None:
    # The audience comes from the server: without a warning, but not without the check.
    keys = KeyPair.generate()
    monkeypatch.setenv("BASTION_AUTH", "jwt")
    monkeypatch.setenv("BASTION_JWT_PUBLIC_KEY", keys.public_key)
    monkeypatch.setenv("BASTION_JWT_ISSUER", "https://issuer.example")
    monkeypatch.setenv("BASTION_RESOURCE_URL", "https://notes.example/mcp")
    verifier = MCPServer("Notes").verifier
    assert isinstance(verifier, JWTVerifier)
    assert verifier.audiences == ("https://notes.example/mcp",)
    assert (await verifier.check(keys.create_token(audience="https://notes.example/mcp"))).subject == "user"
    with pytest.raises(InvalidAudience):
        await verifier.check(keys.create_token(audience="https://other.example/mcp"))


def test_remote_and_the_authorization_servers_verifiers_are_not_warned_about(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="bastion"):
        from_env({"BASTION_AUTH": "remote", "BASTION_REMOTE_ISSUER": "https://id.example"})
        MCPServer("Notes", auth=AuthorizationServer("http://127.0.0.1:9", store=MemoryStore()))
        github = GitHub(base_url="http://127.0.0.1:9", client_id="id", client_secret="secret", store=MemoryStore())
        MCPServer("Notes", auth=github)
    assert [m for m in warnings(caplog) if "no audience" in m] == []
