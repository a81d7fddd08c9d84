"""An admin deactivates: sessions end at once, JIT never resurrects, reactivation is explicit."""

from __future__ import annotations

import pytest

from jitprov.core.errors import InvalidInput
from jitprov.core.provisioning import NoChange
from jitprov.services import accounts, audit_export
from jitprov.services.common import LoginRefused
from jitprov.services.context import ServiceContext
from jitprov.services.login.flow import provision_on_login
from jitprov.services.sessions import current_session
from jitprov.store.unit_of_work import UnitOfWork
from jitprov.testing.builders import nurse, setup_connection


def test_deactivation_revokes_sessions_and_refuses_logins_until_reactivated(
        ctx: ServiceContext) -> None:
    setup_connection(ctx)
    first = provision_on_login(ctx, "idp", nurse())
    second = provision_on_login(ctx, "idp", nurse())
    change = accounts.set_account_status(ctx, first.account_id, "deactivated",
                                      reason="left the hospital")
    assert change.sessions_revoked == 2
    assert current_session(ctx, first.session_token) is None
    assert current_session(ctx, second.session_token) is None
    with pytest.raises(LoginRefused) as refused:
        provision_on_login(ctx, "idp", nurse())
    assert refused.value.code == "account_inactive"

    accounts.set_account_status(ctx, first.account_id, "active", reason="rehired")
    again = provision_on_login(ctx, "idp", nurse())
    assert isinstance(again.decision, NoChange)
    assert again.account_id == first.account_id

    types = [e.type for e in audit_export.iter_events(ctx, "hospital")]
    assert "account.deactivated" in types
    assert "account.reactivated" in types
    with UnitOfWork(ctx.db, readonly=True) as uow:
        announced = [kind for _, kind, _ in uow.outbox.pending()]
    assert announced == ["account.created", "role.granted", "role.granted",
                         "account.deactivated", "account.reactivated"]


def test_status_change_needs_a_reason_and_a_real_change(ctx: ServiceContext) -> None:
    setup_connection(ctx)
    account_id = provision_on_login(ctx, "idp", nurse()).account_id
    with pytest.raises(InvalidInput):
        accounts.set_account_status(ctx, account_id, "deactivated", reason="  ")
    with pytest.raises(InvalidInput):
        accounts.set_account_status(ctx, account_id, "active", reason="already")


def test_deactivation_records_its_trigger_to_revocation_time(ctx: ServiceContext) -> None:
    from jitprov.services import metrics

    setup_connection(ctx)
    account_id = provision_on_login(ctx, "idp", nurse()).account_id
    before = metrics.REGISTRY.get_sample_value("jitprov_revocation_seconds_count") or 0
    accounts.set_account_status(ctx, account_id, "deactivated", reason="left")
    [event] = [e for e in audit_export.iter_events(ctx, "hospital")
               if e.type == "account.deactivated"]
    assert 0 < float(event.data["revocation_ms"]) < 1000  # type: ignore[arg-type]
    assert metrics.REGISTRY.get_sample_value("jitprov_revocation_seconds_count") == before + 1
