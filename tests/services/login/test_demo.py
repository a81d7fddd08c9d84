"""The demo IdP's login through the service path: started by the connection-kind registry,
completed by ``complete_demo_login`` (verify, audit a failure, provision)."""

from __future__ import annotations

import pytest

from jitprov.core.errors import InvalidInput
from jitprov.protocols import mock
from jitprov.services import admin, audit_export
from jitprov.services.context import ServiceContext
from jitprov.services.login.demo import complete_demo_login
from jitprov.services.login.kinds import CONNECTION_KINDS, start_login
from jitprov.testing.builders import nurse, setup_connection

BASE_URL = "http://testserver"
COOKIES: dict[str, str] = {}


def signed(ctx: ServiceContext, state: str, subject: str = "u-1") -> str:
    conn = ctx.connections.get("idp")
    key = ctx.secretbox.open(conn.secrets)["signing_key"]
    return mock.sign_assertion(key=key, issuer=mock.issuer_for(BASE_URL, "idp"),
                               audience="idp", subject=subject,
                               claims=dict(nurse().claims),
                               state=state)


def start(ctx: ServiceContext) -> str:
    """The state of a new login; its binding cookie is kept in ``COOKIES``."""
    started = start_login(ctx, "idp", "/me", base_url=BASE_URL, dev_mode=True)
    assert started.location == f"/dev/idp/idp?state={started.state}"
    COOKIES[started.state] = started.cookie
    return started.state


def failures(ctx: ServiceContext) -> list[object]:
    return [e.data["code"] for e in audit_export.iter_events(ctx, "hospital")
            if e.type == "login.failed"]


def test_the_demo_kind_is_registered_and_dev_only() -> None:
    kind = CONNECTION_KINDS["mock"]
    assert (kind.name, kind.dev_only) == ("mock", True)


def test_a_demo_login_provisions_and_opens_a_session(ctx: ServiceContext) -> None:
    setup_connection(ctx)
    state = start(ctx)
    result = complete_demo_login(ctx, "idp", signed(ctx, state), state, browser=COOKIES[state],
                                 base_url=BASE_URL, dev_mode=True, request_id="req-1")
    assert result.decision.kind == "create"
    assert result.session_token
    assert result.return_to == "/me"


def test_an_invalid_assertion_is_audited_and_spends_nothing(ctx: ServiceContext) -> None:
    setup_connection(ctx)
    state = start(ctx)
    tampered = signed(ctx, state)[:-4] + "AAAA"
    with pytest.raises(InvalidInput):
        complete_demo_login(ctx, "idp", tampered, state, browser=COOKIES[state], base_url=BASE_URL,
                            dev_mode=True, request_id="req-1")
    assert failures(ctx) == ["invalid_response"]
    result = complete_demo_login(ctx, "idp", signed(ctx, state), state, browser=COOKIES[state],
                                 base_url=BASE_URL, dev_mode=True, request_id="req-2")
    assert result.session_token


def test_the_demo_is_refused_outside_dev_mode(ctx: ServiceContext) -> None:
    setup_connection(ctx)
    with pytest.raises(InvalidInput, match="dev-only"):
        start_login(ctx, "idp", "/", base_url=BASE_URL, dev_mode=False)
    state = start(ctx)
    with pytest.raises(InvalidInput, match="dev-only"):
        complete_demo_login(ctx, "idp", signed(ctx, state), state, browser=COOKIES[state],
                            base_url=BASE_URL, dev_mode=False, request_id=None)
    assert admin.list_accounts(ctx, "hospital") == []
