"""Metrics and trace spans through OpenTelemetry's API, recorded once :func:`instrument` is called.

Until then :data:`active` is ``None`` and every instrumented place costs one module
attribute load and a ``None`` check: nothing of OpenTelemetry's metrics API is even
imported. Once instrumented, the instruments below record to the meter provider given
(or OpenTelemetry's global one), and spans go to the tracer provider given (or the
global one); an SDK configured by the application decides where they are exported.

What is measured (docs/operations.md, "Metrics, traces and health", names each
instrument, its unit and attributes):

- every audit event, by name and outcome; tokens issued by grant; refresh outcomes
  (fed by :meth:`Telemetry.count_event`, which every :class:`~bastion._core.audit.Audit`
  calls when instrumented);
- verifications of tokens not seen before (a cache hit is never measured), with a span;
- fetches of remote JSON documents (key sets, discovery documents), with a span;
- store operations (``bastion.storage`` wraps the authorization server's store);
- the OAuth proxy's calls to its upstream provider, with a span;
- every request to an authorization server endpoint, with a span as parent of the
  others, so a slow sign-in can be followed through the upstream provider.

No attribute carries a token, a secret, a user or a client id: only bounded sets of
values (event names, grant types, class names, routes, status codes).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from bastion._core.errors import AuthenticationError, AuthorizationError, ConfigurationError, KeysUnavailable

if TYPE_CHECKING:
    from opentelemetry.metrics import Histogram, Meter, MeterProvider
    from opentelemetry.trace import Tracer, TracerProvider
    from starlette.types import Message, Receive, Scope, Send

    from bastion._core.audit import AuditEvent
    from bastion._core.prometheus import PrometheusExposition

__all__ = ["SCOPE", "Telemetry", "active", "instrument", "uninstrument"]

#: The instrumentation scope of every meter and tracer bastion uses.
SCOPE = "bastion"

#: The bucket boundaries (seconds) of every duration histogram: from a cached-key signature check
#: (well under a millisecond) to an upstream provider at its timeout.
DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

#: The ``refresh.*`` audit events and the outcome each counts as in ``bastion.refreshes``.
_REFRESH_EVENTS = {
    "refresh.rotated": "rotated",
    "refresh.replayed": "replayed",
    "refresh.reuse_detected": "reuse_detected",
}

_T = TypeVar("_T")
_App = Callable[["Scope", "Receive", "Send"], Awaitable[None]]

#: The instruments in use, or ``None`` when bastion is not instrumented (the default).
active: Telemetry | None = None


class Telemetry:
    """bastion's instruments on one meter and one tracer; see the module's documentation.

    Made by :func:`instrument`; the instrumented places reach it through :data:`active`.
    """

    def __init__(self, meter: Meter, tracer: Tracer, *, exposition: PrometheusExposition | None = None) -> None:
        from opentelemetry.trace import SpanKind, StatusCode

        self.meter = meter
        self.tracer = tracer
        #: The Prometheus registry bastion serves (``instrument(prometheus=True)``), else ``None``.
        self.exposition = exposition
        self._server = SpanKind.SERVER
        self._client = SpanKind.CLIENT
        self._error = StatusCode.ERROR

        def histogram(name: str, description: str) -> Histogram:
            return meter.create_histogram(
                name, unit="s", description=description, explicit_bucket_boundaries_advisory=list(DURATION_BUCKETS)
            )

        self.decisions = meter.create_counter(
            "bastion.decisions", unit="{decision}", description="Security decisions (audit events) by name and outcome"
        )
        self.tokens_issued = meter.create_counter(
            "bastion.tokens.issued", unit="{token}", description="Access tokens issued, by grant type"
        )
        self.refreshes = meter.create_counter(
            "bastion.refreshes", unit="{refresh}", description="Refresh token requests, by outcome"
        )
        self.verification_duration = histogram(
            "bastion.verification.duration", "Verifications of tokens not seen before, by verifier and outcome"
        )
        self.fetch_duration = histogram(
            "bastion.fetch.duration", "Fetches of key sets and metadata documents, by document and outcome"
        )
        self.store_duration = histogram("bastion.store.duration", "Store operations, by store, operation and outcome")
        self.upstream_duration = histogram(
            "bastion.upstream.duration", "Calls to the upstream identity provider, by provider, operation and outcome"
        )
        self.request_duration = histogram(
            "bastion.authserver.request.duration", "Requests to the authorization server's endpoints"
        )

    # -- audit events ------------------------------------------------------------------------

    def count_event(self, event: AuditEvent) -> None:
        """Count one audit event (the metrics sink every ``Audit`` feeds when instrumented)."""
        name = event.name
        self.decisions.add(1, {"decision": name, "outcome": event.outcome})
        if name == "token.issued":
            self.tokens_issued.add(1, {"grant_type": str(event.facts.get("grant_type", "unknown"))})
        elif name in _REFRESH_EVENTS:
            self.refreshes.add(1, {"outcome": _REFRESH_EVENTS[name]})
        elif name == "token.refused" and event.facts.get("grant_type") == "refresh_token":
            self.refreshes.add(1, {"outcome": "refused"})

    # -- verification --------------------------------------------------------------------------

    async def verification(self, verifier: str, check: Callable[[str], Awaitable[_T]], token: str) -> _T:
        """``await check(token)`` timed, in a span: a verification of a token not seen before."""
        outcome = "error"
        with self.tracer.start_as_current_span(
            "verify token",
            attributes={"bastion.verifier": verifier},
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            start = time.perf_counter()
            try:
                result = await check(token)
                outcome = "valid"
                return result
            except AuthenticationError:
                outcome = "invalid"
                raise
            except AuthorizationError:
                outcome = "insufficient"
                raise
            except KeysUnavailable:
                outcome = "unavailable"
                raise
            finally:
                self.verification_duration.record(
                    time.perf_counter() - start, {"verifier": verifier, "outcome": outcome}
                )
                span.set_attribute("bastion.outcome", outcome)
                if outcome in ("unavailable", "error"):
                    span.set_status(self._error)

    # -- remote documents ------------------------------------------------------------------------

    async def fetch(self, document: str, url: str, attempt: Callable[[], Awaitable[bool]]) -> None:
        """``await attempt()`` (``True`` when the document was had) timed, in a client span."""
        ok = False
        with self.tracer.start_as_current_span(
            f"fetch {document}",
            kind=self._client,
            attributes={"bastion.document": document, "url.full": url},
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            start = time.perf_counter()
            try:
                ok = await attempt()
            finally:
                outcome = "ok" if ok else "error"
                self.fetch_duration.record(time.perf_counter() - start, {"document": document, "outcome": outcome})
                span.set_attribute("bastion.outcome", outcome)
                if not ok:
                    span.set_status(self._error)

    # -- upstream provider -----------------------------------------------------------------------

    async def upstream(self, provider: str, operation: str, call: Callable[[], Awaitable[_T]]) -> _T:
        """``await call()`` to the upstream provider, timed, in a client span."""
        outcome = "error"
        attributes = {"bastion.provider": provider, "bastion.operation": operation}
        with self.tracer.start_as_current_span(
            f"upstream {operation}",
            kind=self._client,
            attributes=attributes,
            record_exception=False,  # an exception's text is no span's business: it may name anything
            set_status_on_exception=False,
        ) as span:
            start = time.perf_counter()
            try:
                result = await call()
                outcome = "ok"
                return result
            finally:
                self.upstream_duration.record(
                    time.perf_counter() - start, {"provider": provider, "operation": operation, "outcome": outcome}
                )
                span.set_attribute("bastion.outcome", outcome)
                if outcome == "error":
                    span.set_status(self._error)

    # -- store -------------------------------------------------------------------------------------

    def store_operation(self, store: str, operation: str, seconds: float, ok: bool) -> None:
        """Record one store operation's duration."""
        self.store_duration.record(
            seconds, {"store": store, "operation": operation, "outcome": "ok" if ok else "error"}
        )

    # -- the authorization server's endpoints ------------------------------------------------------

    async def serve(self, scope: Scope, receive: Receive, send: Send, app: _App, route: str) -> None:
        """Serve one request to the endpoint at ``route`` in a server span, timed with its status."""
        method: str = scope.get("method", "GET")
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        with self.tracer.start_as_current_span(
            f"{method} {route}",
            kind=self._server,
            attributes={"http.request.method": method, "http.route": route},
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            start = time.perf_counter()
            try:
                await app(scope, receive, send_status)
            finally:
                attributes: Mapping[str, str | int] = {
                    "http.route": route,
                    "http.request.method": method,
                    "http.response.status_code": status,
                }
                self.request_duration.record(time.perf_counter() - start, attributes)
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_status(self._error)


def _import_api() -> tuple[Any, Any]:
    try:
        from opentelemetry import metrics, trace
    except ImportError:
        raise ConfigurationError(
            'metrics and traces need OpenTelemetry\'s API: pip install "mcp-bastion[otel]"'
        ) from None
    return metrics, trace


def instrument(
    *,
    meter_provider: MeterProvider | None = None,
    tracer_provider: TracerProvider | None = None,
    prometheus: bool = False,
) -> Telemetry:
    """Record bastion's metrics and spans from now on.

    Call it at start-up, before the servers are built: an
    :class:`~bastion.AuthorizationServer` built afterwards has its store timed too.

    Args:
        meter_provider: Where the metrics go. Default: OpenTelemetry's global provider
            (as set by ``opentelemetry.metrics.set_meter_provider``, even later).
        tracer_provider: Where the spans go. Default: OpenTelemetry's global provider.
        prometheus: Send the metrics to a Prometheus registry of bastion's own instead,
            which ``MCPServer.serve_metrics()`` serves (needs ``mcp-bastion[prometheus]``).

    Raises:
        ConfigurationError: OpenTelemetry's API (or, for ``prometheus``, its SDK and
            Prometheus exporter) is not installed, or both ``meter_provider`` and
            ``prometheus`` are given.
    """
    global active
    metrics, trace = _import_api()
    exposition = None
    if prometheus:
        if meter_provider is not None:
            raise ConfigurationError("give meter_provider or prometheus=True, not both")
        from bastion._core.prometheus import PrometheusExposition

        exposition = PrometheusExposition()
        meter_provider = exposition.meter_provider
    meter = (meter_provider or metrics.get_meter_provider()).get_meter(SCOPE)
    tracer = (tracer_provider or trace.get_tracer_provider()).get_tracer(SCOPE)
    previous, active = active, Telemetry(meter, tracer, exposition=exposition)
    if previous is not None and previous.exposition is not None:
        previous.exposition.shutdown()
    return active


def uninstrument() -> None:
    """Stop recording metrics and spans (the instrumented places go back to a ``None`` check)."""
    global active
    previous, active = active, None
    if previous is not None and previous.exposition is not None:
        previous.exposition.shutdown()
