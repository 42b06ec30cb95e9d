"""OpenTelemetry tracing for every service, configured by the standard ``OTEL_*`` variables.

One tracer provider per process: :func:`setup_telemetry` installs it on first call and returns the same provider
afterwards (``labmesh up`` runs every service in one process and calls it once, as ``labmesh``). The gRPC
interceptors from ``opentelemetry-instrumentation-grpc`` — :func:`server_interceptors` (installed by
``ServiceHost``) and :func:`client_interceptors` (installed by ``channels.open_channel``) — propagate the W3C
``traceparent`` on every call, so a request through the gateway and the scheduler is one trace.

Variables (the SDK's own, see https://opentelemetry.io/docs/specs/otel/configuration/sdk-environment-variables/):

* ``OTEL_SDK_DISABLED=true`` — no exporters (the SDK then hands out no-op tracers);
* ``OTEL_SERVICE_NAME`` — overrides the service name given in code; ``OTEL_RESOURCE_ATTRIBUTES`` adds attributes;
* ``OTEL_TRACES_EXPORTER`` — comma-separated ``otlp``, ``console``, ``none``. Unlike the SDK default (``otlp``),
  when unset it is ``otlp`` only if an OTLP endpoint is configured and ``none`` otherwise, so a laptop without a
  collector does not log export failures;
* ``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``, ``..._HEADERS``, ``..._INSECURE`` ... —
  read by the exporter itself; ``OTEL_EXPORTER_OTLP[_TRACES]_PROTOCOL`` picks ``grpc`` (default) or
  ``http/protobuf``;
* ``OTEL_TRACES_SAMPLER`` / ``OTEL_TRACES_SAMPLER_ARG`` — read by the SDK's tracer provider.

Tests inject their exporter through the same door production uses::

    exporter = InMemorySpanExporter()
    setup_telemetry("labmesh-test", span_processor=SimpleSpanProcessor(exporter))

Domain steps get manual spans: ``with tracer(__name__).start_as_current_span("engine.fire_batch"): ...``.
"""

from __future__ import annotations

import inspect
import logging
import os
import threading
from collections.abc import Awaitable, Callable, Mapping

import grpc
import grpc.aio
from opentelemetry import trace
from opentelemetry.instrumentation.grpc import aio_client_interceptors, aio_server_interceptor
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

from servicekit.config import ConfigError, parse_bool

__all__ = ["build_tracer_provider", "client_interceptors", "server_interceptors", "setup_telemetry", "tracer"]

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_provider: TracerProvider | None = None

# Infrastructure RPCs are not traced: Kubernetes probes health every few seconds and the spans would drown the
# interesting ones.
_UNTRACED_SERVICES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


def setup_telemetry(
    service_name: str,
    *,
    span_processor: SpanProcessor | None = None,
    environ: Mapping[str, str] | None = None,
) -> TracerProvider:
    """Install the process's tracer provider (first call) and return it (every call).

    ``span_processor`` is added to the provider even when it already exists: that is how tests attach an
    ``InMemorySpanExporter`` whatever ran first. If something else (e.g. ``opentelemetry-instrument``) already
    installed an SDK provider, that one is adopted instead of replaced.
    """
    global _provider
    with _lock:
        if _provider is None:
            current = trace.get_tracer_provider()
            if isinstance(current, TracerProvider):
                logger.info("tracing: using the tracer provider installed before servicekit's")
                _provider = current
            else:
                _provider = build_tracer_provider(service_name, environ)
                trace.set_tracer_provider(_provider)
        elif _provider.resource.attributes.get(SERVICE_NAME) != service_name:
            logger.debug("tracing already set up; %r shares the provider", service_name)
        if span_processor is not None:
            _provider.add_span_processor(span_processor)
        return _provider


def build_tracer_provider(service_name: str, environ: Mapping[str, str] | None = None) -> TracerProvider:
    """A new provider configured from ``environ`` (default ``os.environ``); not installed. See the module doc."""
    env = os.environ if environ is None else environ
    name = env.get("OTEL_SERVICE_NAME", "").strip() or service_name
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: name}))
    if _disabled(env):
        return provider
    for exporter in _exporters(env):
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def tracer(name: str) -> trace.Tracer:
    """A tracer for manual spans (``name`` is usually ``__name__``); works before setup (spans start once set up)."""
    return trace.get_tracer(name)


def server_interceptors() -> list[grpc.aio.ServerInterceptor]:
    """The tracing server interceptor: continues the caller's trace and records one SERVER span per call."""
    otel = aio_server_interceptor(tracer_provider=_provider, filter_=_traced)
    return [_TracingServerInterceptor(otel)]


def client_interceptors() -> list[grpc.aio.ClientInterceptor]:
    """The tracing client interceptors: one CLIENT span per call, its context sent as ``traceparent``."""
    return list(aio_client_interceptors(tracer_provider=_provider, filter_=_traced))


# --- internals ---------------------------------------------------------------------------------------------------


def _disabled(env: Mapping[str, str]) -> bool:
    text = env.get("OTEL_SDK_DISABLED", "").strip()
    if not text:
        return False
    try:
        return parse_bool(text)
    except ValueError as exc:
        raise ConfigError("OTEL_SDK_DISABLED", text, str(exc)) from None


def _exporters(env: Mapping[str, str]) -> list[SpanExporter]:
    endpoints = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    has_endpoint = any(env.get(variable, "").strip() for variable in endpoints)
    text = env.get("OTEL_TRACES_EXPORTER", "").strip() or ("otlp" if has_endpoint else "none")
    exporters: list[SpanExporter] = []
    for kind in (part.strip().lower() for part in text.split(",")):
        if kind == "none":
            continue
        if kind == "console":
            exporters.append(ConsoleSpanExporter())
        elif kind == "otlp":
            exporters.append(_otlp_exporter(env))
        else:
            raise ConfigError("OTEL_TRACES_EXPORTER", text, "a comma-separated list of otlp, console, none")
    return exporters


def _otlp_exporter(env: Mapping[str, str]) -> SpanExporter:
    variable = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
    protocol = env.get(variable, "").strip()
    if not protocol:
        variable = "OTEL_EXPORTER_OTLP_PROTOCOL"
        protocol = env.get(variable, "").strip() or "grpc"
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    elif protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    else:
        raise ConfigError(variable, protocol, "grpc or http/protobuf")
    return OTLPSpanExporter()


def _traced(details: grpc.HandlerCallDetails | grpc.aio.ClientCallDetails) -> bool:
    method = details.method
    if isinstance(method, bytes):
        method = method.decode()
    return not method.startswith(_UNTRACED_SERVICES)


class _TracingServerInterceptor(grpc.aio.ServerInterceptor):
    """Guards OpenTelemetry's aio server interceptor against streaming handlers written with ``context.write``.

    The instrumentation iterates streaming handlers with ``async for``, which fails for coroutine handlers that
    write through the context (grpc's own health ``Watch`` is one). Those are handed on untraced; async-generator
    handlers — every labmesh streaming handler — are traced.
    """

    def __init__(self, otel: grpc.aio.ServerInterceptor) -> None:
        self._otel = otel

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or (handler.response_streaming and not _is_async_gen(handler)):
            return handler

        async def resolved(_: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
            return handler

        return await self._otel.intercept_service(resolved, handler_call_details)


def _is_async_gen(handler: grpc.RpcMethodHandler) -> bool:
    behavior = handler.stream_stream if handler.request_streaming else handler.unary_stream
    return inspect.isasyncgenfunction(behavior)
