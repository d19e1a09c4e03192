"""The tracing switch: when microcore makes spans, and the helpers tools call at their seams."""

from __future__ import annotations

import sys
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from microcore._core import tracing as tracing_module
from microcore._core.tracing import TRACING, Tracing, add_trace_ids

ENDPOINT = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}


def recording() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def test_off_without_configuration() -> None:
    tracing = Tracing()
    tracing.configure({}, service="shop")
    assert tracing.enabled is False


def test_sdk_disabled_wins_over_everything() -> None:
    tracing = Tracing()
    tracing.use(recording()[0])
    tracing.configure({**ENDPOINT, "OTEL_SDK_DISABLED": "true"}, service="shop")
    assert tracing.enabled is False


@pytest.mark.parametrize("settings", [{}, ENDPOINT])
def test_off_when_opentelemetry_is_not_installed(
    monkeypatch: pytest.MonkeyPatch, settings: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry", None)  # import fails as if absent
    tracing = Tracing()
    tracing.configure(settings, service="shop")
    assert tracing.enabled is False
    said = capsys.readouterr()
    assert ("microcore[otel]" in said.out + said.err) is bool(settings)


def test_a_provided_provider_records_spans_with_parents() -> None:
    provider, exporter = recording()
    tracing = Tracing()
    tracing.use(provider)
    tracing.configure({}, service="shop")
    assert tracing.enabled
    assert tracing.ids() is None
    assert tracing.traceparent() is None
    with tracing.span("outer", kind="server", attributes={"a": 1}) as outer:
        ids = tracing.ids()
        assert ids is not None and len(ids[0]) == 32 and len(ids[1]) == 16
        carried = tracing.traceparent()
        assert carried is not None and ids[0] in carried
        tracing.fail(outer, "HTTP 500")
    with tracing.span("remote", kind="consumer", parent=carried):
        pass
    spans = {span.name: span for span in exporter.get_finished_spans()}
    assert spans["outer"].kind is trace.SpanKind.SERVER
    assert spans["outer"].status.status_code is trace.StatusCode.ERROR
    assert spans["outer"].attributes == {"a": 1}
    remote = spans["remote"]
    assert remote.parent is not None
    assert remote.parent.span_id == spans["outer"].context.span_id
    assert remote.context.trace_id == spans["outer"].context.trace_id


def test_an_exception_escaping_a_span_is_recorded() -> None:
    provider, exporter = recording()
    tracing = Tracing()
    tracing.use(provider)
    tracing.configure({}, service="shop")
    with pytest.raises(ValueError), tracing.span("boom"):
        raise ValueError("no")
    (span,) = exporter.get_finished_spans()
    assert span.status.status_code is trace.StatusCode.ERROR
    assert span.events[0].name == "exception"


def test_the_apps_own_provider_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    provider, exporter = recording()
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: provider)
    tracing = Tracing()
    tracing.configure({}, service="shop")
    assert tracing.enabled
    with tracing.span("mine"):
        pass
    assert [s.name for s in exporter.get_finished_spans()] == ["mine"]


def test_an_otlp_endpoint_builds_a_batching_exporter_once(monkeypatch: pytest.MonkeyPatch) -> None:
    installed: list[Any] = []
    monkeypatch.setattr(trace, "set_tracer_provider", installed.append)
    tracing = Tracing()
    tracing.configure({**ENDPOINT, "OTEL_SERVICE_NAME": "orders"}, service="shop")
    assert tracing.enabled
    (provider,) = installed
    assert provider.resource.attributes["service.name"] == "orders"
    tracing.configure(ENDPOINT, service="shop")  # a second boot reuses it
    assert len(installed) == 2 and installed[1] is provider
    tracing.flush()
    provider.shutdown()


def test_the_service_name_defaults_to_the_project_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    installed: list[Any] = []
    monkeypatch.setattr(trace, "set_tracer_provider", installed.append)
    tracing = Tracing()
    tracing.configure(
        {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, service="shop"
    )
    assert installed[0].resource.attributes["service.name"] == "shop"
    installed[0].shutdown()


def test_an_endpoint_without_the_sdk_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace", None)
    tracing = Tracing()
    tracing.configure(ENDPOINT, service="shop")
    assert tracing.enabled is False
    assert "microcore[otel]" in capsys.readouterr().out


def test_flush_without_an_own_provider_does_nothing() -> None:
    Tracing().flush()


def test_traces_endpoint_rules() -> None:
    endpoint = tracing_module._traces_endpoint
    assert endpoint({}) is None
    assert endpoint({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318/"}) == "http://c:4318/v1/traces"
    traces_only = {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/t"}
    assert endpoint({**ENDPOINT, **traces_only}) == "http://c:4318/t"


def test_log_lines_carry_the_trace_while_a_span_is_active() -> None:
    provider, _ = recording()
    try:
        TRACING.use(provider)
        TRACING.configure({}, service="shop")
        assert add_trace_ids(None, "info", {"event": "x"}) == {"event": "x"}  # no span
        with TRACING.span("work"):
            line = add_trace_ids(None, "info", {"event": "x"})
            assert (line["trace_id"], line["span_id"]) == TRACING.ids()
    finally:
        TRACING.use(None)
        TRACING.configure({}, service="shop")
    assert TRACING.enabled is False
    assert add_trace_ids(None, "info", {"event": "x"}) == {"event": "x"}
