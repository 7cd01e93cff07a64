"""Each provider declares its own BASTION_* variables: a new provider is one module; its options are typed."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import ClassVar

import pytest
from typing_extensions import Unpack

from bastion import ConfigurationError, from_env
from bastion._config.auth import known_variables
from bastion.authserver import AuthorizationServer
from bastion.providers import Google
from bastion.providers._checks import hostname
from bastion.providers._env import PROVIDERS, ProviderEnv, Setting, client, register
from bastion.proxy import OAuthProxy, Upstream
from bastion.proxy._options import ProxyOptions, ServerOptions
from bastion.storage import MemoryStore

BASE = "https://notes.example.com"
SECRET = "acme-client-secret-value"


@pytest.fixture
def registry() -> Iterator[None]:
    """Providers a test registers (with ``register``, as bastion.providers' modules do) are forgotten after it."""
    saved = dict(PROVIDERS)
    yield
    PROVIDERS.clear()
    PROVIDERS.update(saved)


class Acme(OAuthProxy):
    """Sign users in with Acme ID: a provider of this test only, declared as those of bastion.providers are."""

    env: ClassVar[ProviderEnv] = ProviderEnv(
        "acme",
        (
            Setting("domain", "DOMAIN", required=True),
            *client(),
            Setting("api_url", "API_URL", "url"),
            Setting("groups", "GROUPS", "list"),
        ),
        aliases=("acme-id",),
    )

    def __init__(
        self,
        *,
        domain: str,
        client_id: str,
        client_secret: str,
        base_url: str,
        scopes: Sequence[str] = ("openid",),
        api_url: str = "https://api.acme.example",
        groups: Sequence[str] = (),
        mcp_scopes: Mapping[str, str] | Sequence[str] | None = None,
        **options: Unpack[ProxyOptions],
    ) -> None:
        base = "https://" + hostname(domain, "domain")
        self.api_url = api_url
        self.groups = tuple(groups)
        upstream = Upstream(
            name="Acme",
            authorization_endpoint=f"{base}/authorize",
            token_endpoint=f"{base}/token",
            client_id=client_id,
            client_secret=client_secret,
            scopes=tuple(scopes),
            identity="userinfo",
            userinfo_endpoint=f"{base}/userinfo",
        )
        super().__init__(upstream, base_url=base_url, scopes=mcp_scopes, **options)


ACME = {
    "BASTION_AUTH": "acme",
    "BASTION_BASE_URL": BASE,
    "BASTION_STORE": "memory://",
    "BASTION_ACME_DOMAIN": "id.acme.example",
    "BASTION_ACME_CLIENT_ID": "client-1",
    "BASTION_ACME_CLIENT_SECRET": SECRET,
}


def refused(environ: dict[str, str], *names: str) -> str:
    with pytest.raises(ConfigurationError) as info:
        from_env(environ)
    message = str(info.value)
    for name in names:
        assert name in message
    assert SECRET not in message
    return message


@pytest.mark.usefixtures("registry")
def test_a_new_provider_is_built_from_the_variables_its_module_declares() -> None:
    register(Acme)
    server = from_env(
        {
            **ACME,
            "bastion_acme_scopes": "openid, email",
            "BASTION_ACME_API_URL": "https://api.id.acme.example/v2",
            "BASTION_ACME_GROUPS": "staff admins",
            "BASTION_MCP_SCOPES": "notes:read",
        }
    )
    assert isinstance(server, Acme)
    assert server.upstream.authorization_endpoint == "https://id.acme.example/authorize"
    assert (server.upstream.client_id, server.upstream.client_secret) == ("client-1", SECRET)
    assert server.upstream.scopes == ("openid", "email")
    assert (server.api_url, server.groups) == ("https://api.id.acme.example/v2", ("staff", "admins"))
    assert server.scopes == {"notes:read": "notes:read"}
    assert isinstance(server.store, MemoryStore)
    assert server.callback_url == BASE + "/auth/callback"
    # An alias, any case; an empty variable is unset.
    server = from_env({**ACME, "BASTION_AUTH": " Acme-ID ", "BASTION_ACME_API_URL": ""})
    assert isinstance(server, Acme)
    assert server.api_url == "https://api.acme.example"


@pytest.mark.usefixtures("registry")
def test_a_new_providers_variables_are_checked_and_named() -> None:
    register(Acme)
    without_domain = {k: v for k, v in ACME.items() if k != "BASTION_ACME_DOMAIN"}
    refused({**without_domain, "BASTION_AUTH": "acme"}, "BASTION_AUTH=acme needs BASTION_ACME_DOMAIN")
    refused({**ACME, "BASTION_ACME_API_URL": "api.acme.example"}, "BASTION_ACME_API_URL", "http(s) URL")
    refused({**ACME, "BASTION_ACME_GROUPS": " , "}, "BASTION_ACME_GROUPS", "names nothing")
    # The provider's own check, named with the variable of the argument it mentions.
    refused({**ACME, "BASTION_ACME_DOMAIN": "https://id.acme.example"}, "BASTION_AUTH=acme", "BASTION_ACME_DOMAIN")
    refused({"BASTION_AUTH": "facebook"}, "supported values", "acme")


@pytest.mark.usefixtures("registry")
def test_a_new_providers_variables_are_ignored_with_a_warning_by_others(caplog: pytest.LogCaptureFixture) -> None:
    register(Acme)
    environ = {"BASTION_AUTH": "google", "BASTION_BASE_URL": BASE, "BASTION_STORE": "memory://",
               "BASTION_GOOGLE_CLIENT_ID": "client-1", "BASTION_GOOGLE_CLIENT_SECRET": "google-secret",
               "BASTION_ACME_CLIENT_SECRET": SECRET}  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="bastion"):
        assert isinstance(from_env(environ), Google)
    assert "BASTION_ACME_CLIENT_SECRET" in caplog.text
    assert SECRET not in caplog.text


@pytest.mark.usefixtures("registry")
def test_a_name_is_registered_once_and_a_registered_class_declares_its_variables() -> None:
    class Impostor(OAuthProxy):
        env: ClassVar[ProviderEnv] = ProviderEnv("okta2", (*client(),), aliases=("entraid",))

    with pytest.raises(ValueError, match="entraid"):
        register(Impostor)

    class Undeclared(Google):
        pass

    with pytest.raises(TypeError, match="env"):
        register(Undeclared)
    with pytest.raises(ValueError, match="lower-case"):
        ProviderEnv("Acme", ())
    with pytest.raises(ValueError, match="twice"):
        ProviderEnv("acme", (*client(), Setting("client_id", "ID")))


@pytest.mark.usefixtures("registry")
def test_known_variables_are_the_general_ones_and_every_providers() -> None:
    names = known_variables()
    for name in ("BASTION_AUTH", "BASTION_JWT_JWKS_URI", "BASTION_STORE", "BASTION_GOOGLE_CLIENT_ID",
                 "BASTION_ENTRA_API_SCOPES", "BASTION_OIDC_CONFIG_URL", "BASTION_GITHUB_API_URL"):  # fmt: skip
        assert name in names
    assert len(set(names)) == len(names)
    assert "BASTION_ACME_DOMAIN" not in names
    register(Acme)
    assert "BASTION_ACME_DOMAIN" in known_variables()


def _keywords(function: object, *, without: set[str]) -> set[str]:
    parameters = inspect.signature(function).parameters.values()  # type: ignore[arg-type]
    return {p.name for p in parameters if p.kind is p.KEYWORD_ONLY} - without


def test_the_typed_options_are_the_servers_and_the_proxys_keyword_arguments() -> None:
    server = _keywords(AuthorizationServer.__init__, without={"users", "login", "scopes"})
    assert set(ServerOptions.__optional_keys__) == server
    proxy = _keywords(OAuthProxy.__init__, without={"base_url", "scopes"})
    assert set(ProxyOptions.__optional_keys__) == server | proxy


def test_a_misspelt_option_is_a_type_error() -> None:
    # mypy --strict reports the misspelling: without it, this ignore would be reported as unused.
    with pytest.raises(TypeError, match="acess_token_ttl"):
        Google(client_id="client-1", client_secret="s", base_url=BASE, acess_token_ttl=60)  # type: ignore[call-arg]
