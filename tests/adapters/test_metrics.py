"""The spans of a sign-in through the OAuth proxy, read from OpenTelemetry's SDK in memory.

A real ``OAuthProxy`` on SQLite in front of a fake provider serves over uvicorn; the
browser's steps go through real HTTP.
"""

from __future__ import annotations

from pathlib import Path

import httpx2
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind

from support.fake_upstream import fake_upstream, proxy_of, signed_in
from support.telemetry import Recorded, key
from support.telemetry import recorded_fixture as recorded_fixture


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
