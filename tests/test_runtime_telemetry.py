"""Tracing across two hosts: one trace, and the callee's server span is a child of the caller's client span."""

from __future__ import annotations

import asyncio

import pytest
from opentelemetry.sdk.resources import SERVICE_NAME
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from servicekit.channels import open_channel
from servicekit.config import ConfigError
from servicekit.telemetry import build_tracer_provider, setup_telemetry, tracer
from tests.runtime_helpers.echo import EchoClient, EchoService
from tests.runtime_helpers.hosting import running_host, target

ALPHA = "labmesh.test.v1.Alpha"
BETA = "labmesh.test.v1.Beta"


@pytest.fixture(scope="module")
def exporter() -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    provider = setup_telemetry("labmesh-test", span_processor=SimpleSpanProcessor(exporter))
    assert setup_telemetry("labmesh-other") is provider  # one provider per process
    return exporter


def _one(spans: list[ReadableSpan], kind: SpanKind, name: str) -> ReadableSpan:
    matching = [s for s in spans if s.kind == kind and s.name.endswith(name)]
    assert len(matching) == 1, [(s.kind, s.name) for s in spans]
    return matching[0]


async def test_trace_propagates_from_host_a_to_host_b(exporter: InMemorySpanExporter) -> None:
    exporter.clear()
    async with running_host(EchoService(BETA)) as beta_host:
        async with running_host(EchoService(ALPHA, forward_to=target(beta_host))) as alpha_host:
            async with open_channel(target(alpha_host), lab="lab-7") as channel:
                with tracer("test").start_as_current_span("test.request") as root:
                    answer = await EchoClient(channel, ALPHA).echo({"action": "forward", "service": BETA, "text": "hi"})
    assert answer["forwarded"] == {"echo": "hi", "lab": "lab-7", "service": BETA}  # the lab travelled too

    trace_id = root.get_span_context().trace_id
    for _ in range(50):  # server spans end as their handlers return; give the last one a moment
        spans = [s for s in exporter.get_finished_spans() if s.context.trace_id == trace_id]
        if len(spans) == 5:
            break
        await asyncio.sleep(0.02)

    test_client = _one(spans, SpanKind.CLIENT, f"{ALPHA}/Echo")
    alpha_server = _one(spans, SpanKind.SERVER, f"{ALPHA}/Echo")
    alpha_client = _one(spans, SpanKind.CLIENT, f"{BETA}/Echo")
    beta_server = _one(spans, SpanKind.SERVER, f"{BETA}/Echo")
    assert len(spans) == 5  # plus the test's root span: one trace
    assert test_client.parent.span_id == root.get_span_context().span_id
    assert alpha_server.parent.span_id == test_client.context.span_id
    assert alpha_client.parent.span_id == alpha_server.context.span_id
    assert beta_server.parent.span_id == alpha_client.context.span_id
    assert beta_server.resource.attributes[SERVICE_NAME] == alpha_server.resource.attributes[SERVICE_NAME]


async def test_error_codes_are_recorded_and_health_checks_untraced(exporter: InMemorySpanExporter) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    exporter.clear()
    async with running_host(EchoService()) as host, open_channel(target(host)) as channel:
        with pytest.raises(Exception, match="not found"):
            await EchoClient(channel).echo({"action": "not_found"})
        await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
    spans = exporter.get_finished_spans()
    server = _one(list(spans), SpanKind.SERVER, "EchoService/Echo")
    assert server.attributes["rpc.grpc.status_code"] == 5  # NOT_FOUND, set through the interceptor's abort
    assert not [s for s in spans if "Health" in s.name]


def test_provider_follows_the_otel_variables() -> None:
    provider = build_tracer_provider("labmesh-scheduler", {"OTEL_SERVICE_NAME": "sched-eu"})
    assert provider.resource.attributes[SERVICE_NAME] == "sched-eu"
    provider = build_tracer_provider("labmesh-scheduler", {"OTEL_TRACES_EXPORTER": "console,none"})
    assert provider.resource.attributes[SERVICE_NAME] == "labmesh-scheduler"
    with pytest.raises(ConfigError, match="OTEL_TRACES_EXPORTER='zipkin'"):
        build_tracer_provider("x", {"OTEL_TRACES_EXPORTER": "zipkin"})
    with pytest.raises(ConfigError, match="OTEL_EXPORTER_OTLP_PROTOCOL='carrier-pigeon'"):
        build_tracer_provider("x", {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "carrier-pigeon"})
    with pytest.raises(ConfigError, match="OTEL_SDK_DISABLED='maybe'"):
        build_tracer_provider("x", {"OTEL_SDK_DISABLED": "maybe"})
    build_tracer_provider("x", {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317"}).shutdown()
