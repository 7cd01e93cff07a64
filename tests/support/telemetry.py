"""OpenTelemetry's SDK recording in memory what bastion measures: metrics by series, finished spans.

``recorded`` instruments bastion with an SDK meter provider read by an
``InMemoryMetricReader`` and a tracer provider exporting to an ``InMemorySpanExporter``,
and turns the instrumentation off again after the test. ``series`` gives one
instrument's points: a counter's value or a histogram's count, by attribute set.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader, NumberDataPoint
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import bastion

__all__ = ["Recorded", "key", "recorded_fixture"]

#: One series: its attributes as a set of (name, value) pairs.
Key = frozenset[tuple[str, str | int]]


def key(attributes: Mapping[str, str | int]) -> Key:
    """The series key of these attributes."""
    return frozenset(attributes.items())


@dataclass
class Recorded:
    """What bastion recorded during a test."""

    reader: InMemoryMetricReader
    exporter: InMemorySpanExporter

    def series(self, name: str) -> dict[Key, float]:
        """Instrument ``name``'s points: a counter's value or a histogram's count, by attributes."""
        found: dict[Key, float] = {}
        data = self.reader.get_metrics_data()
        if data is None:
            return found
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name != name:
                        continue
                    for point in metric.data.data_points:
                        attributes = key({k: v for k, v in (point.attributes or {}).items()})  # type: ignore[misc]
                        if isinstance(point, HistogramDataPoint):
                            found[attributes] = point.count
                        elif isinstance(point, NumberDataPoint):
                            found[attributes] = point.value
        return found

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        """The finished spans, in the order they ended; only those called ``name`` when given."""
        return [span for span in self.exporter.get_finished_spans() if name is None or span.name == name]


@pytest.fixture(name="recorded")
def recorded_fixture() -> Iterator[Recorded]:
    """Fixture ``recorded``: bastion instrumented for the test, recording in memory."""
    reader = InMemoryMetricReader()
    exporter = InMemorySpanExporter()
    meter_provider = MeterProvider(metric_readers=[reader])
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    bastion.instrument(meter_provider=meter_provider, tracer_provider=tracer_provider)
    try:
        yield Recorded(reader, exporter)
    finally:
        bastion.uninstrument()
        meter_provider.shutdown()
        tracer_provider.shutdown()
