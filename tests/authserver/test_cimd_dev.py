"""Development origins: client metadata documents from named loopback https origins, and nothing more.

The document server is a real uvicorn over https on 127.0.0.1 with a certificate from a
CA made in the test; the authorization server and the SDK's own OAuth client are real.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from bastion import AuthorizationServer
from bastion._cli.demo import DEMO_SCOPES, DEMO_USERS, notes_server
from bastion._core.errors import ConfigurationError
from bastion._core.http import FetchError
from bastion.authserver import InvalidClient, Registration, SafeFetcher
from bastion.authserver._cimd import CIMDResolver
from bastion.storage import MemoryStore
from bastion.testing import MemoryTokenStorage, oauth_client, serve
from bastion.testing._oauth import HEADLESS_REDIRECT_URI

from support.authserver import check_user
from support.tls import TLSFiles, self_signed, serve_https

PATH = "/client-metadata.json"


async def document(request: Request) -> Response:
    """A client's metadata document, naming itself by the URL it was fetched from."""
    return JSONResponse(
        {
            "client_id": str(request.url),
            "client_name": "Local Development Client",
            "redirect_uris": [HEADLESS_REDIRECT_URI],
            "grant_types": ["authorization_code", "refresh_token"],
            "token_endpoint_auth_method": "none",
        },
        headers={"Cache-Control": "max-age=600"},
    )


async def misnamed(request: Request) -> Response:
    return JSONResponse({"client_id": "https://localhost/elsewhere.json", "client_name": "x", "redirect_uris": []})


async def redirect(request: Request) -> Response:
    return RedirectResponse(request.query_params["to"], status_code=302)


APP = Starlette(
    routes=[Route(PATH, document), Route("/misnamed.json", misnamed), Route("/redirect", redirect)],
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def localhost(base: str) -> str:
    """``https://localhost:PORT`` for a server served at ``https://127.0.0.1:PORT``."""
    return "https://localhost:" + base.rsplit(":", 1)[1]


@pytest.fixture
def tls(tmp_path: Path) -> TLSFiles:
    return self_signed(tmp_path)


@pytest.fixture
def docs(tls: TLSFiles) -> Iterator[str]:
    """The document server's origin, ``https://localhost:PORT``."""
    with serve_https(APP, tls) as base:
        yield localhost(base)


def dev_fetcher(tls: TLSFiles, *origins: str) -> SafeFetcher:
    return SafeFetcher(development_origins=origins, development_ca_file=tls.ca, timeout=3.0)


# -- what the option accepts ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "origin",
    [
        "https://localhost:3000",
        "https://127.0.0.1:8443",
        "https://[::1]:3000",
        "https://LOCALHOST",
        "https://127.0.0.1/",
    ],
)
def test_accepts_https_loopback_origins(tls: TLSFiles, origin: str) -> None:
    registration = Registration(development_metadata_origins=[origin], development_ca_file=str(tls.ca))
    assert registration.development_metadata_origins == (origin,)
    assert SafeFetcher(development_origins=[origin], development_ca_file=tls.ca).development is not None


@pytest.mark.parametrize(
    ("origin", "reason"),
    [
        ("http://localhost:3000", "must use https"),
        ("https://example.com:3000", "must be a loopback host"),
        ("https://127.evil.example:3000", "must be a loopback host"),
        ("https://10.0.0.1:3000", "must be a loopback host"),
        ("https://localhost:3000/client-metadata.json", "only scheme, host and port"),
        ("https://localhost:3000?x=1", "only scheme, host and port"),
        ("https://localhost:3000#top", "only scheme, host and port"),
        ("https://user@localhost:3000", "only scheme, host and port"),
        ("https://localhost:99999", "not a valid URL"),
        ("https://localhost:0", "port 0"),
        ("localhost:3000", "must use https"),
    ],
)
def test_refuses_what_is_not_an_https_loopback_origin(tls: TLSFiles, origin: str, reason: str) -> None:
    with pytest.raises(ConfigurationError, match=reason):
        Registration(development_metadata_origins=[origin], development_ca_file=tls.ca)


def test_refuses_a_missing_or_empty_ca_file(tls: TLSFiles, tmp_path: Path) -> None:
    origins = ["https://localhost:3000"]
    with pytest.raises(ConfigurationError, match="is not a file"):
        Registration(development_metadata_origins=origins, development_ca_file=tmp_path / "missing.pem")
    with pytest.raises(ConfigurationError, match="is not a file"):
        Registration(development_metadata_origins=origins, development_ca_file=tmp_path)
    (tmp_path / "notes.txt").write_text("not a certificate\n")
    with pytest.raises(ConfigurationError, match="holds no PEM certificate"):
        Registration(development_metadata_origins=origins, development_ca_file=tmp_path / "notes.txt")
    with pytest.raises(ConfigurationError, match="holds no PEM certificate"):  # a private key is no CA
        Registration(development_metadata_origins=origins, development_ca_file=tls.key)


def test_needs_both_halves_and_no_fetcher_beside_them(tls: TLSFiles) -> None:
    with pytest.raises(ConfigurationError, match="need the CA file"):
        Registration(development_metadata_origins=["https://localhost:3000"])
    with pytest.raises(ConfigurationError, match="needs at least one development metadata origin"):
        Registration(development_ca_file=tls.ca)
    with pytest.raises(ConfigurationError, match="give the development origins to the SafeFetcher"):
        Registration(
            development_metadata_origins=["https://localhost:3000"], development_ca_file=tls.ca, fetcher=SafeFetcher()
        )
    with pytest.raises(TypeError, match="list of origins"):
        Registration(development_metadata_origins="https://localhost:3000", development_ca_file=tls.ca)


def test_refused_unless_the_issuer_is_loopback(tls: TLSFiles, caplog: pytest.LogCaptureFixture) -> None:
    registration = Registration(development_metadata_origins=["https://localhost:3000"], development_ca_file=tls.ca)
    for issuer in ("https://auth.example.com", "http://127.evil.example:8000"):
        with pytest.raises(ConfigurationError, match="loopback"):
            AuthorizationServer(issuer, store=MemoryStore(), registration=registration)
    # Given through a SafeFetcher of one's own, the same.
    fetcher = dev_fetcher(tls, "https://localhost:3000")
    with pytest.raises(ConfigurationError, match="loopback"):
        AuthorizationServer("https://auth.example.com", store=MemoryStore(), registration=Registration(fetcher=fetcher))
    # An issuer adopted later (from the MCP server's URL) is checked when adopted.
    later = AuthorizationServer(store=MemoryStore(), registration=registration)
    with pytest.raises(ConfigurationError, match="loopback"):
        later.set_issuer("https://notes.example.com")
    assert later.issuer is None
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="bastion"):
        AuthorizationServer("http://127.0.0.1:8000", store=MemoryStore(), registration=registration)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "DEVELOPMENT ONLY: client metadata documents are fetched from the loopback origins https://localhost:3000, "
        f"their certificates checked against {tls.ca}; never enable this on a server others use"
    ]


def test_a_server_without_the_option_warns_of_nothing(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="bastion"):
        server = AuthorizationServer("http://127.0.0.1:8000", store=MemoryStore())
    assert server.fetcher.development is None
    assert not caplog.records


# -- what the fetch does --------------------------------------------------------------------------


async def test_a_named_origin_is_fetched_with_the_usual_checks(tls: TLSFiles, docs: str) -> None:
    fetched = await dev_fetcher(tls, docs).get_json(docs + PATH)
    assert fetched.data["client_id"] == docs + PATH
    assert fetched.cache_control == "max-age=600"
    # A redirect within the origin is followed.
    within = await dev_fetcher(tls, docs).get_json(f"{docs}/redirect?to={PATH}")
    assert within.url == docs + PATH


async def test_a_loopback_url_not_named_is_refused_as_before(tls: TLSFiles, docs: str) -> None:
    fetcher = dev_fetcher(tls, docs)
    port = int(docs.rsplit(":", 1)[1])
    # The same server by another name is another origin: the guard refuses the loopback address.
    with pytest.raises(FetchError, match=r"127\.0\.0\.1 is a loopback address"):
        await fetcher.get_json(f"https://127.0.0.1:{port}{PATH}")
    with pytest.raises(FetchError, match=r"refused to connect to localhost: it resolves to a loopback address"):
        await fetcher.get_json(f"https://localhost:{free_port()}{PATH}")
    with pytest.raises(FetchError, match="must use https"):
        await fetcher.get_json(f"http://localhost:{port}{PATH}")
    with pytest.raises(FetchError, match="credentials"):
        await fetcher.get_json(f"https://user@localhost:{port}{PATH}")


async def test_a_certificate_from_another_ca_is_refused(tls: TLSFiles, tmp_path: Path) -> None:
    (tmp_path / "other").mkdir()
    other = self_signed(tmp_path / "other")  # a CA the fetcher was not told about
    with serve_https(APP, other) as base:
        origin = localhost(base)
        with pytest.raises(FetchError, match="certificate not trusted"):
            await dev_fetcher(tls, origin).get_json(origin + PATH)
        # Only the development CA counts for these origins, whatever the fetcher trusts elsewhere.
        trusting_other = SafeFetcher(
            verify=other.context, development_origins=[origin], development_ca_file=tls.ca, timeout=3.0
        )
        with pytest.raises(FetchError, match="certificate not trusted"):
            await trusting_other.get_json(origin + PATH)


async def test_a_redirect_out_of_the_origin_is_refused(tls: TLSFiles, docs: str) -> None:
    with serve_https(APP, tls) as second:
        other = localhost(second)
        fetcher = dev_fetcher(tls, docs, other)  # even to another named origin
        for target in (
            other + PATH,
            "https://example.com/client.json",
            f"http://{docs.removeprefix('https://')}{PATH}",
        ):
            with pytest.raises(FetchError, match="redirected out of the development origin"):
                await fetcher.get_json(f"{docs}/redirect?to={target}")
        assert (await fetcher.get_json(other + PATH)).status == 200  # fetched from directly, it is fine


async def test_the_document_must_still_name_its_url(tls: TLSFiles, docs: str) -> None:
    resolver = CIMDResolver(dev_fetcher(tls, docs), MemoryStore())
    with pytest.raises(InvalidClient, match="not exactly the URL"):
        await resolver.resolve(docs + "/misnamed.json")
    client = await resolver.resolve(docs + PATH)
    assert client.client_id == docs + PATH
    assert client.token_endpoint_auth_method == "none"


# -- the whole flow, with the SDK's own OAuth client ---------------------------------------------


async def test_the_sdk_client_signs_in_with_a_local_metadata_document(
    tls: TLSFiles, docs: str, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    registration = Registration(development_metadata_origins=[docs], development_ca_file=tls.ca)
    auth = AuthorizationServer(
        base,
        store=MemoryStore(),
        users=check_user,
        scopes=DEMO_SCOPES,
        auto_approve=DEMO_USERS["alice"],
        registration=registration,
    )
    mcp = notes_server(auth, resource_url=base + "/mcp")
    client_id = docs + PATH
    storage = MemoryTokenStorage()
    with serve(mcp.streamable_http_app(), port=port):
        url = base + "/mcp"
        provider = oauth_client(url, client_metadata_url=client_id, storage=storage)
        async with (
            httpx2.AsyncClient(auth=provider) as http,
            Client(streamable_http_client(url, http_client=http)) as client,
        ):
            me = (await client.call_tool("whoami", {})).structured_content
            assert me is not None
            assert me["client_id"] == client_id
            assert me["subject"] == "alice"
        assert storage.client_info is not None
        assert storage.client_info.client_id == client_id  # no registration: the URL is the client id
        # A loopback document the option does not name is refused the usual way; the reason is logged.
        unnamed = f"https://127.0.0.1:{docs.rsplit(':', 1)[1]}{PATH}"
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="bastion"), pytest.raises(InvalidClient) as refused:
            await auth.cimd.resolve(unnamed)
        assert refused.value.description == "the client metadata document could not be fetched"
        assert [r.getMessage() for r in caplog.records] == [
            f"client {unnamed} refused: the client metadata document could not be fetched: "
            "127.0.0.1 is a loopback address"
        ]


async def test_refusals_are_logged_only_with_development_origins(caplog: pytest.LogCaptureFixture) -> None:
    server = AuthorizationServer("http://127.0.0.1:8000", store=MemoryStore())
    with caplog.at_level(logging.WARNING, logger="bastion"), pytest.raises(InvalidClient):
        await server.cimd.resolve("https://127.0.0.1:3000/client-metadata.json")
    assert not caplog.records  # anyone may send any URL: a production log is not theirs to fill
