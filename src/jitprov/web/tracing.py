"""OpenTelemetry traces (the optional extra ``jitprov[otel]``), configured by the standard
``OTEL_*`` variables and off unless they ask for it.

On when ``OTEL_TRACES_EXPORTER`` names an exporter (``otlp``, ``console``) or an OTLP endpoint
is set (``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``), and
``OTEL_SDK_DISABLED`` is not ``true``. Then every HTTP request is a server span named by its
route template (FastAPI instrumentation), every SQL statement run through SQLAlchemy a child
span (the statement text only, never its values; the few hot-path statements run straight on
the driver's cursor, ``store.fast``, have none), every server-side HTTP call a client span
(httpx), and jitprov adds spans for a login's provisioning and each SCIM operation
(``services.tracing``). Query strings carry codes and states: they are cut from every URL
attribute, server and client side. The resource (``service.name`` defaults to ``jitprov``)
comes from ``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from jitprov.services import tracing
from jitprov.services.context import ServiceContext
from jitprov.settings import SettingsError

#: span attributes that may hold a URL with its query string
_URL_KEYS = ("http.url", "http.target", "url.full")
_QUERY_KEYS = ("url.query",)


def wanted(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the ``OTEL_*`` variables ask for traces."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter:
        return exporter != "none"
    return bool(env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
                or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def install(app: Any, ctx: ServiceContext, *, exporter: Any = None,
            environ: Mapping[str, str] | None = None) -> Any:
    """Instrument ``app`` (and the context's database engine and HTTP client) when traces are
    wanted or an ``exporter`` is given (tests: an in-memory one, spans exported at once).
    Returns the tracer provider, or None when tracing stays off."""
    if exporter is None and not wanted(environ):
        return None
    try:
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
        from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    except ImportError as exc:
        raise SettingsError("OTEL_* asks for traces but the OpenTelemetry packages are not "
                            "installed: pip install 'jitprov[otel]'") from exc
    provider = TracerProvider(resource=Resource.create(
        {"service.name": (environ or os.environ).get("OTEL_SERVICE_NAME", "jitprov")}))
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    else:
        provider.add_span_processor(BatchSpanProcessor(_exporter_from_environment(environ)))
    FastAPIInstrumentor.instrument_app(app, tracer_provider=provider,
                                       server_request_hook=_cut_queries,
                                       excluded_urls="/healthz,/readyz",
                                       exclude_spans=["receive", "send"])
    # the instrumentation's declared range stops before SQLAlchemy 2.1, whose engine events
    # it uses are unchanged (the tracing tests check the spans arrive)
    # (the instrumentor is one per process: one traced app per process, the last one built)
    instrumentor = SQLAlchemyInstrumentor()
    if instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.uninstrument()
    instrumentor.instrument(engine=ctx.db.engine, tracer_provider=provider,
                            enable_commenter=False, skip_dep_check=True)
    HTTPXClientInstrumentor.instrument_client(ctx.http, tracer_provider=provider,
                                              request_hook=_cut_client_queries)
    tracing.activate(provider.get_tracer("jitprov"))
    return provider


def _exporter_from_environment(environ: Mapping[str, str] | None) -> Any:
    env = os.environ if environ is None else environ
    if env.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()  # endpoint, headers, timeout: OTEL_EXPORTER_OTLP_*


def _cut_queries(span: Any, _scope: Any) -> None:
    """The server span's URL attributes without their query string."""
    _cut(span)


def _cut_client_queries(span: Any, _request: Any) -> None:
    _cut(span)


def _cut(span: Any) -> None:
    if span is None or not span.is_recording():
        return
    attributes = getattr(span, "attributes", None) or {}
    for key in _URL_KEYS:
        value = attributes.get(key)
        if isinstance(value, str) and "?" in value:
            span.set_attribute(key, value.split("?", 1)[0])
    for key in _QUERY_KEYS:
        if attributes.get(key):
            span.set_attribute(key, "[redacted]")
