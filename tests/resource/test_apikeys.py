"""APIKeyVerifier: keys held as digests, compared in constant time, from any header."""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from starlette.requests import HTTPConnection

from bastion import ConfigurationError, InvalidToken, MCPServer, TokenExpired, get_access_token, require_scopes
from bastion._resource.apikeys import APIKey, APIKeyVerifier, StaticTokenVerifier, hash_api_key

from support.notes import MCP_HEADERS, rpc, served

KEY = "sk-live-7d3c1f0e9a"
OTHER = "sk-live-000000000b"


def conn(*headers: tuple[str, str]) -> HTTPConnection:
    return HTTPConnection({"type": "http", "headers": [(k.lower().encode(), v.encode()) for k, v in headers]})


def verifier(**options: Any) -> APIKeyVerifier:
    return APIKeyVerifier(
        {
            KEY: APIKey("ci-bot", scopes=("notes:read",), roles=("robot",), claims={"team": "infra"}),
            OTHER: "alice",
        },
        **options,
    )


def test_hash_api_key_is_sha256_hex() -> None:
    assert hash_api_key("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


async def test_bearer_key_names_its_principal() -> None:
    access = await verifier().authenticate(conn(("Authorization", f"Bearer {KEY}")))
    assert access is not None
    assert access.subject == "ci-bot"
    assert access.client_id == "ci-bot"
    assert access.scopes == ["notes:read"]
    assert access.roles == ["robot"]
    assert access.claims == {"sub": "ci-bot", "team": "infra"}
    assert access.token == KEY
    alice = await verifier().authenticate(conn(("Authorization", f"bearer {OTHER}")))
    assert alice is not None
    assert alice.subject == "alice"
    assert alice.scopes == []


async def test_no_key_is_not_presented_and_unknown_key_is_refused() -> None:
    assert await verifier().authenticate(conn()) is None
    assert await verifier().authenticate(conn(("Authorization", "Basic dXNlcjpwYXNz"))) is None
    with pytest.raises(InvalidToken) as info:
        await verifier().authenticate(conn(("Authorization", "Bearer sk-live-guess")))
    assert "sk-live-guess" not in str(info.value)
    assert info.value.description == "The API key is invalid"
    assert await verifier().verify_token("sk-live-guess") is None
    assert (await verifier().verify_token(KEY)) is not None


async def test_keys_are_held_only_as_digests_and_compared_with_compare_digest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    v = verifier()
    assert KEY not in repr(vars(v))
    assert KEY not in repr(v)
    compared: list[tuple[bytes, bytes]] = []
    original = hmac.compare_digest

    def recording_compare_digest(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return original(a, b)

    monkeypatch.setattr("bastion._resource.apikeys.hmac.compare_digest", recording_compare_digest)
    await v.verify(KEY)
    with pytest.raises(InvalidToken):
        await v.verify("sk-live-guess")
    digest = hashlib.sha256(KEY.encode()).digest()
    assert compared[0] == (digest, digest)
    # A miss is decided by compare_digest too, against a digest no key has.
    assert compared[1][1] == hashlib.sha256(b"sk-live-guess").digest()
    assert compared[1][0] != compared[1][1]
    assert len(v.cache) == 0


async def test_header_mode_reads_only_that_header() -> None:
    v = verifier(header="X-API-Key")
    access = await v.authenticate(conn(("X-API-Key", KEY)))
    assert access is not None
    assert access.subject == "ci-bot"
    assert await v.authenticate(conn(("x-api-key", f"  {OTHER} "))) is not None
    assert await v.authenticate(conn(("Authorization", f"Bearer {KEY}"))) is None
    with pytest.raises(InvalidToken):
        await v.authenticate(conn(("X-API-Key", "nope")))
    with pytest.raises(InvalidToken):
        await v.authenticate(conn(("X-API-Key", KEY), ("X-API-Key", OTHER)))
    with pytest.raises(InvalidToken):
        await v.authenticate(conn(("X-API-Key", "")))


async def test_another_authorization_scheme() -> None:
    v = verifier(scheme="ApiKey")
    access = await v.authenticate(conn(("Authorization", f"apikey {KEY}")))
    assert access is not None
    assert access.subject == "ci-bot"
    assert await v.authenticate(conn(("Authorization", f"Bearer {KEY}"))) is None
    for header in ("ApiKey", "ApiKey a b"):
        with pytest.raises(InvalidToken):
            await v.authenticate(conn(("Authorization", header)))
    with pytest.raises(InvalidToken):
        await v.authenticate(conn(("Authorization", f"ApiKey {KEY}"), ("Authorization", f"ApiKey {KEY}")))


async def test_from_hashes_needs_no_raw_key() -> None:
    v = APIKeyVerifier.from_hashes(
        {
            hash_api_key(KEY): {"subject": "ci-bot", "scopes": "notes:read notes:write"},
            "sha256:" + hash_api_key(OTHER).upper(): APIKey("alice", client_id="cli"),
        },
        header="X-API-Key",
    )
    assert len(v) == 2
    access = await v.verify(KEY)
    assert access.scopes == ["notes:read", "notes:write"]
    alice = await v.verify(OTHER)
    assert (alice.subject, alice.client_id) == ("alice", "cli")
    with pytest.raises(InvalidToken):
        await v.verify(hash_api_key(KEY))


@pytest.mark.parametrize(
    "hashes",
    [
        {"abc": "x"},
        {"sha1:" + "0" * 40: "x"},
        {"g" * 64: "x"},
        {hash_api_key(KEY): "x", "sha256:" + hash_api_key(KEY): "y"},
    ],
)
def test_from_hashes_refuses_what_is_not_a_digest(hashes: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        APIKeyVerifier.from_hashes(hashes)


async def test_expired_key_is_refused() -> None:
    v = APIKeyVerifier({KEY: APIKey("old", expires_at=time.time() - 1), OTHER: APIKey("new", expires_at=2**40)})
    with pytest.raises(TokenExpired):
        await v.verify(KEY)
    assert (await v.verify(OTHER)).expires_at == 2**40


@pytest.mark.parametrize(
    "keys",
    [
        {"": "x"},
        {" sk-live-padded": "x"},
        {"sk live secret": "x"},
        {"sk-live-x" * 3000: "x"},
        {KEY: ""},
        {KEY: {"scopes": ["a"]}},
        {KEY: {"subject": "a", "scope": ["a"]}},
        {KEY: {"subject": "a", "scopes": [1]}},
        {KEY: {"subject": "a", "claims": []}},
        {KEY: {"subject": "a", "expires_at": "tomorrow"}},
        {KEY: 42},
    ],
)
def test_bad_keys_are_configuration_errors_that_do_not_echo_the_key(keys: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError) as info:
        APIKeyVerifier(keys)
    for key in keys:
        if key:
            assert key.strip() not in str(info.value)


@pytest.mark.parametrize(("header", "scheme"), [("Authorization", "Bearer"), ("X API Key", "Bearer"), (None, "")])
def test_bad_header_or_scheme(header: str | None, scheme: str) -> None:
    with pytest.raises(ConfigurationError):
        APIKeyVerifier({KEY: "x"}, header=header, scheme=scheme)


def test_api_key_coercion() -> None:
    assert APIKey.coerce("bob") == APIKey("bob")
    assert APIKey.coerce({"subject": "bob", "roles": ["a", "b"]}).roles == ("a", "b")
    key = APIKey("bob")
    assert APIKey.coerce(key) is key
    assert StaticTokenVerifier is APIKeyVerifier


def keyed_server() -> MCPServer:
    mcp = MCPServer("Notes", auth=verifier(header="X-API-Key"), resource_url="https://notes.example/mcp")

    @mcp.tool()
    def whoami() -> str:
        token = get_access_token()
        return f"{token.subject} {token.claim('team')}"

    @mcp.tool(auth=require_scopes("notes:read"))
    def list_notes() -> list[str]:
        return ["first"]

    return mcp


async def test_end_to_end_with_an_x_api_key_header() -> None:
    with served(keyed_server(), stateless_http=True, json_response=True) as url:
        async with (
            httpx2.AsyncClient(headers={"X-API-Key": KEY}) as http,
            Client(streamable_http_client(url, http_client=http)) as client,
        ):
            result = await client.call_tool("whoami", {})
            assert result.content[0].text == "ci-bot infra"  # type: ignore[union-attr]
            listed = await client.call_tool("list_notes", {})
            assert not listed.is_error
        async with httpx2.AsyncClient() as http:
            missing = await http.post(url, json=rpc("tools/list"), headers=MCP_HEADERS)
            assert missing.status_code == 401
            assert "error=" not in missing.headers["www-authenticate"]
            wrong = await http.post(url, json=rpc("tools/list"), headers={**MCP_HEADERS, "X-API-Key": "sk-guess"})
            assert wrong.status_code == 401
            assert 'error="invalid_token"' in wrong.headers["www-authenticate"]
            alice = await http.post(
                url,
                json=rpc("tools/call", {"name": "list_notes", "arguments": {}}),
                headers={**MCP_HEADERS, "X-API-Key": OTHER},
            )
            assert alice.status_code == 403
