"""Dynamic client registration (RFC 7591) through real HTTP: accepted, refused, rate-limited, durable."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from bastion.authserver import Registration
from bastion.authserver._clients import CLIENT_NAMESPACE
from bastion.authserver._models import secret_matches
from bastion.authserver._ratelimit import RateLimiter
from bastion.storage import MemoryStore, SQLiteStore

from support.authserver import make_server, serving
from support.clock import FakeClock

NATIVE = {
    "client_name": "Native MCP Client",
    "redirect_uris": ["http://127.0.0.1:33418/callback"],
    "token_endpoint_auth_method": "none",
    "grant_types": ["authorization_code", "refresh_token"],
    "response_types": ["code"],
    "application_type": "native",
    "scope": "notes:read",
}
WEB = {"client_name": "Web App", "redirect_uris": ["https://app.example.com/callback"]}
PUBLIC_KEY = {
    "kty": "EC",
    "crv": "P-256",
    "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
    "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
}


@pytest.fixture(scope="module")
def shared_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One server for the many refusal cases (no rate limit, so they cannot trip it)."""
    server = make_server(tmp_path_factory.mktemp("register"), registration=Registration(rate_limit=0))
    with serving(server) as url:
        yield url


async def post(url: str, body: Any) -> httpx2.Response:
    async with httpx2.AsyncClient() as http:
        return await http.post(url + "/register", json=body)


async def post_raw(url: str, content: bytes, content_type: str = "application/json") -> httpx2.Response:
    async with httpx2.AsyncClient() as http:
        return await http.post(url + "/register", content=content, headers={"Content-Type": content_type})


def assert_error(response: httpx2.Response, error: str, status: int = 400) -> str:
    assert response.status_code == status, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["error"] == error
    return str(body.get("error_description", ""))


# -- accepted registrations -------------------------------------------------------------------


async def test_public_native_client_is_registered_as_sent(tmp_path: Path) -> None:
    clock = FakeClock(1_800_000_000.0)
    server = make_server(tmp_path, clock=clock)
    with serving(server) as url:
        response = await post(url, NATIVE)
    assert response.status_code == 201
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert "client_secret" not in body
    assert "client_secret_expires_at" not in body
    assert body["client_id_issued_at"] == int(clock.now)
    for name, value in NATIVE.items():
        if name != "scope":
            assert body[name] == value
    assert "scope" not in body  # checked, but not a limit: MCP clients step up later
    client = await server.clients.get(body["client_id"])
    assert client is not None
    assert client.kind == "registered"
    assert client.is_public
    assert client.application_type == "native"
    assert client.redirect_uris == ("http://127.0.0.1:33418/callback",)
    assert client.allowed_scopes() is None
    assert server.resolve_scopes("notes:read notes:write", client) == ("notes:read", "notes:write")


async def test_confidential_client_gets_a_secret_of_which_only_the_hash_is_kept(tmp_path: Path) -> None:
    server = make_server(tmp_path)
    with serving(server) as url:
        response = await post(url, WEB)
    assert response.status_code == 201
    body = response.json()
    # RFC 7591 section 2: token_endpoint_auth_method defaults to client_secret_basic.
    assert body["token_endpoint_auth_method"] == "client_secret_basic"
    assert body["client_secret_expires_at"] == 0
    secret = body["client_secret"]
    assert len(secret) >= 32
    client = await server.clients.get(body["client_id"])
    assert client is not None
    assert client.client_secret_hash is not None
    assert secret_matches(secret, client.client_secret_hash)
    assert not secret_matches(secret + "x", client.client_secret_hash)
    raw = await server.store.get(CLIENT_NAMESPACE, body["client_id"])
    assert raw is not None
    assert secret.encode() not in raw


async def test_defaults_web_application_and_code_flow_grants(tmp_path: Path) -> None:
    server = make_server(tmp_path)
    with serving(server) as url:
        body = (await post(url, {"redirect_uris": ["https://app.example.com/cb"]})).json()
    assert body["application_type"] == "web"
    assert body["grant_types"] == ["authorization_code", "refresh_token"]
    assert body["response_types"] == ["code"]


async def test_every_registration_gets_a_new_client_id_and_secret(tmp_path: Path) -> None:
    server = make_server(tmp_path)
    with serving(server) as url:
        first, second = (await post(url, WEB)).json(), (await post(url, WEB)).json()
    assert first["client_id"] != second["client_id"]
    assert first["client_secret"] != second["client_secret"]


async def test_client_secret_post_and_client_credentials_without_redirects(tmp_path: Path) -> None:
    server = make_server(tmp_path)
    metadata = {"token_endpoint_auth_method": "client_secret_post", "grant_types": ["client_credentials"]}
    with serving(server) as url:
        response = await post(url, metadata)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["grant_types"] == ["client_credentials"]
    assert "response_types" not in body
    assert "redirect_uris" not in body
    assert "client_secret" in body


async def test_private_key_jwt_client_with_public_keys(tmp_path: Path) -> None:
    server = make_server(tmp_path)
    metadata = {
        "token_endpoint_auth_method": "private_key_jwt",
        "grant_types": ["client_credentials"],
        "jwks": {"keys": [PUBLIC_KEY]},
    }
    with serving(server) as url:
        response = await post(url, metadata)
    assert response.status_code == 201, response.text
    body = response.json()
    assert "client_secret" not in body
    assert body["jwks"] == {"keys": [PUBLIC_KEY]}
    client = await server.clients.get(body["client_id"])
    assert client is not None
    assert client.client_secret_hash is None


async def test_private_key_jwt_client_with_a_jwks_uri(tmp_path: Path) -> None:
    server = make_server(tmp_path)
    metadata = {
        "token_endpoint_auth_method": "private_key_jwt",
        "redirect_uris": ["https://app.example.com/cb"],
        "jwks_uri": "https://app.example.com/jwks.json",
    }
    with serving(server) as url:
        response = await post(url, metadata)
    assert response.status_code == 201, response.text
    assert response.json()["jwks_uri"] == "https://app.example.com/jwks.json"


async def test_unknown_fields_are_ignored_and_informational_ones_kept(tmp_path: Path) -> None:
    server = make_server(tmp_path)
    metadata = {
        **NATIVE,
        "client_uri": "https://client.example.com/",
        "logo_uri": "https://client.example.com/logo.png",
        "tos_uri": "https://client.example.com/tos",
        "policy_uri": "https://client.example.com/privacy",
        "contacts": ["ops@client.example.com"],
        "software_id": "4NRB1-0XZABZI9E6-5SM3R",
        "software_version": "2.1",
        "client_name#fr": "Client natif",
        "software_statement": "not.a.jwt",
        "extension": {"nested": [1, 2, 3]},
        "client_secret": "chosen-by-the-client-and-ignored",
    }
    with serving(server) as url:
        response = await post(url, metadata)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["contacts"] == ["ops@client.example.com"]
    assert body["software_version"] == "2.1"
    assert body["logo_uri"] == "https://client.example.com/logo.png"
    for ignored in ("client_name#fr", "software_statement", "extension", "client_secret"):
        assert ignored not in body


async def test_null_fields_count_as_absent(tmp_path: Path) -> None:
    server = make_server(tmp_path)
    metadata = {**NATIVE, "client_uri": None, "scope": None, "contacts": None, "jwks": None}
    with serving(server) as url:
        response = await post(url, metadata)
    assert response.status_code == 201, response.text
    assert "scope" not in response.json()


async def test_charset_parameter_on_the_content_type_is_accepted(tmp_path: Path) -> None:
    server = make_server(tmp_path)
    with serving(server) as url:
        response = await post_raw(url, json.dumps(NATIVE).encode(), "application/json; charset=utf-8")
    assert response.status_code == 201


@pytest.mark.parametrize(
    "uri",
    [
        "https://app.example.com/callback",
        "https://app.example.com/callback?tenant=1",
        "http://127.0.0.1/callback",
        "http://[::1]:8080/callback",
        "http://localhost:3000/callback",
    ],
)
async def test_accepted_redirect_uris(shared_url: str, uri: str) -> None:
    response = await post(shared_url, {**NATIVE, "redirect_uris": [uri]})
    assert response.status_code == 201, response.text
    assert response.json()["redirect_uris"] == [uri]


# -- refused registrations --------------------------------------------------------------------


@pytest.mark.parametrize(
    "uri",
    [
        "https://app.example.com/callback#fragment",
        "https://app.example.com/callback#",
        "https://user@app.example.com/callback",
        "https://user:password@app.example.com/callback",
        "http://app.example.com/callback",
        "http://192.168.1.10/callback",
        "https://*.example.com/callback",
        "com.example.app:/callback",
        "myapp://callback",
        "/callback",
        "callback",
        "",
        "https://app.example.com/" + "a" * 2000,
        "https://app.example.com/caf\u00e9",
        "javascript:alert(document.cookie)",
    ],
)
async def test_refused_redirect_uris(shared_url: str, uri: str) -> None:
    response = await post(shared_url, {**NATIVE, "redirect_uris": ["http://127.0.0.1/ok", uri]})
    assert_error(response, "invalid_redirect_uri")


@pytest.mark.parametrize(
    "redirect_uris",
    ["https://app.example.com/callback", [1], [["https://app.example.com/cb"]], {"uri": "https://a.example/"}, True],
)
async def test_redirect_uris_of_the_wrong_type(shared_url: str, redirect_uris: Any) -> None:
    response = await post(shared_url, {**NATIVE, "redirect_uris": redirect_uris})
    assert_error(response, "invalid_redirect_uri")


async def test_code_flow_needs_redirect_uris(tmp_path: Path) -> None:
    server = make_server(tmp_path)
    with serving(server) as url:
        missing = await post(url, {"token_endpoint_auth_method": "none"})
        empty = await post(url, {"token_endpoint_auth_method": "none", "redirect_uris": []})
    assert_error(missing, "invalid_redirect_uri")
    assert_error(empty, "invalid_redirect_uri")


async def test_too_many_redirect_uris(tmp_path: Path) -> None:
    server = make_server(tmp_path)
    uris = [f"https://app.example.com/cb{i}" for i in range(11)]
    with serving(server) as url:
        ten = await post(url, {**NATIVE, "redirect_uris": uris[:10]})
        eleven = await post(url, {**NATIVE, "redirect_uris": uris})
    assert ten.status_code == 201
    assert_error(eleven, "invalid_redirect_uri")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("client_name", 42),
        ("client_name", ["a"]),
        ("client_name", "x" * 2049),
        ("client_name", "bad\x00name"),
        ("client_name", "line\nbreak"),
        ("token_endpoint_auth_method", "tls_client_auth"),
        ("token_endpoint_auth_method", "client_secret_jwt"),
        ("token_endpoint_auth_method", ["none"]),
        ("token_endpoint_auth_method", 1),
        ("grant_types", "authorization_code"),
        ("grant_types", ["password"]),
        ("grant_types", ["implicit"]),
        ("grant_types", ["authorization_code", 7]),
        ("grant_types", ["refresh_token"]),
        ("grant_types", ["authorization_code", "client_credentials"]),
        ("grant_types", ["authorization_code", "urn:ietf:params:oauth:grant-type:jwt-bearer"]),
        ("response_types", ["token"]),
        ("response_types", ["code", "token"]),
        ("response_types", []),
        ("response_types", "code"),
        ("scope", "notes:read unknown:scope"),
        ("scope", ["notes:read"]),
        ("scope", 'notes:read "quoted"'),
        ("scope", "x" * 2049),
        ("application_type", "desktop"),
        ("application_type", 1),
        ("client_uri", "http://client.example.com/"),
        ("logo_uri", "javascript:alert(1)"),
        ("tos_uri", "ftp://client.example.com/tos"),
        ("policy_uri", "/privacy"),
        ("policy_uri", "https://user@client.example.com/privacy"),
        ("contacts", "ops@client.example.com"),
        ("contacts", [f"c{i}@client.example.com" for i in range(6)]),
        ("contacts", ["x" * 2049]),
        ("software_id", {"id": 1}),
        ("software_version", 2.1),
    ],
)
async def test_invalid_metadata_fields(shared_url: str, field: str, value: Any) -> None:
    response = await post(shared_url, {**NATIVE, field: value})
    description = assert_error(response, "invalid_client_metadata")
    assert description


@pytest.mark.parametrize(
    "metadata",
    [
        {"token_endpoint_auth_method": "private_key_jwt", "grant_types": ["client_credentials"]},
        {
            "token_endpoint_auth_method": "private_key_jwt",
            "grant_types": ["client_credentials"],
            "jwks": {"keys": [{**PUBLIC_KEY, "d": "private-part"}]},
        },
        {
            "token_endpoint_auth_method": "private_key_jwt",
            "grant_types": ["client_credentials"],
            "jwks": {"keys": [{"kty": "oct", "k": "c2VjcmV0"}]},
        },
        {"token_endpoint_auth_method": "private_key_jwt", "grant_types": ["client_credentials"], "jwks": [PUBLIC_KEY]},
        {"token_endpoint_auth_method": "private_key_jwt", "grant_types": ["client_credentials"], "jwks": {"keys": []}},
        {
            "token_endpoint_auth_method": "private_key_jwt",
            "grant_types": ["client_credentials"],
            "jwks": {"keys": [{"crv": "P-256"}]},
        },
        {
            "token_endpoint_auth_method": "private_key_jwt",
            "grant_types": ["client_credentials"],
            "jwks": {"keys": [PUBLIC_KEY] * 11},
        },
        {
            "token_endpoint_auth_method": "private_key_jwt",
            "grant_types": ["client_credentials"],
            "jwks_uri": "http://app.example.com/jwks.json",
        },
        {
            "token_endpoint_auth_method": "private_key_jwt",
            "grant_types": ["client_credentials"],
            "jwks": {"keys": [PUBLIC_KEY]},
            "jwks_uri": "https://app.example.com/jwks.json",
        },
        {"token_endpoint_auth_method": "none", "grant_types": ["client_credentials"]},
        {
            "token_endpoint_auth_method": "client_secret_basic",
            "grant_types": ["client_credentials"],
            "response_types": ["code"],
        },
    ],
)
async def test_inconsistent_client_authentication(shared_url: str, metadata: dict[str, Any]) -> None:
    response = await post(shared_url, metadata)
    assert_error(response, "invalid_client_metadata")


@pytest.mark.parametrize(
    ("content", "content_type", "reason"),
    [
        (b"redirect_uris=https%3A%2F%2Fa.example%2Fcb", "application/x-www-form-urlencoded", "application/json"),
        (json.dumps(NATIVE).encode(), "text/plain", "application/json"),
        (json.dumps(NATIVE).encode(), "", "application/json"),
        (b"", "application/json", "JSON"),
        (b"{not json", "application/json", "JSON"),
        (b"[]", "application/json", "object"),
        (b'"a string"', "application/json", "object"),
        (b"null", "application/json", "object"),
        (b'{"a": NaN}', "application/json", "JSON"),
        (b'{"a": Infinity}', "application/json", "JSON"),
        (b"\xff\xfe{}", "application/json", "JSON"),
        (b"[" * 5000 + b"]" * 5000, "application/json", "JSON"),
        (b'{"a": ' + b"9" * 5000 + b"}", "application/json", "JSON"),
        (
            b'{"redirect_uris": ["http://127.0.0.1/a"], "redirect_uris": ["http://127.0.0.1/b"]}',
            "application/json",
            "more than once",
        ),
        (b'{"jwks": {"keys": [], "keys": []}}', "application/json", "more than once"),
    ],
)
async def test_bodies_that_are_not_one_json_object(
    shared_url: str, content: bytes, content_type: str, reason: str
) -> None:
    response = await post_raw(shared_url, content, content_type)
    assert reason in assert_error(response, "invalid_request")


async def test_a_huge_body_is_refused(tmp_path: Path) -> None:
    server = make_server(tmp_path)
    huge = json.dumps({**NATIVE, "padding": "x" * 17000}).encode()
    with serving(server) as url:
        declared = await post_raw(url, huge)

        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(huge), 1024):
                yield huge[start : start + 1024]

        async with httpx2.AsyncClient() as http:
            streamed = await http.post(
                url + "/register", content=chunks(), headers={"Content-Type": "application/json"}
            )
        just_fits = await post(url, {**NATIVE, "padding": "x" * 15000})
    assert "too large" in assert_error(declared, "invalid_request", 413)
    assert "too large" in assert_error(streamed, "invalid_request", 413)
    assert just_fits.status_code == 201


async def test_other_methods_are_not_allowed(tmp_path: Path) -> None:
    server = make_server(tmp_path)
    with serving(server) as url:
        async with httpx2.AsyncClient() as http:
            response = await http.get(url + "/register")
    assert response.status_code == 405


async def test_disabled_registration_is_refused_with_a_reason(tmp_path: Path) -> None:
    server = make_server(tmp_path, registration=Registration(dynamic=False))
    with serving(server) as url:
        response = await post(url, NATIVE)
        async with httpx2.AsyncClient() as http:
            metadata = (await http.get(url + "/.well-known/oauth-authorization-server")).json()
    assert "not enabled" in assert_error(response, "access_denied", 403)
    assert "registration_endpoint" not in metadata


# -- rate limit -------------------------------------------------------------------------------


async def test_registrations_per_minute_per_address_are_limited(tmp_path: Path) -> None:
    clock = FakeClock(1_800_000_000.0)
    server = make_server(tmp_path, clock=clock, registration=Registration(rate_limit=3))
    with serving(server) as url:
        accepted = [await post(url, NATIVE) for _ in range(2)]
        invalid = await post(url, {"redirect_uris": "not a list"})
        limited = await post(url, NATIVE)
        clock.now += 45
        still_limited = await post(url, NATIVE)
        clock.now += 15
        next_minute = await post(url, NATIVE)
    assert [r.status_code for r in accepted] == [201, 201]
    assert invalid.status_code == 400  # invalid attempts count too
    assert "too many" in assert_error(limited, "slow_down", 429)
    assert limited.headers["retry-after"] == "60"
    assert_error(still_limited, "slow_down", 429)
    assert still_limited.headers["retry-after"] == "15"
    assert next_minute.status_code == 201


async def test_rate_limit_zero_means_unlimited(tmp_path: Path) -> None:
    server = make_server(tmp_path, registration=Registration(rate_limit=0))
    with serving(server) as url:
        statuses = {(await post(url, NATIVE)).status_code for _ in range(25)}
    assert statuses == {201}


async def test_rate_limiter_counts_per_key_and_window() -> None:
    clock = FakeClock(1_800_000_000.0)
    limiter = RateLimiter(MemoryStore(), "test", limit=2, window=60, clock=clock)
    assert [await limiter.hit("a") for _ in range(3)] == [True, True, False]
    assert await limiter.hit("b")
    clock.now += 60
    assert await limiter.hit("a")


async def test_rate_limiter_is_shared_by_processes_on_one_store_file(tmp_path: Path) -> None:
    clock = FakeClock(1_800_000_000.0)
    first_store, second_store = SQLiteStore(tmp_path / "rate.db"), SQLiteStore(tmp_path / "rate.db")
    first = RateLimiter(first_store, "register", limit=3, window=60, clock=clock)
    second = RateLimiter(second_store, "register", limit=3, window=60, clock=clock)
    results = [await first.hit("203.0.113.5"), await second.hit("203.0.113.5"), await first.hit("203.0.113.5")]
    assert results == [True, True, True]
    assert not await second.hit("203.0.113.5")
    await first_store.aclose()
    await second_store.aclose()


async def test_a_limit_of_zero_refuses_everything_in_the_limiter() -> None:
    limiter = RateLimiter(MemoryStore(), "test", limit=0)
    assert not await limiter.hit("a")
    with pytest.raises(ValueError, match="positive window"):
        RateLimiter(MemoryStore(), "test", limit=1, window=0)


# -- durability -------------------------------------------------------------------------------


async def test_a_registered_client_survives_a_restart(tmp_path: Path) -> None:
    server = make_server(tmp_path)
    with serving(server) as url:
        body = (await post(url, {**WEB, "application_type": "native", "scope": "notes:read notes:write"})).json()
    await server.store.aclose()

    restarted = make_server(tmp_path, store=SQLiteStore(tmp_path / "auth.db"))
    client = await restarted.clients.get(body["client_id"])
    assert client is not None
    assert client.redirect_uris == ("https://app.example.com/callback",)
    assert client.application_type == "native"
    assert client.client_secret_hash is not None
    assert secret_matches(body["client_secret"], client.client_secret_hash)
    await restarted.store.aclose()


ODD_VALUES: list[Any] = [None, 0, -1, 1.5, True, "", " ", "x" * 3000, "\x00", [], {}, [None], [{}], [""], {"keys": {}}]
FIELDS = [
    "redirect_uris",
    "token_endpoint_auth_method",
    "grant_types",
    "response_types",
    "client_name",
    "client_uri",
    "logo_uri",
    "scope",
    "contacts",
    "tos_uri",
    "policy_uri",
    "jwks_uri",
    "jwks",
    "software_id",
    "software_version",
    "application_type",
]


async def test_no_input_gets_a_server_error(shared_url: str) -> None:
    # One connection per request: the sweep is hundreds of requests, and a new
    # connection avoids the delayed-ACK stall of small requests on a kept-alive one.
    async with httpx2.AsyncClient(headers={"Connection": "close"}) as http:
        for field in FIELDS:
            for value in ODD_VALUES:
                for base in (NATIVE, WEB):
                    response = await http.post(shared_url + "/register", json={**base, field: value})
                    assert response.status_code in (201, 400), (field, value, response.text)
                    if response.status_code == 400:
                        assert response.json()["error"] in ("invalid_client_metadata", "invalid_redirect_uri")
