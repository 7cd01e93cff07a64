"""EntraID, Auth0, Okta, Keycloak, Cognito and WorkOS: what each one asks of its provider, and whom it signs in.

No network: each provider's endpoints are built from its arguments. The tests
check the whole :class:`Upstream` each one describes, the authorization URL the
served proxy sends the browser to after consent, and the identity read from an
id_token signed by a test key served over real HTTP on loopback (the provider's
``jwks_uri`` pointed at it; the issuer strings are the provider's own).
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bastion import ConfigurationError
from bastion.providers.auth0 import Auth0
from bastion.providers.cognito import Cognito
from bastion.providers.entra import EntraID
from bastion.providers.keycloak import Keycloak
from bastion.providers.okta import Okta
from bastion.providers.workos import WorkOS
from bastion.proxy import OAuthProxy, Upstream, UpstreamError, UpstreamTokens
from bastion.proxy._upstream import Identity
from bastion.proxy._upstream_client import UpstreamClient
from bastion.storage import MemoryStore, SQLiteStore
from bastion.testing import JWKSServer, KeyPair, serve

from support.authserver import PUBLIC_CLIENT, REDIRECT, SCOPES
from support.pages import Browser, only_form, request_params

BASE = "https://mcp.example.com"
SECRET = "upstream-client-secret"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
OTHER_TENANT = "9188040d-6c67-4c5b-b112-36a304b66dad"
LOGIN = "https://login.microsoftonline.com"
NONCE = "nonce-of-this-sign-in"

Factory = Callable[..., OAuthProxy]


def given(options: dict[str, Any], **defaults: Any) -> dict[str, Any]:
    """The constructor arguments: the test's ``options`` over ``defaults``, a memory store and ``BASE``."""
    return {"store": MemoryStore(), "base_url": BASE, "client_secret": SECRET, **defaults, **options}


def entra(**options: Any) -> EntraID:
    return EntraID(**given(options, client_id="11111111-2222-3333-4444-555555555555"))


def auth0(**options: Any) -> Auth0:
    return Auth0(**given(options, domain="example.us.auth0.com", client_id="auth0-client"))


def okta(**options: Any) -> Okta:
    return Okta(**given(options, domain="example.okta.com", client_id="okta-client"))


def keycloak(**options: Any) -> Keycloak:
    return Keycloak(**given(options, server_url="https://sso.example.com/", realm="notes", client_id="kc-client"))


def cognito(**options: Any) -> Cognito:
    defaults = {
        "domain": "notes.auth.eu-west-1.amazoncognito.com",
        "region": "eu-west-1",
        "user_pool_id": "eu-west-1_AbCdEf123",
        "client_id": "cognito-client",
    }
    return Cognito(**given(options, **defaults))


def workos(**options: Any) -> WorkOS:
    return WorkOS(**given(options, domain="notes.authkit.app", client_id="client_01ABC"))


# -- the Upstream each provider describes -----------------------------------------------------------


def test_entra_multi_tenant_v2_endpoints() -> None:
    assert entra().upstream == Upstream(
        name="Microsoft",
        authorization_endpoint=f"{LOGIN}/common/oauth2/v2.0/authorize",
        token_endpoint=f"{LOGIN}/common/oauth2/v2.0/token",
        client_id="11111111-2222-3333-4444-555555555555",
        client_secret=SECRET,
        scopes=("openid", "email", "profile", "offline_access"),
        identity="id_token",
        issuer=None,
        issuer_template=f"{LOGIN}/{{tid}}/v2.0",
        jwks_uri=f"{LOGIN}/common/discovery/v2.0/keys",
        userinfo_endpoint="https://graph.microsoft.com/oidc/userinfo",
        revocation_endpoint=None,
        pkce=True,
        token_auth="client_secret_post",
        authorize_params={},
        subject_claim="oid",
        identity_claims=(
            "oid",
            "tid",
            "sub",
            "name",
            "given_name",
            "family_name",
            "preferred_username",
            "upn",
            "email",
            "groups",
        ),
        refresh_scope=True,
        roles_claim="roles",
        token_exchange="entra_obo",
    )


def test_entra_single_tenant_checks_the_issuer_exactly() -> None:
    up = entra(tenant=TENANT.upper()).upstream
    assert up.authorization_endpoint == f"{LOGIN}/{TENANT.upper()}/oauth2/v2.0/authorize"
    assert up.issuer == f"{LOGIN}/{TENANT}/v2.0"
    assert up.issuer_template is None
    for tenant in ("organizations", "consumers", "contoso.onmicrosoft.com"):
        up = entra(tenant=tenant).upstream
        assert (up.issuer, up.issuer_template) == (None, f"{LOGIN}/{{tid}}/v2.0")
        assert up.token_endpoint == f"{LOGIN}/{tenant}/oauth2/v2.0/token"


def test_entra_api_scopes_make_the_upstream_token_one_for_that_api() -> None:
    up = entra(api_scopes=["api://notes-api/notes.read", "api://notes-api/notes.write"]).upstream
    assert up.scopes == (
        "openid",
        "email",
        "profile",
        "offline_access",
        "api://notes-api/notes.read",
        "api://notes-api/notes.write",
    )
    # Graph's userinfo refuses a token for another API: the id_token alone says who signed in.
    assert up.userinfo_endpoint is None
    assert up.refresh_scope


def test_auth0() -> None:
    assert auth0(audience="https://api.notes.example").upstream == Upstream(
        name="Auth0",
        authorization_endpoint="https://example.us.auth0.com/authorize",
        token_endpoint="https://example.us.auth0.com/oauth/token",
        client_id="auth0-client",
        client_secret=SECRET,
        scopes=("openid", "email", "profile", "offline_access"),
        identity="id_token",
        issuer="https://example.us.auth0.com/",
        jwks_uri="https://example.us.auth0.com/.well-known/jwks.json",
        userinfo_endpoint="https://example.us.auth0.com/userinfo",
        revocation_endpoint="https://example.us.auth0.com/oauth/revoke",
        pkce=True,
        token_auth="client_secret_post",
        authorize_params={"audience": "https://api.notes.example"},
    )
    assert auth0().upstream.authorize_params == {}


def test_okta_custom_authorization_server() -> None:
    base = "https://example.okta.com/oauth2/default"
    assert okta().upstream == Upstream(
        name="Okta",
        authorization_endpoint=f"{base}/v1/authorize",
        token_endpoint=f"{base}/v1/token",
        client_id="okta-client",
        client_secret=SECRET,
        scopes=("openid", "email", "profile", "offline_access"),
        identity="id_token",
        issuer=base,
        jwks_uri=f"{base}/v1/keys",
        userinfo_endpoint=f"{base}/v1/userinfo",
        revocation_endpoint=f"{base}/v1/revoke",
        pkce=True,
        token_auth="client_secret_basic",
    )
    assert okta(authorization_server="aus123abc").upstream.issuer == "https://example.okta.com/oauth2/aus123abc"


def test_okta_org_authorization_server() -> None:
    up = okta(authorization_server=None).upstream
    assert up.issuer == "https://example.okta.com"
    assert up.authorization_endpoint == "https://example.okta.com/oauth2/v1/authorize"
    assert up.token_endpoint == "https://example.okta.com/oauth2/v1/token"
    assert up.jwks_uri == "https://example.okta.com/oauth2/v1/keys"
    assert up.userinfo_endpoint == "https://example.okta.com/oauth2/v1/userinfo"
    assert up.revocation_endpoint == "https://example.okta.com/oauth2/v1/revoke"


def test_keycloak() -> None:
    realm = "https://sso.example.com/realms/notes"
    base = f"{realm}/protocol/openid-connect"
    assert keycloak().upstream == Upstream(
        name="Keycloak",
        authorization_endpoint=f"{base}/auth",
        token_endpoint=f"{base}/token",
        client_id="kc-client",
        client_secret=SECRET,
        scopes=("openid", "email", "profile"),
        identity="id_token",
        issuer=realm,
        jwks_uri=f"{base}/certs",
        userinfo_endpoint=f"{base}/userinfo",
        revocation_endpoint=f"{base}/revoke",
        pkce=True,
        token_auth="client_secret_basic",
        roles_claim="realm_access.roles",
    )


def test_keycloak_under_a_path_and_on_localhost() -> None:
    up = keycloak(server_url="http://localhost:8080/auth").upstream
    assert up.issuer == "http://localhost:8080/auth/realms/notes"


def test_cognito() -> None:
    hosted = "https://notes.auth.eu-west-1.amazoncognito.com"
    pool = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbCdEf123"
    assert cognito().upstream == Upstream(
        name="Amazon Cognito",
        authorization_endpoint=f"{hosted}/oauth2/authorize",
        token_endpoint=f"{hosted}/oauth2/token",
        client_id="cognito-client",
        client_secret=SECRET,
        scopes=("openid", "email", "profile"),
        identity="id_token",
        issuer=pool,
        jwks_uri=f"{pool}/.well-known/jwks.json",
        userinfo_endpoint=f"{hosted}/oauth2/userInfo",
        revocation_endpoint=f"{hosted}/oauth2/revoke",
        pkce=True,
        token_auth="client_secret_basic",
        roles_claim="cognito:groups",
    )


def test_workos() -> None:
    base = "https://notes.authkit.app"
    assert workos().upstream == Upstream(
        name="WorkOS",
        authorization_endpoint=f"{base}/oauth2/authorize",
        token_endpoint=f"{base}/oauth2/token",
        client_id="client_01ABC",
        client_secret=SECRET,
        scopes=("openid", "profile", "email", "offline_access"),
        identity="id_token",
        issuer=base,
        jwks_uri=f"{base}/oauth2/jwks",
        userinfo_endpoint=f"{base}/oauth2/userinfo",
        pkce=True,
        token_auth="client_secret_post",
    )
    public = WorkOS(domain="notes.authkit.app", client_id="client_01ABC", base_url=BASE, store=MemoryStore())
    assert public.upstream.client_secret is None


def test_scopes_given_as_a_string_and_without_openid() -> None:
    assert okta(scopes="openid email").upstream.scopes == ("openid", "email")
    # Without openid there is no id_token: the user comes from the userinfo endpoint.
    assert auth0(scopes=["email"]).upstream.identity == "userinfo"


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: auth0(audience=""), "audience"),
        (lambda: Auth0(domain="https://x.auth0.com", client_id="c", client_secret="s", base_url=BASE), "https://"),
        (lambda: Auth0(domain="x.auth0.com/", client_id="", client_secret="s", base_url=BASE), "client_id"),
        (lambda: Auth0(domain="x.auth0.com", client_id="c", client_secret="", base_url=BASE), "client_secret"),
        (lambda: Okta(domain="", client_id="c", client_secret="s", base_url=BASE), "domain"),
        (lambda: Okta(domain="example.okta.com/oauth2", client_id="c", client_secret="s", base_url=BASE), "host"),
        (lambda: okta(authorization_server="a/b"), "authorization_server"),
        (lambda: okta(scopes=["openid", "two words"]), "scope"),
        (lambda: entra(tenant=""), "tenant"),
        (lambda: entra(tenant="common/../x"), "tenant"),
        (lambda: entra(scopes=["openid", "email"]), "profile"),
        (lambda: entra(api_scopes=["notes.read"]), "resource"),
        (lambda: entra(api_scopes=["api://a/read", "https://graph.microsoft.com/Mail.Read"]), "one API"),
        (lambda: keycloak(server_url="http://sso.example.com"), "https"),
        (lambda: keycloak(server_url="https://sso.example.com?x=1"), "plain URL"),
        (lambda: keycloak(realm=""), "realm"),
        (lambda: keycloak(realm="a/b"), "realm"),
        (lambda: cognito(region="Europe"), "region"),
        (lambda: cognito(user_pool_id="us-east-1_AbCdEf123"), "user_pool_id"),
        (lambda: cognito(user_pool_id="eu-west-1"), "user_pool_id"),
        (lambda: cognito(domain="https://notes.auth.eu-west-1.amazoncognito.com"), "https://"),
        (lambda: WorkOS(domain="notes.authkit.app", client_id="", base_url=BASE), "client_id"),
        (lambda: WorkOS(domain="notes.authkit.app:443", client_id="c", base_url=BASE), "host"),
    ],
)
def test_a_misconfiguration_is_refused_at_start_up(build: Callable[[], object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        build()


# -- the authorization URL, after consent on the proxy's page ---------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    ("build", "options", "expected"),
    [
        (
            entra,
            {"tenant": TENANT, "api_scopes": ["api://notes-api/notes.read"], "authorize_params": {"prompt": "login"}},
            {
                "scope": "openid email profile offline_access api://notes-api/notes.read",
                "prompt": "login",
            },
        ),
        (auth0, {"audience": "https://api.notes.example"}, {"audience": "https://api.notes.example"}),
        (okta, {}, {"scope": "openid email profile offline_access"}),
        (keycloak, {"authorize_params": {"kc_idp_hint": "github"}}, {"kc_idp_hint": "github"}),
        (cognito, {}, {"scope": "openid email profile"}),
        (workos, {}, {"scope": "openid profile email offline_access"}),
    ],
)
async def test_after_consent_the_browser_goes_to_the_provider(
    tmp_path: Path, build: Factory, options: dict[str, Any], expected: dict[str, str]
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proxy = build(
        base_url=base, store=SQLiteStore(tmp_path / "proxy.db"), clients=[PUBLIC_CLIENT], mcp_scopes=SCOPES, **options
    )
    proxy.add_resource(base + "/mcp")
    up = proxy.upstream
    with serve(proxy.app(), port=port):
        async with httpx2.AsyncClient() as http:
            browser = Browser(http, base)
            consent = await browser.authorize(**request_params(REDIRECT))
            assert consent.status_code == 200
            assert up.name in consent.text
            answer = await browser.submit(consent, only_form(consent), decision="approve")
    assert answer.status_code == 303
    location = urlsplit(answer.headers["location"])
    assert location._replace(query="").geturl() == up.authorization_endpoint
    query = {name: values[0] for name, values in parse_qs(location.query).items()}
    assert all(len(values) == 1 for values in parse_qs(location.query).values())
    assert query.pop("state")
    assert query.pop("nonce")
    assert len(query.pop("code_challenge")) == 43
    assert query == {
        "response_type": "code",
        "client_id": up.client_id,
        "redirect_uri": base + "/auth/callback",
        "scope": " ".join(up.scopes),
        "code_challenge_method": "S256",
        **expected,
    }


# -- whom each provider signs in ----------------------------------------------------------------------------


@pytest.fixture(name="key")
def key_fixture() -> KeyPair:
    return KeyPair.generate()


@pytest.fixture(name="jwks")
def jwks_fixture(key: KeyPair) -> Iterator[JWKSServer]:
    with JWKSServer(key) as server:
        yield server


@pytest.fixture(name="closing")
async def closing_fixture() -> AsyncIterator[list[UpstreamClient]]:
    clients: list[UpstreamClient] = []
    yield clients
    for client in clients:
        await client.aclose()


async def sign_in(
    proxy: OAuthProxy,
    jwks: JWKSServer,
    closing: list[UpstreamClient],
    key: KeyPair,
    claims: Mapping[str, Any],
    *,
    issuer: str | None = None,
    audience: str | None = None,
) -> Identity:
    """The identity the proxy reads from an id_token with ``claims``, signed by ``key``."""
    up = replace(proxy.upstream, jwks_uri=jwks.url, userinfo_endpoint=None)
    client = UpstreamClient(up)
    closing.append(client)
    id_token = key.create_token(
        subject=None,
        issuer=up.issuer if issuer is None else issuer,
        audience=up.client_id if audience is None else audience,
        additional_claims={"nonce": NONCE, **claims},
    )
    return await client.identity(UpstreamTokens(access_token="upstream-access", id_token=id_token), NONCE)


ENTRA_USER = {
    "oid": "00000000-0000-0000-66f3-3332eca7ea81",
    "sub": "AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ",
    "tid": TENANT,
    "name": "Megan Bowen",
    "preferred_username": "megan@contoso.example",
    "email": "megan@contoso.example",
    "roles": ["Notes.Admin"],
    "uti": "internal-token-id",
    "ver": "2.0",
}


async def test_entra_signs_in_the_user_of_the_tokens_own_tenant(
    key: KeyPair, jwks: JWKSServer, closing: list[UpstreamClient]
) -> None:
    identity = await sign_in(entra(), jwks, closing, key, ENTRA_USER, issuer=f"{LOGIN}/{TENANT}/v2.0")
    assert identity.subject == ENTRA_USER["oid"]
    assert identity.name == "Megan Bowen"
    assert identity.email == "megan@contoso.example"
    assert identity.roles == ("Notes.Admin",)
    assert identity.claims["tid"] == TENANT
    assert identity.claims["preferred_username"] == "megan@contoso.example"
    assert identity.claims["sub"] == ENTRA_USER["sub"]
    assert "uti" not in identity.claims
    # A personal Microsoft account: its own tenant id, accepted at "common" too.
    personal = {**ENTRA_USER, "tid": OTHER_TENANT, "roles": []}
    identity = await sign_in(entra(), jwks, closing, key, personal, issuer=f"{LOGIN}/{OTHER_TENANT}/v2.0")
    assert identity.claims["tid"] == OTHER_TENANT


@pytest.mark.parametrize(
    ("claims", "issuer"),
    [
        ({**ENTRA_USER, "tid": TENANT}, f"{LOGIN}/{OTHER_TENANT}/v2.0"),
        ({k: v for k, v in ENTRA_USER.items() if k != "tid"}, f"{LOGIN}/{TENANT}/v2.0"),
        ({**ENTRA_USER, "tid": "x/../y"}, f"{LOGIN}/x/../y/v2.0"),
        ({**ENTRA_USER, "tid": TENANT}, f"https://evil.example/{TENANT}/v2.0"),
        ({**ENTRA_USER, "tid": TENANT}, f"{LOGIN}/{{tid}}/v2.0"),
    ],
)
async def test_entra_refuses_an_issuer_that_is_not_the_tokens_own_tenant(
    key: KeyPair, jwks: JWKSServer, closing: list[UpstreamClient], claims: dict[str, Any], issuer: str
) -> None:
    with pytest.raises(UpstreamError, match="issuer"):
        await sign_in(entra(), jwks, closing, key, claims, issuer=issuer)


async def test_entra_multi_tenant_still_checks_signature_and_audience(
    key: KeyPair, jwks: JWKSServer, closing: list[UpstreamClient]
) -> None:
    issuer = f"{LOGIN}/{TENANT}/v2.0"
    with pytest.raises(UpstreamError, match="refused"):
        await sign_in(entra(), jwks, closing, KeyPair.generate(kid=key.kid), ENTRA_USER, issuer=issuer)
    with pytest.raises(UpstreamError, match="refused"):
        await sign_in(entra(), jwks, closing, key, ENTRA_USER, issuer=issuer, audience="another-app")


async def test_entra_single_tenant_refuses_other_tenants(
    key: KeyPair, jwks: JWKSServer, closing: list[UpstreamClient]
) -> None:
    own = await sign_in(entra(tenant=TENANT), jwks, closing, key, ENTRA_USER)
    assert own.subject == ENTRA_USER["oid"]
    stranger = {**ENTRA_USER, "tid": OTHER_TENANT}
    with pytest.raises(UpstreamError, match="refused"):
        await sign_in(entra(tenant=TENANT), jwks, closing, key, stranger, issuer=f"{LOGIN}/{OTHER_TENANT}/v2.0")


async def test_entra_without_oid_signs_nobody_in(key: KeyPair, jwks: JWKSServer, closing: list[UpstreamClient]) -> None:
    claims = {k: v for k, v in ENTRA_USER.items() if k != "oid"}
    with pytest.raises(UpstreamError, match="oid"):
        await sign_in(entra(), jwks, closing, key, claims, issuer=f"{LOGIN}/{TENANT}/v2.0")


async def test_entra_refreshes_for_the_api_of_its_scopes(closing: list[UpstreamClient]) -> None:
    seen: list[dict[str, str]] = []

    async def token(request: Request) -> JSONResponse:
        seen.append({k: str(v) for k, v in (await request.form()).items()})
        return JSONResponse({"access_token": "new-api-token", "token_type": "Bearer", "expires_in": 3600})

    with serve(Starlette(routes=[Route("/token", token, methods=["POST"])])) as url:
        up = replace(entra(api_scopes=["api://notes-api/notes.read"]).upstream, token_endpoint=url + "/token")
        client = UpstreamClient(up)
        closing.append(client)
        fresh = await client.refresh(UpstreamTokens(access_token="old", refresh_token="the-refresh-token"))
    assert fresh.access_token == "new-api-token"
    assert fresh.refresh_token == "the-refresh-token"
    assert seen[0]["grant_type"] == "refresh_token"
    assert seen[0]["scope"] == "openid email profile offline_access api://notes-api/notes.read"


async def test_auth0_okta_and_workos_sign_in_the_tokens_subject(
    key: KeyPair, jwks: JWKSServer, closing: list[UpstreamClient]
) -> None:
    claims = {"sub": "auth0|64f1c2", "email": "ada@example.com", "name": "Ada", "email_verified": True}
    for proxy in (auth0(), okta(), okta(authorization_server=None), workos()):
        identity = await sign_in(proxy, jwks, closing, key, {**claims, "sub": f"{proxy.upstream.name}|1"})
        assert identity == Identity(
            subject=f"{proxy.upstream.name}|1",
            name="Ada",
            email="ada@example.com",
            claims=identity.claims,
        )
        assert identity.claims["email_verified"] is True


@pytest.mark.parametrize(
    ("build", "issuer"),
    [
        (auth0, "https://example.us.auth0.com"),  # Auth0's issuer ends with a slash
        (okta, "https://example.okta.com"),  # the org server's, not the custom one's
        (keycloak, "https://sso.example.com/realms/other"),
        (cognito, "https://cognito-idp.us-east-1.amazonaws.com/eu-west-1_AbCdEf123"),
        (workos, "https://other.authkit.app"),
    ],
)
async def test_another_issuer_is_refused(
    key: KeyPair, jwks: JWKSServer, closing: list[UpstreamClient], build: Factory, issuer: str
) -> None:
    with pytest.raises(UpstreamError, match="refused"):
        await sign_in(build(), jwks, closing, key, {"sub": "someone"}, issuer=issuer)


async def test_keycloak_realm_roles_become_the_users_roles(
    key: KeyPair, jwks: JWKSServer, closing: list[UpstreamClient]
) -> None:
    claims = {
        "sub": "f3a1c2d4-0000-4000-8000-000000000001",
        "preferred_username": "ada",
        "email": "ada@example.com",
        "realm_access": {"roles": ["notes-admin", "default-roles-notes", "notes-admin", 7]},
        "resource_access": {"kc-client": {"roles": ["client-role"]}},
    }
    identity = await sign_in(keycloak(), jwks, closing, key, claims)
    assert identity.subject == claims["sub"]
    assert identity.email == "ada@example.com"
    assert identity.roles == ("notes-admin", "default-roles-notes")
    assert identity.claims["preferred_username"] == "ada"
    # Without the mapper's "Add to ID token", no roles: the user simply has none.
    bare = {k: v for k, v in claims.items() if k != "realm_access"}
    assert (await sign_in(keycloak(), jwks, closing, key, bare)).roles == ()


async def test_cognito_groups_become_the_users_roles(
    key: KeyPair, jwks: JWKSServer, closing: list[UpstreamClient]
) -> None:
    claims = {
        "sub": "7c1e0a4e-1111-4222-8333-944455556666",
        "cognito:username": "ada",
        "cognito:groups": ["editors", "admins"],
        "email": "ada@example.com",
        "token_use": "id",
    }
    identity = await sign_in(cognito(), jwks, closing, key, claims)
    assert identity.subject == claims["sub"]
    assert identity.email == "ada@example.com"
    assert identity.roles == ("editors", "admins")
    assert identity.claims["cognito:username"] == "ada"
