"""Client records: static clients from code or a JSON file, registered ones in the store, URL ids."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bastion import ConfigurationError
from bastion.authserver import Client
from bastion.authserver._clients import ClientRegistry, load_clients_file
from bastion.authserver._models import hash_secret, secret_matches
from bastion.storage import MemoryStore, SQLiteStore

from support.authserver import make_server

SECRET = "file-client-secret-0123456789abcdef"
PUBLIC_KEY = {
    "kty": "EC",
    "crv": "P-256",
    "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
    "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
}
FILE_CLIENTS: list[dict[str, Any]] = [
    {
        "client_id": "cli",
        "client_name": "Command line",
        "redirect_uris": ["http://127.0.0.1/callback"],
        "application_type": "native",
    },
    {
        "client_id": "web",
        "redirect_uris": ["https://app.example.com/callback"],
        "client_secret": SECRET,
        "scope": "notes:read",
    },
    {
        "client_id": "worker",
        "token_endpoint_auth_method": "client_secret_post",
        "grant_types": ["client_credentials"],
        "client_secret_hash": hash_secret(SECRET),
    },
    {
        "client_id": "signer",
        "token_endpoint_auth_method": "private_key_jwt",
        "grant_types": ["client_credentials"],
        "jwks": {"keys": [PUBLIC_KEY]},
    },
]


def write(tmp_path: Path, content: Any) -> Path:
    path = tmp_path / "clients.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def file_error(tmp_path: Path, content: Any) -> str:
    with pytest.raises(ConfigurationError) as caught:
        load_clients_file(write(tmp_path, content))
    message = str(caught.value)
    assert SECRET not in message
    return message


def test_clients_file_is_loaded_with_secrets_hashed(tmp_path: Path) -> None:
    clients = {client.client_id: client for client in load_clients_file(write(tmp_path, FILE_CLIENTS))}
    assert set(clients) == {"cli", "web", "worker", "signer"}
    assert clients["cli"].is_public
    assert clients["cli"].application_type == "native"
    assert clients["cli"].grant_types == ("authorization_code", "refresh_token")
    web = clients["web"]
    assert web.token_endpoint_auth_method == "client_secret_basic"
    assert web.client_secret_hash is not None
    assert secret_matches(SECRET, web.client_secret_hash)
    assert SECRET not in repr(web)
    assert SECRET.encode() not in web.to_json()
    assert web.application_type is None
    assert web.allowed_scopes() == frozenset({"notes:read"})
    assert clients["worker"].client_secret_hash == hash_secret(SECRET)
    assert clients["worker"].redirect_uris == ()
    assert clients["signer"].jwks == {"keys": [PUBLIC_KEY]}
    assert all(client.kind == "static" for client in clients.values())


async def test_authorization_server_takes_a_clients_file_path(tmp_path: Path) -> None:
    for path in (write(tmp_path, FILE_CLIENTS), str(write(tmp_path, FILE_CLIENTS))):
        server = make_server(tmp_path, clients=path, store=MemoryStore())
        web = await server.clients.get("web")
        assert web is not None
        assert web.redirect_uris == ("https://app.example.com/callback",)
        assert await server.clients.get("public-client") is None


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("[{", "invalid JSON"),
        ('[{"client_id": "a", "client_id": "b"}]', "more than once"),
        ({"client_id": "a"}, "JSON array"),
        (["a"], "entry 0 is not a JSON object"),
        ([{"redirect_uris": ["https://a.example/cb"]}], "entry 0 needs a client_id"),
        ([{"client_id": 7}], "entry 0 needs a client_id"),
        (
            [
                {
                    "client_id": "a",
                    "redirect_uris": ["https://a.example/cb"],
                    "client_secret": SECRET,
                    "client_secret_hash": hash_secret(SECRET),
                }
            ],
            "both client_secret and client_secret_hash",
        ),
        ([{"client_id": "a", "redirect_uris": ["https://a.example/cb"], "client_secret": "short"}], "at least 16"),
        (
            [{"client_id": "a", "redirect_uris": ["https://a.example/cb"], "client_secret": 12345678901234567}],
            "at least 16",
        ),
        ([{"client_id": "a", "redirect_uris": ["https://a.example/cb"], "client_secret_hash": SECRET}], "SHA-256 hex"),
        (
            [{"client_id": "a", "redirect_uris": ["http://a.example/cb"], "client_secret": SECRET}],
            "'a': an http redirect URI",
        ),
        ([{"client_id": "a", "redirect_uris": ["https://a.example/cb#x"], "client_secret": SECRET}], "fragment"),
        ([{"client_id": "a", "redirect_uris": "https://a.example/cb"}], "array of strings"),
        ([{"client_id": "a"}], "redirect URI"),
        ([{"client_id": "a", "grant_types": ["client_credentials"]}], "authenticates"),
        (
            [
                {
                    "client_id": "a",
                    "grant_types": ["client_credentials"],
                    "token_endpoint_auth_method": "client_secret_basic",
                }
            ],
            "needs a client secret",
        ),
        (
            [
                {
                    "client_id": "a",
                    "redirect_uris": ["https://a.example/cb"],
                    "token_endpoint_auth_method": "none",
                    "client_secret": SECRET,
                }
            ],
            "has no client secret",
        ),
        (
            [
                {
                    "client_id": "a",
                    "grant_types": ["client_credentials"],
                    "token_endpoint_auth_method": "private_key_jwt",
                }
            ],
            "needs jwks or jwks_uri",
        ),
        (
            [
                {
                    "client_id": "a",
                    "grant_types": ["client_credentials"],
                    "token_endpoint_auth_method": "private_key_jwt",
                    "jwks": {"keys": [{**PUBLIC_KEY, "d": SECRET}]},
                }
            ],
            "public keys only",
        ),
        ([{"client_id": "a", "redirect_uris": ["https://a.example/cb"], "grant_types": ["password"]}], "grant_types"),
        ([{"client_id": "a", "redirect_uris": ["https://a.example/cb"], "application_type": "tv"}], "web or native"),
        (
            [
                {
                    "client_id": "a",
                    "grant_types": ["client_credentials"],
                    "client_secret": SECRET,
                    "introspection": "yes",
                }
            ],
            "introspection must be true or false",
        ),
        ([{"client_id": "a", "redirect_uris": ["http://127.0.0.1/cb"], "introspection": True}], "authenticates"),
        (
            [{"client_id": "a", "redirect_uris": ["https://a.example/cb"], "client_secret": SECRET, "client_name": 3}],
            "client_name must be a string",
        ),
    ],
)
def test_invalid_clients_file_names_the_problem_without_the_secret(tmp_path: Path, content: Any, reason: str) -> None:
    assert reason in file_error(tmp_path, content)


def test_unreadable_clients_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot be read"):
        load_clients_file(tmp_path / "missing.json")


def test_two_static_clients_with_one_id_are_refused(tmp_path: Path) -> None:
    entry = {"client_id": "same", "redirect_uris": ["http://127.0.0.1/cb"]}
    with pytest.raises(ConfigurationError, match="'same'"):
        ClientRegistry(MemoryStore(), write(tmp_path, [entry, entry]))
    with pytest.raises(ConfigurationError, match="'same'"):
        ClientRegistry(MemoryStore(), [Client("same", redirect_uris=("http://127.0.0.1/cb",))] * 2)


@pytest.mark.parametrize(
    ("client", "reason"),
    [
        (Client("c", redirect_uris=("http://app.example.com/cb",)), "loopback"),
        (Client("c"), "redirect URI"),
        (
            Client("c", redirect_uris=("https://a.example/cb",), token_endpoint_auth_method="client_secret_basic"),
            "secret",
        ),
        (Client("c", redirect_uris=("https://a.example/cb",), token_endpoint_auth_method="magic"), "one of"),
        (Client("c", grant_types=("client_credentials",), token_endpoint_auth_method="private_key_jwt"), "jwks"),
        (Client("c", grant_types=("client_credentials",)), "authenticates"),
        (Client("c", redirect_uris=("https://a.example/cb",), response_types=("token",)), "response type"),
        (Client("c", redirect_uris=("http://127.0.0.1/cb",), introspection=True), "introspection needs"),
    ],
)
def test_invalid_clients_in_code_are_refused_when_the_server_is_built(
    tmp_path: Path, client: Client, reason: str
) -> None:
    with pytest.raises(ConfigurationError, match=reason):
        make_server(tmp_path, clients=[client], store=MemoryStore())


async def test_registered_clients_are_saved_found_and_deleted() -> None:
    registry = ClientRegistry(MemoryStore())
    client = Client("reg-1", redirect_uris=("https://a.example/cb",), kind="registered", application_type="native")
    assert await registry.get("reg-1") is None
    await registry.save(client)
    assert await registry.get("reg-1") == client
    assert await registry.delete("reg-1")
    assert await registry.get("reg-1") is None
    assert not await registry.delete("reg-1")


async def test_static_clients_cannot_be_replaced_or_deleted() -> None:
    static = Client("fixed", redirect_uris=("https://a.example/cb",))
    registry = ClientRegistry(MemoryStore(), [static])
    with pytest.raises(ValueError, match="static"):
        await registry.save(Client("fixed", redirect_uris=("https://evil.example/cb",), kind="registered"))
    assert not await registry.delete("fixed")
    assert await registry.get("fixed") == static


async def test_url_client_ids_go_to_the_metadata_document_resolver() -> None:
    asked: list[str] = []

    async def resolve(client_id: str) -> Client:
        asked.append(client_id)
        return Client(client_id, redirect_uris=("https://app.example.com/cb",), kind="metadata_document")

    url = "https://app.example.com/client.json"
    registry = ClientRegistry(MemoryStore(), metadata_documents=resolve)
    client = await registry.get(url)
    assert client is not None
    assert client.kind == "metadata_document"
    assert await registry.get("not-a-url") is None
    assert asked == [url]
    with pytest.raises(ValueError, match="URL"):
        await registry.save(Client(url, redirect_uris=("https://app.example.com/cb",), kind="registered"))


async def test_url_client_ids_are_unknown_without_a_resolver() -> None:
    registry = ClientRegistry(MemoryStore())
    assert await registry.get("https://app.example.com/client.json") is None


async def test_empty_and_oversized_client_ids_are_unknown() -> None:
    registry = ClientRegistry(MemoryStore())
    assert await registry.get("") is None
    assert await registry.get("x" * 5000) is None


async def test_registered_clients_survive_reopening_the_store(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "clients.db")
    client = Client(
        "reg-2",
        redirect_uris=("http://127.0.0.1/cb",),
        token_endpoint_auth_method="private_key_jwt",
        jwks={"keys": [PUBLIC_KEY]},
        contacts=("ops@example.com",),
        kind="registered",
        client_id_issued_at=1_800_000_000,
    )
    await ClientRegistry(store).save(client)
    await store.aclose()
    reopened = SQLiteStore(tmp_path / "clients.db")
    assert await ClientRegistry(reopened).get("reg-2") == client
    await reopened.aclose()
