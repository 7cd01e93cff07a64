"""bastion's metrics as a Prometheus scrape: OpenTelemetry's SDK with its Prometheus exporter.

One instrumentation path: bastion records through OpenTelemetry's API only, and for
Prometheus an SDK ``MeterProvider`` with OpenTelemetry's ``PrometheusMetricReader``
turns those same instruments into the text exposition, read from a registry of
bastion's own (not ``prometheus_client``'s global one, so nothing else of the process
is exposed by accident). Needs ``pip install "mcp-bastion[prometheus]"``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bastion._core.errors import ConfigurationError

if TYPE_CHECKING:
    from opentelemetry.sdk.metrics import MeterProvider
    from prometheus_client import CollectorRegistry

__all__ = ["PrometheusExposition", "render"]

_MISSING = 'Prometheus metrics need OpenTelemetry\'s SDK and Prometheus exporter: pip install "mcp-bastion[prometheus]"'


class PrometheusExposition:
    """A meter provider whose metrics are read, at each scrape, from a registry of their own.

    Raises:
        ConfigurationError: the SDK or the exporter is not installed.
    """

    def __init__(self) -> None:
        try:
            from opentelemetry.exporter.prometheus import PrometheusMetricReader
            from opentelemetry.sdk.metrics import MeterProvider
            from prometheus_client import CollectorRegistry
        except ImportError:
            raise ConfigurationError(_MISSING) from None
        self.registry: CollectorRegistry = CollectorRegistry(auto_describe=True)
        # No target_info (SDK name and version) and no scope labels: only bastion's own series.
        reader = PrometheusMetricReader(disable_target_info=True, scope_info_enabled=False, registry=self.registry)
        self.meter_provider: MeterProvider = MeterProvider(metric_readers=[reader])

    def render(self, accept: str = "") -> tuple[bytes, str]:
        """The current values in the format ``accept`` asks for, and its content type."""
        return render(self.registry, accept)

    def shutdown(self) -> None:
        """Detach the reader from the registry and stop the provider."""
        self.meter_provider.shutdown()


def render(registry: CollectorRegistry, accept: str = "") -> tuple[bytes, str]:
    """The exposition of ``registry`` (``prometheus_client``'s content negotiation) and its content type."""
    try:
        from prometheus_client.exposition import choose_encoder
    except ImportError:
        raise ConfigurationError(_MISSING) from None
    encoder, content_type = choose_encoder(accept)
    return encoder(registry), content_type
