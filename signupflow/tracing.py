"""One trace per signup, across the three services (OpenTelemetry).

``POST /signup`` starts the trace (or continues the client's W3C ``traceparent``); its context
is stored with the outbox row, so the relay's publish is a child of the request even though it
runs later; it travels as a ``traceparent`` Kafka header on ``profile-insert`` and
``partner-created``, and member and batch continue it with a span per event. A batch's write
span links to the events it wrote. Every span carries ``signupflow.member_uuid``.

Exporters, chosen by the environment: OTLP over HTTP when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is
set (Jaeger, Tempo, any collector; the standard ``OTEL_*`` variables apply), JSON lines (one
span per line, ``span.to_json(indent=None)``) when ``SIGNUPFLOW_TRACE_FILE`` is set, and off
otherwise: then :data:`enabled` is False and the consuming path does no tracing work at all.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

MEMBER_UUID = "signupflow.member_uuid"
HEADER = "traceparent"
_PROPAGATOR = TraceContextTextMapPropagator()
#: Whether spans are recorded and exported (set once per process by :func:`setup`).
enabled = False
_provider: TracerProvider | None = None
tracer = trace.get_tracer("signupflow")


class JsonLinesExporter(SpanExporter):
    """Appends each span as one JSON line; several processes may share the file (one
    ``write`` per line on an ``O_APPEND`` descriptor)."""

    def __init__(self, path: str):
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        for span in spans:
            os.write(self.fd, (span.to_json(indent=None) + "\n").encode())
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        os.close(self.fd)


def setup(service: str, env: Mapping[str, str] | None = None) -> None:
    """Install the exporters the environment asks for (once per process)."""
    global enabled, _provider
    env = os.environ if env is None else env
    exporters: list[SpanExporter] = []
    if env.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporters.append(OTLPSpanExporter())
    if env.get("SIGNUPFLOW_TRACE_FILE"):
        exporters.append(JsonLinesExporter(env["SIGNUPFLOW_TRACE_FILE"]))
    if not exporters or _provider is not None:
        return
    _provider = TracerProvider(resource=Resource.create(
        {"service.name": f"signupflow-{service}", "service.namespace": "signupflow"}))
    for exporter in exporters:
        _provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=500))
    trace.set_tracer_provider(_provider)
    enabled = True


def shutdown() -> None:
    """Export what is still buffered (on a worker's orderly stop)."""
    if _provider is not None:
        _provider.shutdown()


def traceparent(span: Span) -> str | None:
    """The W3C ``traceparent`` of ``span``, to store or send on."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
    return carrier.get(HEADER)


def context_of(value: str | bytes | None) -> Context | None:
    """The context a ``traceparent`` continues (None: start a new trace)."""
    if not value:
        return None
    text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
    return _PROPAGATOR.extract({HEADER: text})


def header(headers: Iterable[tuple[str, bytes]] | Mapping[str, bytes] | None) -> bytes | None:
    """The ``traceparent`` among a Kafka record's headers."""
    if not headers:
        return None
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    return next((value for name, value in pairs if name == HEADER), None)


def kafka_headers(span: Span | None) -> list[tuple[str, bytes]] | None:
    """Headers that carry ``span``'s context on a Kafka record."""
    value = traceparent(span) if span is not None else None
    return [(HEADER, value.encode())] if value else None


def messaging(topic: str, key: bytes | None, partition: int | None = None,
              offset: int | None = None) -> dict[str, Any]:
    """The OpenTelemetry messaging attributes of one Kafka record."""
    attributes: dict[str, Any] = {"messaging.system": "kafka",
                                  "messaging.destination.name": topic}
    if key is not None:
        attributes["messaging.kafka.message.key"] = key.decode("utf-8", "replace")
        attributes[MEMBER_UUID] = attributes["messaging.kafka.message.key"]
    if partition is not None:
        attributes["messaging.destination.partition.id"] = str(partition)
    if offset is not None:
        attributes["messaging.kafka.offset"] = offset
    return attributes


def consume_spans(stage: str, messages: Sequence[Any]) -> list[Span]:
    """A ``<stage> process`` span per consumed record, each continuing the record's trace."""
    return [tracer.start_span(
        f"{stage} process", context=context_of(header(m.headers)), kind=SpanKind.CONSUMER,
        attributes=messaging(m.topic, m.key, m.partition, m.offset)) for m in messages]


def end_spans(spans: Sequence[Span], failed: Mapping[int, str]) -> None:
    """End per-record spans; those of dead-lettered records carry the reason as an error."""
    for i, span in enumerate(spans):
        if i in failed:
            span.set_status(Status(StatusCode.ERROR, failed[i][:200]))
            span.set_attribute("signupflow.dead_letter", True)
        span.end()


@contextmanager
def write_span(stage: str, spans: Sequence[Span]) -> Iterator[None]:
    """A ``<stage> write`` span around a batch write, linked to the events it writes."""
    if not enabled:
        yield
        return
    links = [Link(s.get_span_context()) for s in spans]
    uuids = [str(u) for s in spans
             if (u := getattr(s, "attributes", {}).get(MEMBER_UUID)) is not None]
    with tracer.start_as_current_span(f"{stage} write", links=links, attributes={
            "signupflow.batch_size": len(spans), MEMBER_UUID: uuids}):
        yield
