"""OpenTelemetry spans at the tools' seams, when OpenTelemetry is installed and configured.

Tracing is on when ``opentelemetry`` imports and either

* ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) is set, in the
  environment or ``.env``: microcore builds the SDK's tracer provider with a batching
  OTLP/HTTP exporter (``pip install 'microcore[otel]'``) and installs it as the global one,
  so a plugin's own ``trace.get_tracer(...)`` spans join the same traces; or
* the app installed a tracer provider of its own (``trace.set_tracer_provider``) before the
  kernel booted.

Otherwise :attr:`Tracing.enabled` stays ``False`` and a tool's seam costs one attribute read:
every call site is guarded by ``if TRACING.enabled:``. Context crosses the bus as a W3C
``traceparent`` string (:attr:`microcore.Event.traceparent`, and the NATS message header).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from typing import Any

import structlog

__all__ = ("TRACING", "Tracing")

_log = structlog.get_logger("microcore")


class Tracing:
    """The process's tracing switch and the span helpers tools call at their seams."""

    __slots__ = ("_api", "_owned", "_pinned", "_tracer", "enabled")

    def __init__(self) -> None:
        self.enabled = False
        self._tracer: Any = None
        self._api: Any = None  # the ``opentelemetry`` modules, once imported
        self._pinned: Any = None  # a provider handed in with :meth:`use` (tests, embedding)
        self._owned: Any = None  # the SDK provider microcore built from the OTEL_* settings

    def use(self, provider: Any) -> None:
        """Trace into ``provider`` (an SDK ``TracerProvider``) at the next boot, whatever
        the settings say; ``None`` goes back to the settings. For tests and embedding code."""
        self._pinned = provider

    def configure(self, settings: Mapping[str, str], *, service: str) -> None:
        """Decide at boot whether spans are made, and log why when they are."""
        self.enabled, self._tracer = False, None
        if (settings.get("OTEL_SDK_DISABLED") or "").strip().lower() == "true":
            return
        endpoint = _traces_endpoint(settings)
        try:
            from opentelemetry import context, propagate, trace
        except ImportError:
            if endpoint:
                _log.warning(
                    "tracing_unavailable",
                    reason="OTEL_EXPORTER_OTLP_ENDPOINT is set but opentelemetry is not "
                    "installed: pip install 'microcore[otel]'",
                )
            return
        self._api = (trace, propagate, context)
        provider, source = self._pinned, "provided"
        if provider is None:
            current = trace.get_tracer_provider()
            if not isinstance(current, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
                provider, source = current, "app"
            elif endpoint:
                provider = self._owned = self._owned or _otlp_provider(endpoint, settings, service)
                if provider is None:
                    return
                trace.set_tracer_provider(provider)
                source = f"otlp {endpoint}"
            else:
                return
        self._tracer = provider.get_tracer("microcore")
        self.enabled = True
        _log.info("tracing_enabled", exporter=source, service=service)

    def flush(self) -> None:
        """Export what the provider microcore built still holds (at shutdown; blocking)."""
        if self._owned is not None:
            self._owned.force_flush(5000)

    @contextmanager
    def span(
        self,
        name: str,
        *,
        kind: str = "internal",
        attributes: Mapping[str, Any] | None = None,
        parent: str | None = None,
    ) -> Iterator[Any]:
        """A span, current while the block runs (an exception escaping it is recorded).

        ``kind`` is ``internal``, ``server``, ``client``, ``producer`` or ``consumer``;
        ``parent`` a W3C ``traceparent`` to continue (a request's header, an event's), else
        the span continues whatever span is current.
        """
        trace, propagate, _ = self._api
        context = propagate.extract({"traceparent": parent}) if parent else None
        with self._tracer.start_as_current_span(
            name,
            context=context,
            kind=trace.SpanKind[kind.upper()],
            attributes=attributes,
        ) as span:
            yield span

    def fail(self, span: Any, description: str) -> None:
        """Mark ``span`` failed (an answer that is an error without an exception: a 5xx)."""
        trace = self._api[0]
        span.set_status(trace.Status(trace.StatusCode.ERROR, description))

    def traceparent(self) -> str | None:
        """The current span as a W3C ``traceparent`` (to carry on an event), or None."""
        carrier: dict[str, str] = {}
        self._api[1].inject(carrier)
        return carrier.get("traceparent")

    def ids(self) -> tuple[str, str] | None:
        """``(trace_id, span_id)`` in hex while a span is current, else None."""
        context = self._api[0].get_current_span().get_span_context()
        if not context.is_valid:
            return None
        return format(context.trace_id, "032x"), format(context.span_id, "016x")


def add_trace_ids(
    logger: Any, method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: ``trace_id`` and ``span_id`` on every line while a span is active."""
    if TRACING.enabled:
        ids = TRACING.ids()
        if ids is not None:
            event["trace_id"], event["span_id"] = ids
    return event


def _traces_endpoint(settings: Mapping[str, str]) -> str | None:
    """Where spans go: the traces endpoint as given, or the base endpoint + ``/v1/traces``."""
    explicit = (settings.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or "").strip()
    if explicit:
        return explicit
    base = (settings.get("OTEL_EXPORTER_OTLP_ENDPOINT") or "").strip()
    return f"{base.rstrip('/')}/v1/traces" if base else None


def _otlp_provider(endpoint: str, settings: Mapping[str, str], service: str) -> Any:
    """The SDK provider exporting in batches over OTLP/HTTP, or None when the SDK is missing."""
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        _log.warning(
            "tracing_unavailable",
            reason="OTEL_EXPORTER_OTLP_ENDPOINT is set but the OpenTelemetry SDK or its "
            "OTLP/HTTP exporter is not installed: pip install 'microcore[otel]'",
        )
        return None
    name = (settings.get("OTEL_SERVICE_NAME") or "").strip() or service
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    return provider


TRACING = Tracing()
"""The one switch of the process: tools guard each seam with ``if TRACING.enabled:``."""
