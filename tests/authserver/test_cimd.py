"""Client ID Metadata Documents: URL rules, document validation, caching and single flight."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bastion.authserver._cimd import CIMD_NAMESPACE, CIMDResolver, is_metadata_document_url
from bastion.authserver._errors import InvalidClient
from bastion.authserver._fetch import SafeFetcher
from bastion.storage import SQLiteStore

from support.clock import FakeClock
from support.tls import TLSFiles, self_signed, serve_https

JWK = {
    "kty": "EC",
    "crv": "P-256",
    "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
    "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
}


@dataclass
class DocumentHost:
    """An https server on loopback publishing client documents that a test sets, counting requests."""

    base: str = ""
    documents: dict[str, tuple[Any, dict[str, str]]] = field(default_factory=dict)
    requests: Counter[str] = field(default_factory=Counter)

    def publish(self, path: str, document: Any, headers: dict[str, str] | None = None) -> str:
        self.documents[path] = (document, headers or {})
        return self.base + path

    def app(self) -> Starlette:
        async def serve_document(request: Request) -> Response:
            path = request.url.path
            self.requests[path] += 1
            if path not in self.documents:
                return JSONResponse({"error": "not found"}, status_code=404)
            document, headers = self.documents[path]
            return JSONResponse(document, headers=headers)

        return Starlette(routes=[Route("/{path:path}", serve_document)])


def app_document(url: str, **changes: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "client_id": url,
        "client_name": "Notes App",
        "redirect_uris": ["http://127.0.0.1/callback", "https://notes.example/callback"],
        "client_uri": "https://notes.example",
    }
    document.update(changes)
    return {key: value for key, value in document.items() if value is not None}


@pytest.fixture
def tls(tmp_path: Path) -> TLSFiles:
    return self_signed(tmp_path)


@pytest.fixture
def host(tls: TLSFiles) -> Iterator[DocumentHost]:
    documents = DocumentHost()
    with serve_https(documents.app(), tls) as base:
        documents.base = base
        yield documents


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_000_000.0)


@pytest.fixture
def store(tmp_path: Path, clock: FakeClock) -> SQLiteStore:
    return SQLiteStore(tmp_path / "auth.db", clock=clock)


@pytest.fixture
def resolver(tls: TLSFiles, store: SQLiteStore, clock: FakeClock) -> CIMDResolver:
    return CIMDResolver(SafeFetcher(allow_private=True, verify=tls.context, timeout=5.0), store, clock=clock)


# -- the URL ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "client_id",
    [
        "https://app.example/client.json",
        "https://app.example/oauth/client-metadata",
        "https://app.example:8443/client.json",
        "https://app.example/client.json?v=2",
        "https://127.0.0.1:9000/c",
    ],
)
def test_metadata_document_urls(client_id: str) -> None:
    assert is_metadata_document_url(client_id)


@pytest.mark.parametrize(
    "client_id",
    [
        "",
        "my-client",
        "http://app.example/client.json",
        "HTTPS://app.example/client.json",
        "https://app.example",
        "https://app.example/",
        "https://app.example/client.json#frag",
        "https://app.example/client.json#",
        "https://user@app.example/client.json",
        "https://user:pw@app.example/client.json",
        "https://app.example/a/../client.json",
        "https://app.example/./client.json",
        "https://app.example/a/%2e%2E/client.json",
        "https://app.example/client.json/..",
        "https:///client.json",
        "https://app.example:99999/client.json",
        "https://app.example/client json",
        "https://app.example/clïent.json",
        "https://app.example/" + "a" * 2000,
    ],
)
def test_not_metadata_document_urls(client_id: str) -> None:
    assert not is_metadata_document_url(client_id)


async def test_resolve_refuses_a_bad_url_without_fetching(resolver: CIMDResolver) -> None:
    for client_id in ("http://127.0.0.1/client.json", "https://127.0.0.1/", "not-a-url"):
        with pytest.raises(InvalidClient, match="not an acceptable client metadata document URL"):
            await resolver.resolve(client_id)


# -- the document ----------------------------------------------------------------------------------


async def test_valid_document_becomes_a_public_client(resolver: CIMDResolver, host: DocumentHost) -> None:
    url = host.base + "/clients/notes.json"
    host.publish("/clients/notes.json", app_document(url))
    client = await resolver.resolve(url)
    assert client.client_id == url
    assert client.kind == "metadata_document"
    assert client.client_name == "Notes App"
    assert client.redirect_uris == ("http://127.0.0.1/callback", "https://notes.example/callback")
    assert client.token_endpoint_auth_method == "none"
    assert client.is_public
    assert client.client_secret_hash is None
    assert client.grant_types == ("authorization_code", "refresh_token")


async def test_private_key_jwt_document(resolver: CIMDResolver, host: DocumentHost) -> None:
    url = host.base + "/clients/keyed.json"
    host.publish(
        "/clients/keyed.json", app_document(url, token_endpoint_auth_method="private_key_jwt", jwks={"keys": [JWK]})
    )
    client = await resolver.resolve(url)
    assert client.token_endpoint_auth_method == "private_key_jwt"
    assert client.jwks == {"keys": [JWK]}


def _bad_documents(url: str) -> list[tuple[Any, str]]:
    return [
        (app_document(url + "/"), "client_id is not exactly the URL"),
        (app_document(url.replace("/clients/app.json", "/clients/App.json")), "client_id is not exactly the URL"),
        (app_document(url.replace("https://", "HTTPS://")), "client_id is not exactly the URL"),
        (app_document(url, client_id=None), "client_id is not exactly the URL"),
        (app_document(url, client_name=None), "client_name is required"),
        (app_document(url, client_name="  "), "client_name is required"),
        (app_document(url, redirect_uris=None), "redirect_uris must be a non-empty array"),
        (app_document(url, redirect_uris=[]), "redirect_uris must be a non-empty array"),
        (app_document(url, redirect_uris="https://notes.example/cb"), "redirect_uris must be a non-empty array"),
        (app_document(url, redirect_uris=["http://evil.example/cb"]), "redirect URI"),
        (app_document(url, redirect_uris=["https://notes.example/cb#x"]), "fragment"),
        (app_document(url, redirect_uris=["https://*.example/cb"]), "wildcard"),
        (app_document(url, redirect_uris=[42]), "redirect_uris"),
        (app_document(url, client_secret="s3cret-in-public-document"), "must not contain client_secret"),
        (app_document(url, client_secret_expires_at=0), "must not contain client_secret_expires_at"),
        (app_document(url, token_endpoint_auth_method="client_secret_basic"), "shared secret"),
        (app_document(url, token_endpoint_auth_method="client_secret_post"), "shared secret"),
        (app_document(url, token_endpoint_auth_method="private_key_jwt"), "jwks"),
        (app_document(url, token_endpoint_auth_method="magic"), "token_endpoint_auth_method"),
        (app_document(url, grant_types=["client_credentials"]), "authenticates"),
        (
            app_document(url, jwks={"keys": [{**JWK, "d": "private"}]}, token_endpoint_auth_method="private_key_jwt"),
            "public keys",
        ),
        (app_document(url, client_name="x" * 5000), "longer than"),
        (app_document(url, redirect_uris=[f"https://notes.example/cb{i}" for i in range(50)]), "at most"),
        ([app_document(url)], "not a JSON object"),
        ("just a string", "not a JSON object"),
    ]


@pytest.mark.parametrize("case", range(len(_bad_documents("https://x/clients/app.json"))))
async def test_invalid_documents_refused(resolver: CIMDResolver, host: DocumentHost, case: int) -> None:
    url = host.base + "/clients/app.json"
    document, reason = _bad_documents(url)[case]
    host.publish("/clients/app.json", document)
    with pytest.raises(InvalidClient, match=reason) as caught:
        await resolver.resolve(url)
    assert caught.value.description.startswith("the client metadata document is not valid")
    assert "s3cret" not in caught.value.description


async def test_fetch_failures_are_invalid_client(resolver: CIMDResolver, host: DocumentHost) -> None:
    with pytest.raises(InvalidClient, match=r"could not be fetched.*HTTP 404"):
        await resolver.resolve(host.base + "/clients/missing.json")


async def test_loopback_document_refused_by_a_production_fetcher(
    tls: TLSFiles, store: SQLiteStore, host: DocumentHost
) -> None:
    url = host.base + "/clients/app.json"
    host.publish("/clients/app.json", app_document(url))
    production = CIMDResolver(SafeFetcher(verify=tls.context), store)
    with pytest.raises(InvalidClient, match=r"could not be fetched.*loopback") as caught:
        await production.resolve(url)
    assert host.requests["/clients/app.json"] == 0
    # The address it resolves to is for the logs: the client is told only that it failed.
    assert caught.value.description == "the client metadata document could not be fetched"
    with pytest.raises(InvalidClient, match="loopback") as remembered:
        await production.resolve(url)
    assert remembered.value.description == caught.value.description


# -- caching ---------------------------------------------------------------------------------------


async def test_cache_honours_max_age(resolver: CIMDResolver, host: DocumentHost, clock: FakeClock) -> None:
    url = host.base + "/clients/app.json"
    host.publish("/clients/app.json", app_document(url), {"Cache-Control": "public, max-age=600"})
    assert (await resolver.resolve(url)).client_name == "Notes App"
    host.publish("/clients/app.json", app_document(url, client_name="Renamed"), {"Cache-Control": "max-age=600"})
    clock.now += 599
    assert (await resolver.resolve(url)).client_name == "Notes App"
    assert host.requests["/clients/app.json"] == 1
    clock.now += 2
    assert (await resolver.resolve(url)).client_name == "Renamed"
    assert host.requests["/clients/app.json"] == 2


@pytest.mark.parametrize(
    ("cache_control", "lifetime"),
    [
        (None, 3600),  # default_ttl
        ("max-age=10", 300),  # raised to min_ttl
        ("max-age=999999999", 86400),  # lowered to max_ttl
        ("no-store", 300),
        ("no-cache, max-age=5000", 300),
        ('max-age="1200"', 1200),
        ("max-age=junk", 3600),
    ],
)
async def test_cache_lifetime_is_bounded(
    resolver: CIMDResolver, host: DocumentHost, clock: FakeClock, cache_control: str | None, lifetime: int
) -> None:
    url = host.base + "/clients/app.json"
    headers = {} if cache_control is None else {"Cache-Control": cache_control}
    host.publish("/clients/app.json", app_document(url), headers)
    await resolver.resolve(url)
    clock.now += lifetime - 1
    await resolver.resolve(url)
    assert host.requests["/clients/app.json"] == 1
    clock.now += 2
    await resolver.resolve(url)
    assert host.requests["/clients/app.json"] == 2


async def test_cache_is_shared_through_the_store(
    tls: TLSFiles, tmp_path: Path, resolver: CIMDResolver, host: DocumentHost, clock: FakeClock
) -> None:
    url = host.base + "/clients/app.json"
    host.publish("/clients/app.json", app_document(url), {"Cache-Control": "max-age=900"})
    first = await resolver.resolve(url)
    await resolver.store.aclose()
    # Another worker (or a restart): a new store object on the same file, a new resolver.
    async with SQLiteStore(tmp_path / "auth.db", clock=clock) as reopened:
        other = CIMDResolver(SafeFetcher(allow_private=True, verify=tls.context), reopened, clock=clock)
        assert await other.resolve(url) == first
        assert host.requests["/clients/app.json"] == 1
        assert await reopened.get(CIMD_NAMESPACE, url) is not None


async def test_failures_are_remembered_briefly(resolver: CIMDResolver, host: DocumentHost, clock: FakeClock) -> None:
    url = host.base + "/clients/app.json"
    host.publish("/clients/app.json", app_document(url, client_name=None))
    with pytest.raises(InvalidClient, match="client_name"):
        await resolver.resolve(url)
    host.publish("/clients/app.json", app_document(url))
    with pytest.raises(InvalidClient, match="client_name"):
        await resolver.resolve(url)
    assert host.requests["/clients/app.json"] == 1
    clock.now += 61
    assert (await resolver.resolve(url)).client_name == "Notes App"
    assert host.requests["/clients/app.json"] == 2


async def test_concurrent_resolutions_make_one_fetch(resolver: CIMDResolver, host: DocumentHost) -> None:
    url = host.base + "/clients/app.json"
    host.publish("/clients/app.json", app_document(url))
    clients = await asyncio.gather(*(resolver.resolve(url) for _ in range(20)))
    assert {client.client_id for client in clients} == {url}
    assert host.requests["/clients/app.json"] == 1


async def test_concurrent_failures_make_one_fetch(resolver: CIMDResolver, host: DocumentHost) -> None:
    url = host.base + "/clients/gone.json"
    results = await asyncio.gather(*(resolver.resolve(url) for _ in range(10)), return_exceptions=True)
    assert all(isinstance(result, InvalidClient) for result in results)
    assert host.requests["/clients/gone.json"] == 1


async def test_resolver_plugs_into_the_registry(resolver: CIMDResolver, host: DocumentHost, store: SQLiteStore) -> None:
    from bastion.authserver._clients import ClientRegistry

    url = host.base + "/clients/app.json"
    host.publish("/clients/app.json", app_document(url))
    registry = ClientRegistry(store, metadata_documents=resolver)
    client = await registry.get(url)
    assert client is not None
    assert client.kind == "metadata_document"
