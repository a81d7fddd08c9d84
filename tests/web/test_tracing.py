"""OpenTelemetry traces, checked with the SDK's in-memory exporter: a login and a SCIM call
become server spans named by route, SQL child spans, and jitprov's own spans; no span carries a
query string, a code, a state, a token or a claim; tracing stays off unless OTEL_* asks."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.testclient import TestClient

from jitprov.services import tracing as jitprov_spans
from jitprov.services.context import ServiceContext
from jitprov.settings import Settings, SettingsError
from jitprov.testing.builders import setup_connection
from jitprov.web import tracing
from jitprov.web.app import create_app
from tests.conftest import TEST_SECRET_KEY
from tests.web.helpers import idp_response, start
from tests.web.scim_helpers import auth, scim_token, user


@pytest.fixture(autouse=True)
def _no_instrumentation_left() -> Iterator[None]:
    """The SQLAlchemy instrumentor is one per process and wraps ``create_engine`` itself: left
    on, every engine a later test builds (a CLI command's) would report its statements to a
    provider already shut down, which says so on stderr."""
    yield
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    instrumentor = SQLAlchemyInstrumentor()
    if instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.uninstrument()


@pytest.fixture
def traced(ctx: ServiceContext) -> Iterator[tuple[TestClient, InMemorySpanExporter]]:
    setup_connection(ctx)
    exporter = InMemorySpanExporter()
    app = create_app(Settings(base_url="http://testserver", secret_key=TEST_SECRET_KEY,
                              dev_mode=True), ctx=ctx)
    assert tracing.install(app, ctx, exporter=exporter) is not None
    try:
        with TestClient(app, base_url="http://testserver", follow_redirects=False) as client:
            yield client, exporter
    finally:
        jitprov_spans.activate(None)


def _all_values(exporter: InMemorySpanExporter) -> str:
    return " ".join(f"{span.name} {dict(span.attributes or {})}"
                    for span in exporter.get_finished_spans())


def test_a_login_is_traced_by_route_with_sql_and_provisioning_spans(
        traced: tuple[TestClient, InMemorySpanExporter]) -> None:
    client, exporter = traced
    state = start(client)
    fields = idp_response(client, state)
    answer = client.post("/sso/idp/mock/callback", data=fields)
    assert answer.status_code == 303
    spans = exporter.get_finished_spans()
    names = {span.name for span in spans}
    assert "GET /sso/{connection}/login" in names
    assert "POST /sso/{connection}/mock/callback" in names
    [provision] = [s for s in spans if s.name == "jitprov.login.provision"]
    assert dict(provision.attributes or {}) == {"connection": "idp", "tenant": "hospital",
                                                "outcome": "create"}
    [route] = [s for s in spans if s.name == "POST /sso/{connection}/mock/callback"]
    assert provision.parent is not None
    assert provision.parent.span_id == route.context.span_id  # under its request
    # the login request is spent in the provisioning transaction: its SQL under that span
    spends = [s for s in spans if str((s.attributes or {}).get("db.statement", ""))
              .startswith("INSERT INTO login_request")]
    assert len(spends) == 1 and spends[0].parent is not None
    assert spends[0].parent.span_id == provision.context.span_id
    # the fast path's statements too: the audit event is written under the provisioning
    assert any("audit_event" in str((s.attributes or {}).get("db.statement", ""))
               and s.parent is not None and s.parent.span_id == provision.context.span_id
               for s in spans)
    assert any(s.parent is not None and s.parent.span_id == provision.context.span_id
               for s in spans), "the provisioning's database work is its child"
    everything = _all_values(exporter)
    assert state not in everything  # the state travels in query strings and forms
    for secret in (fields.get("assertion", "x" * 40), "ana@hospital.example", "Ana Lima"):
        assert secret not in everything


def test_a_scim_call_has_its_own_span(traced: tuple[TestClient, InMemorySpanExporter],
                                      ctx: ServiceContext) -> None:
    client, exporter = traced
    token = scim_token(ctx)
    created = client.post("/scim/v2/hospital/Users", headers=auth(token),
                          json=user("bo@hospital.example"))
    assert created.status_code == 201
    listed = client.get("/scim/v2/hospital/Users?filter=userName%20eq%20%22bo%22",
                        headers=auth(token))
    assert listed.status_code == 200
    scim = [dict(s.attributes or {}) for s in exporter.get_finished_spans()
            if s.name == "jitprov.scim"]
    assert {"resource": "User", "operation": "create"} in scim
    assert {"resource": "User", "operation": "query"} in scim
    everything = _all_values(exporter)
    assert token not in everything and "bo@hospital.example" not in everything
    assert "filter=" not in everything  # query strings are cut from every URL attribute


def test_health_checks_are_not_traced(traced: tuple[TestClient, InMemorySpanExporter]) -> None:
    client, exporter = traced
    assert client.get("/healthz").status_code == 200
    assert not [s for s in exporter.get_finished_spans() if "healthz" in s.name]


@pytest.mark.parametrize(("environ", "expected"), [
    ({}, False),
    ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, False),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
    ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
    ({"OTEL_TRACES_EXPORTER": "console"}, True),
    ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}, False),
])
def test_tracing_is_off_unless_the_standard_variables_ask(environ: dict[str, str],
                                                          expected: bool) -> None:
    assert tracing.wanted(environ) is expected


def test_the_app_turns_tracing_on_from_the_environment(ctx: ServiceContext,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    try:
        app = create_app(Settings(secret_key=TEST_SECRET_KEY), ctx=ctx)
        assert jitprov_spans._tracer is not None
        assert app.state.tracer_provider is not None
        app.state.tracer_provider.shutdown()  # (the server does it when it stops)
    finally:
        jitprov_spans.activate(None)
    monkeypatch.delenv("OTEL_TRACES_EXPORTER")
    app = create_app(Settings(secret_key=TEST_SECRET_KEY), ctx=ctx)
    assert jitprov_spans._tracer is None and app.state.tracer_provider is None


def test_asking_for_traces_without_the_extra_is_a_clear_error(
        ctx: ServiceContext, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace", None)
    with pytest.raises(SettingsError, match=r"jitprov\[otel\]"):
        tracing.install(object(), ctx, environ={"OTEL_TRACES_EXPORTER": "otlp"})
