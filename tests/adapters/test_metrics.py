"""The metrics scraped from a served MCP server after a known sequence of requests, and the spans of a sign-in.

A real ``MCPServer`` with its ``AuthorizationServer`` on SQLite serves over uvicorn; the
requests go through real HTTP; the Prometheus endpoint is scraped over HTTP and its text
parsed by ``prometheus_client``'s own parser. The spans of a sign-in through the OAuth
proxy are read from OpenTelemetry's SDK in memory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx2
import pytest
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

import bastion
from bastion import ConfigurationError, MCPServer
from bastion.testing import serve

from support.authserver import CONFIDENTIAL_SECRET, REDIRECT, basic_auth, make_server, pkce_pair
from support.fake_upstream import fake_upstream, proxy_of, signed_in
from support.notes import MCP_HEADERS, rpc
from support.proxy import free_port
from support.telemetry import Recorded, key
from support.telemetry import recorded_fixture as recorded_fixture

Series = dict[frozenset[tuple[str, str]], float]


def scraped(text: str) -> dict[str, Series]:
    """Every sample of a Prometheus text exposition: sample name -> labels -> value."""
    samples: dict[str, Series] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[frozenset(sample.labels.items())] = sample.value
    return samples


def request(route: str, method: str, status: int) -> frozenset[tuple[str, str]]:
    return frozenset(
        {"http_route": route, "http_request_method": method, "http_response_status_code": str(status)}.items()
    )


def notes(auth: bastion.AuthorizationServer, base: str) -> MCPServer:
    mcp = MCPServer("Notes", auth=auth, resource_url=base + "/mcp")

    @mcp.tool()
    def whoami() -> str:
        return bastion.get_access_token().subject or ""

    return mcp


@pytest.fixture
def prometheus() -> Any:
    """bastion's own Prometheus registry, turned on before the servers are built (so the store is timed)."""
    bastion.instrument(prometheus=True)
    yield
    bastion.uninstrument()


async def authorization_code_tokens(http: httpx2.AsyncClient, base: str) -> dict[str, Any]:
    """The public client's tokens through /authorize (approved without pages) and /token."""
    verifier, challenge = pkce_pair()
    query = {
        "response_type": "code",
        "client_id": "public-client",
        "redirect_uri": REDIRECT,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "scope": "notes:read offline_access",
        "resource": base + "/mcp",
        "state": "s",
    }
    authorized = await http.get(base + "/authorize?" + urlencode(query))
    assert authorized.status_code == 302, authorized.text
    code = parse_qs(urlsplit(authorized.headers["location"]).query)["code"][0]
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "code_verifier": verifier,
        "redirect_uri": REDIRECT,
        "client_id": "public-client",
        "resource": base + "/mcp",
    }
    response = await http.post(base + "/token", data=form)
    assert response.status_code == 200, response.text
    tokens: dict[str, Any] = response.json()
    return tokens


async def call_mcp(http: httpx2.AsyncClient, base: str, token: str) -> httpx2.Response:
    """``tools/list`` at the MCP endpoint with ``token``."""
    headers = {**MCP_HEADERS, "Authorization": f"Bearer {token}"}
    return await http.post(base + "/mcp", json=rpc("tools/list"), headers=headers)


@pytest.mark.usefixtures("prometheus")
async def test_the_scrape_counts_every_endpoint_request_and_each_token_verified_once(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    auth = make_server(tmp_path, issuer=base, auto_approve="alice")
    mcp = notes(auth, base)
    mcp.serve_metrics()
    with serve(mcp.streamable_http_app(stateless_http=True, json_response=True), port=port):
        async with httpx2.AsyncClient() as http:
            assert (await http.get(base + "/.well-known/oauth-authorization-server")).status_code == 200
            tokens = await authorization_code_tokens(http, base)
            assert (await call_mcp(http, base, tokens["access_token"])).status_code == 200
            assert (await call_mcp(http, base, "not-a-token")).status_code == 401
            refreshed = await http.post(
                base + "/token",
                data={
                    "grant_type": "refresh_token",
                    "refresh_token": tokens["refresh_token"],
                    "client_id": "public-client",
                },
            )
            assert refreshed.status_code == 200
            assert (await call_mcp(http, base, refreshed.json()["access_token"])).status_code == 200
            machine = await http.post(
                base + "/token",
                data={"grant_type": "client_credentials", "scope": "notes:read", "resource": base + "/mcp"},
                headers=basic_auth("confidential-client", CONFIDENTIAL_SECRET),
            )
            assert machine.status_code == 200
            assert (await call_mcp(http, base, machine.json()["access_token"])).status_code == 200
            unknown_code = {"grant_type": "authorization_code", "code": "nope", "client_id": "public-client"}
            wrong = await http.post(base + "/token", data=unknown_code)
            assert wrong.status_code == 400
            scrape = await http.get(base + "/metrics")
    assert scrape.status_code == 200
    assert scrape.headers["content-type"].startswith("text/plain")
    samples = scraped(scrape.text)

    # One series per endpoint, method and status; the MCP endpoint and /metrics are not the AS's.
    assert samples["bastion_authserver_request_duration_seconds_count"] == {
        request("/.well-known/oauth-authorization-server", "GET", 200): 1,
        request("/authorize", "GET", 302): 1,
        request("/token", "POST", 200): 3,
        request("/token", "POST", 400): 1,
    }
    # Each token was checked on its first use (a later use is a cache hit, never measured: tests/core).
    assert samples["bastion_verification_duration_seconds_count"] == {
        frozenset({"verifier": "AuthServerVerifier", "outcome": "valid"}.items()): 3,
        frozenset({"verifier": "AuthServerVerifier", "outcome": "invalid"}.items()): 1,
    }
    # The decisions the server made, counted from its audit events.
    assert samples["bastion_tokens_issued_total"] == {
        frozenset({"grant_type": "authorization_code"}.items()): 1,
        frozenset({"grant_type": "refresh_token"}.items()): 1,
        frozenset({"grant_type": "client_credentials"}.items()): 1,
    }
    assert samples["bastion_refreshes_total"] == {frozenset({"outcome": "rotated"}.items()): 1}
    # The store was timed operation by operation, and none failed.
    store = samples["bastion_store_duration_seconds_count"]
    operations = {dict(labels)["operation"] for labels in store}
    assert {"get", "put", "add", "swap"} <= operations
    assert {dict(labels)["store"] for labels in store} == {"SQLiteStore"}
    assert {dict(labels)["outcome"] for labels in store} == {"ok"}
    # No token, code or client secret is ever a label or a value.
    for secret in (tokens["access_token"], tokens["refresh_token"], CONFIDENTIAL_SECRET):
        assert secret not in scrape.text


async def test_a_sign_in_through_the_proxy_is_one_span_per_request_with_the_upstream_calls_inside(
    tmp_path: Path, recorded: Recorded
) -> None:
    with fake_upstream() as fake, proxy_of(fake, tmp_path / "proxy.db") as (proxy, base):
        async with httpx2.AsyncClient() as http:
            await signed_in(http, fake, base)

    servers = [span for span in recorded.spans() if span.kind == SpanKind.SERVER]
    assert [(span.name, attribute(span, "http.response.status_code")) for span in servers] == [
        ("GET /authorize", 200),  # the proxy's consent page
        ("POST /auth/continue", 303),  # approved: off to the provider
        ("GET /auth/callback", 302),  # back from the provider: the code exchanged, the user known
        ("POST /token", 200),
    ]
    callback = servers[2]
    inside = [span for span in recorded.spans() if span.parent is not None and span.parent.span_id == span_id(callback)]
    assert [(span.name, span.kind) for span in inside] == [
        ("upstream code", SpanKind.CLIENT),
        ("upstream identity", SpanKind.CLIENT),
    ]
    assert {trace_id(span) for span in inside} == {trace_id(callback)}
    # The id_token's signature needed the provider's key set: fetched inside the identity step.
    [jwks] = recorded.spans("fetch JWKS")
    assert jwks.parent is not None
    assert jwks.parent.span_id == span_id(inside[1])

    provider = proxy.upstream.name
    assert recorded.series("bastion.upstream.duration") == {
        key({"provider": provider, "operation": "code", "outcome": "ok"}): 1,
        key({"provider": provider, "operation": "identity", "outcome": "ok"}): 1,
    }


def attribute(span: ReadableSpan, name: str) -> object:
    return (span.attributes or {}).get(name)


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return int(span.context.span_id)


def trace_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return int(span.context.trace_id)


async def test_an_application_registry_is_served_as_it_is(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    provider = MeterProvider(metric_readers=[PrometheusMetricReader(registry=registry)])
    bastion.instrument(meter_provider=provider)
    try:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        mcp = notes(make_server(tmp_path, issuer=base), base)
        with pytest.raises(ConfigurationError, match="registry="):
            mcp.serve_metrics()  # bastion records to this provider: its own registry would stay empty
        mcp.serve_metrics("/internal/metrics", registry=registry)
        with serve(mcp.streamable_http_app(stateless_http=True, json_response=True), port=port):
            async with httpx2.AsyncClient() as http:
                assert (await http.get(base + "/jwks")).status_code == 200
                scrape = await http.get(base + "/internal/metrics")
        # The application's reader adds the instrumentation scope (otel_scope_name="bastion") to each series.
        [(labels, count)] = scraped(scrape.text)["bastion_authserver_request_duration_seconds_count"].items()
        assert ("otel_scope_name", "bastion") in labels
        assert frozenset(label for label in labels if not label[0].startswith("otel_scope_")) == request(
            "/jwks", "GET", 200
        )
        assert count == 1
    finally:
        bastion.uninstrument()
        provider.shutdown()
