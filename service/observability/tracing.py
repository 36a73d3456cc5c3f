"""Optional OpenTelemetry tracing (`FERRY_OBSERVABILITY__TRACING`), off by default.

FastStream's middleware opens a span for every message published and consumed and carries the
trace context in Kafka headers, so an export request can be followed from its publisher through
the intake. Spans leave over OTLP; where to is configured by the standard `OTEL_*` variables
(`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_SERVICE_NAME`, ...). The packages come with the `tracing`
extra, so a deployment without it pays nothing; imports happen only when tracing is on.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from service.errors import ErrorCode, FerryError

if TYPE_CHECKING:
    from faststream._internal.types import BrokerMiddleware
    from opentelemetry.sdk.trace.export import SpanExporter


class TracingUnavailableError(FerryError, RuntimeError):
    """Tracing was asked for but the `tracing` extra is not installed."""

    code = ErrorCode.TRACING_UNAVAILABLE


def kafka_tracing_middlewares() -> tuple[BrokerMiddleware[Any, Any], ...]:
    try:
        from faststream.kafka.opentelemetry import (  # noqa: PLC0415 - optional extra
            KafkaTelemetryMiddleware,
        )
    except ImportError as exc:
        raise _unavailable() from exc
    # The global tracer provider, set by `configure_tracing` at start.
    return (KafkaTelemetryMiddleware(),)


def configure_tracing(role: str, exporter: SpanExporter | None = None) -> None:
    """Install the process's tracer provider; `exporter` defaults to OTLP over HTTP."""
    try:
        from opentelemetry import trace  # noqa: PLC0415 - optional extra
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource  # noqa: PLC0415
        from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415
        from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: PLC0415

        if exporter is None:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415
                OTLPSpanExporter,
            )

            exporter = OTLPSpanExporter()
    except ImportError as exc:
        raise _unavailable() from exc
    # OTEL_SERVICE_NAME, when set, wins; otherwise each role is its own service.
    name = os.environ.get("OTEL_SERVICE_NAME") or f"ferry-{role}"
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: name}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)


def _unavailable() -> TracingUnavailableError:
    return TracingUnavailableError(
        "FERRY_OBSERVABILITY__TRACING is on but OpenTelemetry is not installed; "
        "install Ferry with the `tracing` extra (pip install 'ferry[tracing]')"
    )
