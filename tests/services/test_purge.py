"""The purge job removes only what has expired."""

from __future__ import annotations

from jitprov.jobs.purge import purge_expired
from jitprov.services.context import ServiceContext
from jitprov.services.login.flow import provision_on_login
from jitprov.services.login.kinds import start_login
from jitprov.services.login.state import LoginState
from jitprov.services.sessions import current_session
from jitprov.testing.builders import nurse, setup_connection
from tests.conftest import Clock


def test_purge_removes_long_expired_sessions_and_stale_login_requests(
        ctx: ServiceContext, clock: Clock) -> None:
    setup_connection(ctx)
    started = start_login(ctx, "idp", "/", base_url="https://jitprov.test", dev_mode=True)
    old = provision_on_login(ctx, "idp", nurse(subject="old"),  # spends the login request
                             login=LoginState(started.state, started.cookie))
    clock.advance(days=8)
    fresh = provision_on_login(ctx, "idp", nurse(subject="new", email="new@h.example"))
    assert purge_expired(ctx) == (1, 1)
    assert current_session(ctx, fresh.session_token) is not None
    assert current_session(ctx, old.session_token) is None
    assert purge_expired(ctx) == (0, 0)
