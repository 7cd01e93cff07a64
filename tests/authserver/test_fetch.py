"""SafeFetcher: https only, no internal addresses (every hop), bounded time and size, JSON only."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from bastion._core.errors import ConfigurationError
from bastion._core.http import FetchError
from bastion.authserver._fetch import SafeFetcher
from bastion.authserver._ssrf import check_address
from bastion.testing import serve

from support.tls import TLSFiles, self_signed, serve_https

DOCUMENT = {"client_id": "https://app.example/client.json", "client_name": "App"}


async def document(request: Request) -> Response:
    return JSONResponse(DOCUMENT, headers={"Cache-Control": "max-age=600"})


async def echo_host(request: Request) -> Response:
    return JSONResponse({"host": request.headers.get("host")}, media_type="application/vnd.example+json")


async def redirect(request: Request) -> Response:
    return RedirectResponse(request.query_params["to"], status_code=int(request.query_params.get("status", "302")))


async def chain(request: Request) -> Response:
    hops = int(request.path_params["hops"])
    if hops == 0:
        return JSONResponse(DOCUMENT)
    return RedirectResponse(f"/chain/{hops - 1}", status_code=307)


async def loop(request: Request) -> Response:
    return RedirectResponse("/loop")


async def big(request: Request) -> Response:
    return Response(json.dumps({"pad": "x" * 100_000}), media_type="application/json")


async def big_streamed(request: Request) -> Response:
    async def body() -> AsyncIterator[bytes]:
        yield b'{"pad": "'
        for _ in range(100):
            yield b"x" * 1000
        yield b'"}'

    return StreamingResponse(body(), media_type="application/json")


async def drip(request: Request) -> Response:
    async def body() -> AsyncIterator[bytes]:
        yield b"{"
        for _ in range(600):  # a byte every 50 ms for half a minute: far past any test's deadline
            await asyncio.sleep(0.05)
            yield b" "
        yield b"}"

    return StreamingResponse(body(), media_type="application/json")


async def text(request: Request) -> Response:
    return Response('{"client_id": "x"}', media_type="text/html")


async def no_content_type(request: Request) -> Response:
    return Response(b'{"a": 1}')


async def not_json(request: Request) -> Response:
    return Response(b"{not json", media_type="application/json")


async def gzipped(request: Request) -> Response:
    return Response(b"\x1f\x8b...", media_type="application/json", headers={"Content-Encoding": "gzip"})


async def status(request: Request) -> Response:
    return JSONResponse({"error": "nope"}, status_code=int(request.path_params["code"]))


APP = Starlette(
    routes=[
        Route("/doc.json", document),
        Route("/host", echo_host),
        Route("/redirect", redirect),
        Route("/chain/{hops:int}", chain),
        Route("/loop", loop),
        Route("/big", big),
        Route("/big-streamed", big_streamed),
        Route("/drip", drip),
        Route("/text", text),
        Route("/no-content-type", no_content_type),
        Route("/not-json", not_json),
        Route("/gzip", gzipped),
        Route("/status/{code:int}", status),
    ]
)


@pytest.fixture
def tls(tmp_path: Path) -> TLSFiles:
    return self_signed(tmp_path)


@pytest.fixture
def base(tls: TLSFiles) -> Iterator[str]:
    with serve_https(APP, tls) as url:
        yield url


@pytest.fixture
def fetcher(tls: TLSFiles) -> SafeFetcher:
    """A development fetcher: loopback allowed, the test CA trusted."""
    return SafeFetcher(allow_private=True, verify=tls.context, timeout=2.0)


@pytest.fixture
def strict(tls: TLSFiles) -> SafeFetcher:
    """A production policy that trusts exactly 127.0.0.1 (the test server), nothing else internal."""
    return SafeFetcher(verify=tls.context, timeout=2.0, trusted_networks=["127.0.0.1/32"])


# -- a good fetch ------------------------------------------------------------------------------


async def test_fetches_a_json_document_over_https(fetcher: SafeFetcher, base: str) -> None:
    fetched = await fetcher.get_json(base + "/doc.json")
    assert fetched.data == DOCUMENT
    assert fetched.status == 200
    assert fetched.cache_control == "max-age=600"
    assert fetched.url == base + "/doc.json"
    await fetcher.aclose()


async def test_keeps_host_name_for_tls_and_host_header(fetcher: SafeFetcher, base: str) -> None:
    # The connection goes to the resolved address, but the certificate is checked
    # against the name and the Host header carries it.
    port = base.rsplit(":", 1)[1]
    fetched = await fetcher.get_json(f"https://localhost:{port}/host")
    assert fetched.data == {"host": f"localhost:{port}"}


async def test_accepts_structured_json_media_types(fetcher: SafeFetcher, base: str) -> None:
    assert (await fetcher.get_json(base + "/host")).status == 200


async def test_follows_redirects_within_the_limit(fetcher: SafeFetcher, base: str) -> None:
    fetched = await fetcher.get_json(base + "/chain/3")
    assert fetched.data == DOCUMENT
    assert fetched.url == base + "/chain/0"


async def test_plain_http_to_loopback_only_in_development(tls: TLSFiles) -> None:
    with serve(APP) as url:
        fetched = await SafeFetcher(allow_private=True).get_json(url + "/doc.json")
        assert fetched.data == DOCUMENT
        with pytest.raises(FetchError, match="https"):
            await SafeFetcher(trusted_networks=["127.0.0.1/32"]).get_json(url + "/doc.json")
    with pytest.raises(FetchError, match="https"):
        await SafeFetcher(allow_private=True).get_json("http://example.com/client.json")


# -- refused targets ---------------------------------------------------------------------------


async def test_loopback_refused_outside_development(tls: TLSFiles, base: str) -> None:
    production = SafeFetcher(verify=tls.context, timeout=2.0)
    with pytest.raises(FetchError, match="loopback"):
        await production.get_json(base + "/doc.json")
    port = base.rsplit(":", 1)[1]
    # A name that resolves to loopback is refused after resolution.
    with pytest.raises(FetchError, match=r"refused to connect to localhost.*loopback"):
        await production.get_json(f"https://localhost:{port}/doc.json")


async def test_certificate_still_checked(base: str) -> None:
    with pytest.raises(FetchError, match=r"127\.0\.0\.1 failed: certificate not trusted"):
        await SafeFetcher(allow_private=True, timeout=2.0).get_json(base + "/doc.json")


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/client.json",
        "file:///etc/passwd",
        "http://example.com/client.json",
        "https:///client.json",
        "not a url",
    ],
)
async def test_non_https_urls_refused(strict: SafeFetcher, url: str) -> None:
    with pytest.raises(FetchError):
        await strict.get_json(url)


async def test_credentials_in_url_refused_and_not_echoed(fetcher: SafeFetcher, base: str) -> None:
    url = base.replace("https://", "https://user:hunter2@") + "/doc.json"
    with pytest.raises(FetchError, match="credentials") as caught:
        await fetcher.get_json(url)
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize(
    "target",
    [
        "https://169.254.169.254/latest/meta-data/",
        "https://10.0.0.1/client.json",
        "https://127.0.0.2:{port}/doc.json",
        "https://[::1]:{port}/doc.json",
        "https://[::ffff:127.0.0.1]:{port}/doc.json",
        "http://127.0.0.1:{port}/doc.json",
        "https://user:pw@127.0.0.1:{port}/doc.json",
    ],
)
async def test_redirect_hops_are_checked(strict: SafeFetcher, base: str, target: str) -> None:
    port = base.rsplit(":", 1)[1]
    with pytest.raises(FetchError):
        await strict.get_json(base + "/redirect?to=" + target.format(port=port))
    # The same server, reached directly, is fine: it is the hop that was refused.
    assert (await strict.get_json(base + "/doc.json")).data == DOCUMENT


async def test_redirect_loop_and_too_many_redirects(fetcher: SafeFetcher, base: str) -> None:
    with pytest.raises(FetchError, match="redirects"):
        await fetcher.get_json(base + "/loop")
    with pytest.raises(FetchError, match="more than 3 redirects"):
        await fetcher.get_json(base + "/chain/4")
    with pytest.raises(FetchError, match="redirects"):
        await SafeFetcher(allow_private=True, verify=fetcher._ssl_context, max_redirects=0).get_json(base + "/chain/1")


# -- bounded answers ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/big", "/big-streamed"])
async def test_oversized_body_refused(fetcher: SafeFetcher, base: str, path: str) -> None:
    with pytest.raises(FetchError, match="more than 65536 bytes"):
        await fetcher.get_json(base + path)


async def test_slow_drip_body_hits_the_deadline(tls: TLSFiles, base: str) -> None:
    quick = SafeFetcher(allow_private=True, verify=tls.context, timeout=0.5)
    with pytest.raises(FetchError, match="timed out"):
        await quick.get_json(base + "/drip")


async def test_server_that_never_answers_hits_the_deadline(tls: TLSFiles) -> None:
    # A listening socket nobody accepts on: TCP connects, the TLS handshake never finishes.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        quick = SafeFetcher(allow_private=True, verify=tls.context, timeout=0.5)
        with pytest.raises(FetchError, match=r"127\.0\.0\.1"):
            await quick.get_json(f"https://127.0.0.1:{port}/doc.json")


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/text", "not JSON"),
        ("/no-content-type", "not JSON"),
        ("/not-json", "not JSON"),
        ("/gzip", "encoded"),
        ("/status/404", "HTTP 404"),
        ("/status/500", "HTTP 500"),
        ("/redirect?to=&status=302", "without a Location"),
    ],
)
async def test_bad_answers_refused(fetcher: SafeFetcher, base: str, path: str, reason: str) -> None:
    with pytest.raises(FetchError, match=reason):
        await fetcher.get_json(base + path)


async def test_error_messages_name_the_host_but_not_the_query(fetcher: SafeFetcher, base: str) -> None:
    with pytest.raises(FetchError) as caught:
        await fetcher.get_json(base + "/status/404?token=s3cret-value")
    assert "127.0.0.1" in str(caught.value)
    assert "s3cret" not in str(caught.value)


async def test_unresolvable_host(strict: SafeFetcher) -> None:
    with pytest.raises(FetchError, match="could not be resolved"):
        await strict.get_json("https://no-such-host.invalid/client.json")


# -- the address policy ------------------------------------------------------------------------

REFUSED = [
    "0.0.0.0",
    "0.1.2.3",
    "10.0.0.1",
    "100.64.0.1",
    "100.127.255.254",
    "127.0.0.1",
    "127.255.255.255",
    "169.254.169.254",
    "172.16.0.1",
    "172.31.255.255",
    "192.0.2.1",
    "192.168.1.1",
    "198.18.0.1",
    "224.0.0.1",
    "239.255.255.250",
    "240.0.0.1",
    "255.255.255.255",
    "::",
    "::1",
    "::ffff:127.0.0.1",
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
    "::127.0.0.1",
    "::8.8.8.8",
    "64:ff9b::127.0.0.1",
    "64:ff9b::a00:1",
    "64:ff9b:1::808:808",
    "2002:7f00:1::1",
    "2002:a9fe:a9fe::1",
    "2001::1",
    "2001:db8::1",
    "fc00::1",
    "fd12:3456:789a::1",
    "fe80::1",
    "fe80::1%1",
    "fec0::1",
    "ff02::1",
    "ff05::1:3",
    "not-an-ip",
]
ALLOWED = [
    "1.1.1.1",
    "8.8.8.8",
    "93.184.216.34",
    "100.63.255.255",
    "100.128.0.1",
    "172.32.0.1",
    "2606:4700:4700::1111",
    "2a00:1450:4001:80b::200e",
    "::ffff:8.8.8.8",
    "64:ff9b::808:808",
    "2002:808:808::1",
]


@pytest.mark.parametrize("address", REFUSED)
def test_check_address_refuses(address: str) -> None:
    with pytest.raises(FetchError):
        check_address(address)


@pytest.mark.parametrize("address", ALLOWED)
def test_check_address_allows_public_unicast(address: str) -> None:
    check_address(address)


def test_bad_settings_refused() -> None:
    with pytest.raises(ConfigurationError, match="timeout"):
        SafeFetcher(timeout=0)
    with pytest.raises(ConfigurationError, match="max_bytes"):
        SafeFetcher(max_bytes=0)


async def test_redirect_to_another_origin(fetcher: SafeFetcher, base: str) -> None:
    port = base.rsplit(":", 1)[1]
    fetched = await fetcher.get_json(f"{base}/redirect?to=https://localhost:{port}/chain/1&status=308")
    assert fetched.url == f"https://localhost:{port}/chain/0"
    assert fetched.data == DOCUMENT
