"""Discovery: the metadata at every location a client tries, the JWKS, and the signing key ring."""

from __future__ import annotations

import json
from pathlib import Path

import httpx2
import pytest
from joserfc.jws import JWSRegistry

from bastion import ConfigurationError, MCPServer
from bastion.authserver import AuthorizationServer, InvalidGrant, Signing, TokenLifetimes, User
from bastion.authserver._endpoints.metadata import metadata_document
from bastion.authserver._grants.refresh_token import RefreshTokens
from bastion.authserver._keyring import KEY_NAMESPACE
from bastion.storage import MemoryStore, SQLiteStore
from bastion.testing import serve

from support.authserver import PUBLIC_CLIENT, SCOPES, make_server, serving
from support.clock import FakeClock


async def test_root_issuer_metadata_at_both_well_known_locations(tmp_path: Path) -> None:
    server = make_server(tmp_path)
    with serving(server) as url:
        async with httpx2.AsyncClient() as http:
            oauth = (await http.get(url + "/.well-known/oauth-authorization-server")).json()
            oidc = (await http.get(url + "/.well-known/openid-configuration")).json()
    assert oauth == oidc
    assert oauth["issuer"] == url + "/"
    assert oauth["authorization_endpoint"] == url + "/authorize"
    assert oauth["token_endpoint"] == url + "/token"
    assert oauth["registration_endpoint"] == url + "/register"
    assert oauth["jwks_uri"] == url + "/jwks"
    assert oauth["code_challenge_methods_supported"] == ["S256"]
    assert oauth["response_types_supported"] == ["code"]
    assert oauth["authorization_response_iss_parameter_supported"] is True
    assert oauth["client_id_metadata_document_supported"] is True
    assert set(SCOPES) <= set(oauth["scopes_supported"])
    assert "private_key_jwt" in oauth["token_endpoint_auth_methods_supported"]
    assert "urn:ietf:params:oauth:grant-type:jwt-bearer" not in oauth["grant_types_supported"]


async def test_path_issuer_is_found_where_2026_clients_look(tmp_path: Path) -> None:
    server = make_server(tmp_path, issuer="http://127.0.0.1/tenant1")
    app = server.app()
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://127.0.0.1") as http:
        for path in (
            "/.well-known/oauth-authorization-server/tenant1",
            "/.well-known/openid-configuration/tenant1",
            "/tenant1/.well-known/openid-configuration",
        ):
            response = await http.get(path)
            assert response.status_code == 200, path
            doc = response.json()
            assert doc["issuer"] == "http://127.0.0.1/tenant1"
            assert doc["token_endpoint"] == "http://127.0.0.1/tenant1/token"
        jwks = await http.get("/tenant1/jwks")
        assert jwks.status_code == 200
        assert (await http.get("/.well-known/oauth-authorization-server/other")).status_code == 404


async def test_metadata_and_jwks_are_readable_cross_origin(tmp_path: Path) -> None:
    with serving(make_server(tmp_path)) as url:
        async with httpx2.AsyncClient() as http:
            response = await http.get(url + "/.well-known/oauth-authorization-server")
            preflight = await http.options(
                url + "/jwks", headers={"Origin": "https://inspector.example", "Access-Control-Request-Method": "GET"}
            )
    assert response.headers["access-control-allow-origin"] == "*"
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "*"


def test_issuer_must_be_https_or_loopback_and_plain() -> None:
    for bad in ("http://notes.example.com", "https://a.example/?x=1", "https://a.example/#f", "ftp://a.example", "x"):
        with pytest.raises(ConfigurationError):
            AuthorizationServer(bad, store=MemoryStore())
    assert AuthorizationServer("https://A.example", store=MemoryStore()).issuer == "https://a.example/"
    assert AuthorizationServer("https://a.example/t/", store=MemoryStore()).issuer == "https://a.example/t"


def test_auto_approve_is_refused_beyond_loopback() -> None:
    with pytest.raises(ConfigurationError, match="loopback"):
        AuthorizationServer("https://notes.example.com", store=MemoryStore(), auto_approve="alice")


async def test_tokens_verify_and_the_jwks_publishes_the_key(tmp_path: Path) -> None:
    server = make_server(tmp_path)
    with serving(server) as url:
        token, expires_in = await server.access_tokens.mint(
            client_id="c", subject="alice", scopes=["notes:read"], resource=url + "/mcp", grant_id="g"
        )
        async with httpx2.AsyncClient() as http:
            jwks = (await http.get(url + "/jwks")).json()
    header = json.loads(_b64(token.split(".")[0]))
    assert header["typ"] == "at+jwt"
    assert header["alg"] == "ES256"
    assert [k["kid"] for k in jwks["keys"]] == [header["kid"]]
    assert all("d" not in k for k in jwks["keys"])
    claims = json.loads(_b64(token.split(".")[1]))
    assert claims["aud"] == url + "/mcp"
    assert claims["iss"] == url + "/"
    assert claims["client_id"] == "c"
    assert claims["exp"] - claims["iat"] == expires_in == 3600
    assert {"jti", "sub", "scope", "gid"} <= claims.keys()
    access = await server.verifier.verify(token)
    assert access.subject == "alice"
    assert access.scopes == ["notes:read"]


async def test_keys_survive_a_restart_and_workers_agree_on_the_first_key(tmp_path: Path) -> None:
    first = AuthorizationServer("http://127.0.0.1:1", store=SQLiteStore(tmp_path / "a.db"))
    second = AuthorizationServer("http://127.0.0.1:1", store=SQLiteStore(tmp_path / "a.db"))
    a = await first.keys.signing_key()
    b = await second.keys.signing_key()
    assert a.kid == b.kid
    restarted = AuthorizationServer("http://127.0.0.1:1", store=SQLiteStore(tmp_path / "a.db"))
    assert (await restarted.keys.signing_key()).kid == a.kid


async def test_rotation_overlaps_then_retires_the_old_key() -> None:
    clock = FakeClock(1_800_000_000.0)
    store = MemoryStore(clock=clock)
    server = AuthorizationServer(
        "http://127.0.0.1:1",
        store=store,
        resources=["http://127.0.0.1:1/mcp"],
        signing=Signing(rotation=1000),
        clock=clock,
    )
    old_token, _ = await server.access_tokens.mint(
        client_id="c", subject="s", scopes=[], resource="http://127.0.0.1:1/mcp", grant_id=None
    )
    old = await server.keys.signing_key()
    clock.now += 1001
    new = await server.keys.signing_key()
    assert new.kid != old.kid
    published = [k["kid"] for k in (await server.keys.public_jwks())["keys"]]
    assert published == [old.kid, new.kid]
    server.verifier.cache.clear()
    assert (await server.verifier.verify(old_token)).subject == "s"
    # Once every token the old key signed has expired, it is no longer published.
    clock.now += 3600 + 300 + 1
    assert next(k["kid"] for k in (await server.keys.public_jwks())["keys"]) != old.kid
    assert await store.get(KEY_NAMESPACE, "ring") is not None


async def test_mcp_server_advertises_its_authorization_server(tmp_path: Path) -> None:
    auth = make_server(tmp_path)
    mcp = MCPServer("notes", auth=auth)

    @mcp.tool()
    def hello() -> str:
        return "hi"

    with serve(mcp.streamable_http_app()) as url:
        async with httpx2.AsyncClient() as http:
            challenge = await http.post(url + "/mcp", json={})
            prm = (await http.get(url + "/.well-known/oauth-protected-resource/mcp")).json()
            asm = (await http.get(url + "/.well-known/oauth-authorization-server")).json()
    assert challenge.status_code == 401
    assert prm["authorization_servers"] == [url + "/"]
    assert asm["issuer"] == url + "/"
    assert prm["resource"] == url + "/mcp"
    assert auth.resources == [url + "/mcp"]


def test_an_mcp_server_with_a_resource_url_gives_the_issuer_its_origin(tmp_path: Path) -> None:
    auth = make_server(tmp_path)
    MCPServer("notes", auth=auth, resource_url="https://notes.example.com/mcp")
    assert auth.issuer == "https://notes.example.com/"
    assert auth.resources == ["https://notes.example.com/mcp"]


def test_signing_algorithms() -> None:
    with pytest.raises(ConfigurationError):
        AuthorizationServer("http://127.0.0.1:1", store=MemoryStore(), signing=Signing(algorithm="HS256"))
    assert "ES256" in JWSRegistry.algorithms


def _b64(segment: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


async def test_id_jag_is_advertised_only_when_identity_providers_are_trusted(tmp_path: Path) -> None:
    server = make_server(tmp_path, identity_assertion_issuers={"https://idp.example": "https://idp.example/jwks"})
    server.set_issuer("http://127.0.0.1:1")
    doc = metadata_document(server)
    assert "urn:ietf:params:oauth:grant-type:jwt-bearer" in doc["grant_types_supported"]
    assert doc["authorization_grant_profiles_supported"] == ["urn:ietf:params:oauth:grant-profile:id-jag"]
    plain = make_server(tmp_path / "plain")
    plain.set_issuer("http://127.0.0.1:1")
    assert "authorization_grant_profiles_supported" not in metadata_document(plain)


async def test_a_grant_lives_as_long_as_its_rotating_refresh_tokens() -> None:
    clock = FakeClock(1_800_000_000.0)
    resource = "http://127.0.0.1:1/mcp"
    server = AuthorizationServer(
        "http://127.0.0.1:1",
        store=MemoryStore(clock=clock),
        resources=[resource],
        lifetimes=TokenLifetimes(refresh_token=100),
        clock=clock,
        clients=[PUBLIC_CLIENT],
    )
    alice = User("alice")
    grant = await server.new_grant(alice, PUBLIC_CLIENT.client_id)
    refresh = RefreshTokens(server)
    token: str | None = await refresh.issue(
        client_id=PUBLIC_CLIENT.client_id, user=alice, scopes=(), resources=(resource,), grant_id=grant
    )
    for _ in range(3):
        clock.now += 60
        assert token is not None
        token = (await refresh.rotate(token, PUBLIC_CLIENT)).refresh_token
    # 180 s after the grant was made, longer than a refresh token lives: withdrawal still reaches it.
    assert await server.revoke_user_client("alice", PUBLIC_CLIENT.client_id) == 1
    assert token is not None
    with pytest.raises(InvalidGrant):
        await refresh.rotate(token, PUBLIC_CLIENT)


def test_the_default_store_is_a_file_per_issuer_under_the_data_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    notes = AuthorizationServer("https://notes.example.com")
    other = AuthorizationServer("http://127.0.0.1:8000")
    assert isinstance(notes.store, SQLiteStore)
    assert isinstance(other.store, SQLiteStore)
    assert notes.store.path == tmp_path / "bastion" / "notes.example.com.db"
    assert other.store.path == tmp_path / "bastion" / "127.0.0.1-8000.db"
    assert (notes.store.path.stat().st_mode & 0o777) == 0o600
