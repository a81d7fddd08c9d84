"""Schemathesis against the admin API's own OpenAPI document (``/openapi.json``).

Every operation is called with requests generated from its schema (valid and invalid ones),
authenticated with a real admin token, against a tenant that holds a connection, an account
and its grants. Half of the examples have their strings (body, query and path) replaced by
hostile text: lone surrogates sent as JSON escapes, NUL and other controls, oversized and
unusual Unicode. The property: no answer is a 5xx, no body carries a traceback, nothing is
logged as an unexpected error, and afterwards every tenant still reads through the API.

Bounded: a few examples per operation, so the whole run costs seconds per database; under
``CI`` the examples are derandomized (the ``ci`` Hypothesis profile of tests/conftest.py).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, unquote

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.core import NotSet
from starlette.testclient import TestClient

from jitprov.services import admin
from jitprov.services.context import ServiceContext
from jitprov.services.login.flow import provision_on_login
from jitprov.testing.builders import nurse, setup_connection
from tests.fuzz.checks import ErrorLog, assert_sound
from tests.strategies import hostile_text
from tests.web.helpers import make_client

#: examples per operation and generation mode (about 40 operations)
EXAMPLES = 6
#: characters of one hostile path or query value (past the 1 KiB string limit)
URL_CHARS = 1100
Api = tuple[TestClient, dict[str, str]]
#: generated (not hostile) strings stay printable ASCII, so most requests pass the text rule
#: and reach the services; the hostile ones are drawn apart (``tests.strategies``)
CONFIG = schemathesis.Config.from_dict({"generation": {
    "codec": "ascii", "allow-x00": False, "allow-extra-parameters": False,
    "with-security-parameters": False}})


@pytest.fixture
def api(ctx: ServiceContext) -> Iterator[Api]:
    setup_connection(ctx)
    provision_on_login(ctx, "idp", nurse())
    _, token = admin.create_admin_token(ctx, "fuzz")
    with make_client(ctx, dev_mode=False) as client:
        yield client, {"Authorization": f"Bearer {token}"}


def _rewrite(value: Any, text: Any) -> Any:
    """``value`` with each string (keys included) passed through ``text``."""
    if isinstance(value, str):
        return text(value)
    if isinstance(value, dict):
        return {_rewrite(k, text): _rewrite(v, text) for k, v in value.items()}
    if isinstance(value, list):
        return [_rewrite(v, text) for v in value]
    return value


def _printable(value: str) -> str:
    return "".join(c if c >= " " else "_" for c in value)


def _hostile(data: st.DataObject) -> Any:
    """Some strings replaced by hostile text, the others kept."""
    return lambda value: data.draw(hostile_text) if data.draw(st.booleans()) else value


def _url_part(value: Any) -> str:
    """A path or query value, percent-encoded; a lone surrogate (which UTF-8 cannot encode)
    goes out as its three CESU-8 bytes, as a hostile client sends it. Cut at
    :data:`URL_CHARS` (the HTTP client refuses longer URLs)."""
    text = (value if isinstance(value, str) else json.dumps(value))[:URL_CHARS]
    return quote(text.encode("utf-8", "surrogatepass"), safe="")


def _send(client: TestClient, auth: dict[str, str], case: Any,
          data: st.DataObject | None) -> Any:
    """Send ``case`` through the test client (one app, one database), with the real token;
    a JSON body goes out ASCII-escaped, as a client sends a lone surrogate."""
    # the generated strings made printable (so they reach the services), or some of them
    # made hostile; parameter names are kept
    text = _printable if data is None else _hostile(data)
    path_parameters = {k: _rewrite(unquote(v) if isinstance(v, str) else v, text)
                       for k, v in (case.path_parameters or {}).items()}
    query = {k: _rewrite(v, text) for k, v in (case.query or {}).items()}
    body = None if isinstance(case.body, NotSet) else _rewrite(case.body, text)
    path = case.operation.path
    for name, value in path_parameters.items():
        path = path.replace("{" + name + "}", _url_part(value))
    pairs = [(k, x) for k, v in query.items() for x in (v if isinstance(v, list) else [v])]
    if pairs:
        path += "?" + "&".join(f"{_url_part(k)}={_url_part(x)}" for k, x in pairs)
    headers = {k: str(v) for k, v in (case.headers or {}).items()
               if k.lower() not in ("authorization", "content-type", "content-length")}
    headers.update(auth)
    content = None
    if isinstance(body, bytes):  # a negative example: not JSON at all
        headers["Content-Type"] = case.media_type or "application/json"
        content = body
    elif body is not None:
        headers["Content-Type"] = "application/json"
        content = json.dumps(body).encode("ascii")
    return client.request(case.method, path, headers=headers, content=content)


def _fuzz_operation(client: TestClient, auth: dict[str, str], operation: Any,
                    known: dict[str, str], errors: ErrorLog) -> None:
    """Generated requests to ``operation``: half of them aimed at existing objects (its
    path parameters taken from ``known``), so they reach the services, not only the 404s."""
    names = {p.name for p in operation.path_parameters}
    aimed = {name: value for name, value in known.items() if name in names}
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        cases = operation.as_strategy(generation_mode=mode)
        if aimed:
            cases = cases | operation.as_strategy(generation_mode=mode, path_parameters=aimed)

        @settings(max_examples=EXAMPLES, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=cases, data=st.data())
        def run(case: Any, data: st.DataObject) -> None:
            hostile = data.draw(st.booleans(), label="hostile")
            response = _send(client, auth, case, data if hostile else None)
            assert_sound(response, f"{case.method} {case.operation.path}", errors)

        try:
            run()
        except Unsatisfiable:  # nothing to make invalid (an operation without parameters)
            assert mode is GenerationMode.NEGATIVE


@pytest.mark.filterwarnings("ignore:Generating overly large repr")
def test_admin_api_never_fails_on_generated_requests(api: Api,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    client, auth = api
    [account] = client.get("/api/tenants/hospital/users", headers=auth).json()
    known = {"tenant": "hospital", "connection": "idp", "account_id": account["id"],
             "role": "nurse", "request_id": "1", "link_id": "1", "delivery_id": "1",
             "device_id": "1", "passkey_id": "1"}
    document = client.get("/openapi.json", headers=auth)
    assert document.status_code == 200
    schema = schemathesis.openapi.from_dict(document.json(), config=CONFIG)
    errors = ErrorLog(caplog)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 30
    with caplog.at_level(logging.ERROR):
        errors.probe()
        for operation in operations:
            _fuzz_operation(client, auth, operation, known, errors)
    # the tenants still read, whatever the fuzzer stored
    tenants = client.get("/api/tenants", headers=auth)
    assert_sound(tenants, "GET /api/tenants", errors, ok=True)
    for tenant in tenants.json():
        slug = quote(tenant["slug"], safe="")
        for path in ("users", "access-review", "grants", "approvals", "links", "webhooks",
                     "webhook-deliveries", "devices"):
            assert_sound(client.get(f"/api/tenants/{slug}/{path}", headers=auth),
                         f"GET /api/tenants/{{tenant}}/{path}", errors, ok=True)
    for path in ("/api/connections", "/api/audit/verify", "/api/audit/export"):
        assert_sound(client.get(path, headers=auth), f"GET {path}", errors, ok=True)
