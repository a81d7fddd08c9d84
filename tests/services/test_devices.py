"""Shared devices: enrolment, switch user, idle lock, shift boundaries, revocation."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from jitprov.core.errors import InvalidInput
from jitprov.protocols.webauthn import RelyingParty
from jitprov.services import audit_export, devices, passkeys
from jitprov.services.context import ServiceContext
from jitprov.services.devices import FrontlinePolicy, next_shift_boundary
from jitprov.services.sessions import current_session
from jitprov.store.devices import DeviceRecord
from jitprov.store.unit_of_work import UnitOfWork
from jitprov.testing.authenticator import SoftAuthenticator
from jitprov.testing.builders import setup_connection
from tests.conftest import TEST_SECRET_KEY, Clock
from tests.services.test_passkeys import enrolled

RP = RelyingParty.from_base_url("http://testserver")


def kiosk(ctx: ServiceContext, **policy: object) -> DeviceRecord:
    if policy:
        devices.set_policy(ctx, "hospital", FrontlinePolicy(**policy))  # type: ignore[arg-type]
    registered = devices.register_device(ctx, "hospital", name="Ward 3 station",
                                         location="Ward 3")
    device, _credential = devices.enrol_device(ctx, registered.code)
    return device


def tap(ctx: ServiceContext, device: DeviceRecord, authenticator: SoftAuthenticator,
        previous: str | None = None) -> passkeys.PasskeyLogin:
    options = passkeys.begin_authentication(ctx, RP, device)
    return passkeys.finish_authentication(ctx, RP, authenticator.authenticate(options),
                                          device=device, previous_session=previous)


def event_types(ctx: ServiceContext) -> list[str]:
    return [e.type for e in audit_export.iter_events(ctx, "hospital")]


def test_an_enrolment_code_works_once_and_the_credential_names_the_device(
        ctx: ServiceContext) -> None:
    setup_connection(ctx)
    registered = devices.register_device(ctx, "hospital", name="Ward 3 station",
                                         location="Ward 3")
    assert devices.enrolment_of(ctx, registered.code) is not None

    device, credential = devices.enrol_device(ctx, registered.code)

    assert devices.device_of(ctx, credential) == device
    assert (device.name, device.location, device.enrolled) == ("Ward 3 station", "Ward 3", True)
    with pytest.raises(InvalidInput, match="already used"):
        devices.enrol_device(ctx, registered.code)
    assert devices.device_of(ctx, "kiosk-forged") is None
    assert {"device.registered", "device.enrolled"} <= set(event_types(ctx))
    assert "code=<hidden>" in repr(registered)


def test_an_enrolment_code_expires_after_a_day(ctx: ServiceContext, clock: Clock) -> None:
    setup_connection(ctx)
    registered = devices.register_device(ctx, "hospital", name="K", location="L")
    clock.advance(hours=24, seconds=1)

    with pytest.raises(InvalidInput):
        devices.enrol_device(ctx, registered.code)


def test_switch_user_ends_the_previous_users_session(ctx: ServiceContext) -> None:
    setup_connection(ctx)
    device = kiosk(ctx)
    ana_id, ana_key = enrolled(ctx, "u-1")
    bob_id, bob_key = enrolled(ctx, "u-2", email="bob@hospital.example", name="Bob Reis")
    ana = tap(ctx, device, ana_key)

    bob = tap(ctx, device, bob_key, previous=ana.token)

    assert current_session(ctx, ana.token) is None
    signed_in = current_session(ctx, bob.token)
    assert signed_in is not None and signed_in.view.account.id == bob_id
    assert (bob.switched_from, bob.redirect) == ((ana_id,), "/device")
    [switched] = [e for e in audit_export.iter_events(ctx, "hospital")
                  if e.type == "session.switched"]
    assert (switched.data["previous_accounts"], switched.account_id) == ([ana_id], bob_id)
    with UnitOfWork(ctx.db, readonly=True) as uow:
        assert "session.switched" in [kind for _, kind, _ in uow.outbox.pending(limit=1000)]


def test_switching_ends_the_device_sessions_even_without_their_cookie(
        ctx: ServiceContext) -> None:
    setup_connection(ctx)
    device = kiosk(ctx)
    _, ana_key = enrolled(ctx, "u-1")
    _, bob_key = enrolled(ctx, "u-2", email="bob@hospital.example")
    ana = tap(ctx, device, ana_key)

    tap(ctx, device, bob_key, previous=None)

    assert current_session(ctx, ana.token) is None


def test_a_device_session_locks_after_the_idle_limit(ctx: ServiceContext, clock: Clock) -> None:
    setup_connection(ctx)
    device = kiosk(ctx, idle_seconds=300)
    _, key = enrolled(ctx)
    login = tap(ctx, device, key)
    clock.advance(seconds=200)
    assert current_session(ctx, login.token) is not None  # activity: the clock restarts
    clock.advance(seconds=299)
    assert current_session(ctx, login.token) is not None

    clock.advance(seconds=301)

    assert current_session(ctx, login.token) is None
    view = devices.device_view(ctx, device, login.token)
    assert (view.signed_in, view.locked) == (None, "idle")
    assert event_types(ctx)[-1] == "session.locked"


def test_a_session_without_a_device_has_no_idle_lock(ctx: ServiceContext, clock: Clock) -> None:
    setup_connection(ctx)
    _, key = enrolled(ctx)
    options = passkeys.begin_authentication(ctx, RP)
    login = passkeys.finish_authentication(ctx, RP, key.authenticate(options))
    clock.advance(hours=2)

    assert current_session(ctx, login.token) is not None


def test_a_device_session_ends_at_the_next_shift_boundary(
        ctx: ServiceContext, clock: Clock) -> None:
    setup_connection(ctx)
    clock.now = datetime(2026, 11, 28, 14, 50, tzinfo=UTC)
    device = kiosk(ctx, shifts=("07:00", "15:00", "23:00"), timezone="UTC", idle_seconds=3600)
    _, key = enrolled(ctx)

    login = tap(ctx, device, key)

    assert login.expires_at == datetime(2026, 11, 28, 15, 0, tzinfo=UTC)
    clock.now = datetime(2026, 11, 28, 15, 0, 1, tzinfo=UTC)
    assert current_session(ctx, login.token) is None


@pytest.mark.parametrize(("now", "expected"), [
    (datetime(2026, 11, 28, 6, 59, tzinfo=UTC), datetime(2026, 11, 28, 7, 0, tzinfo=UTC)),
    (datetime(2026, 11, 28, 7, 0, tzinfo=UTC), datetime(2026, 11, 28, 15, 0, tzinfo=UTC)),
    (datetime(2026, 11, 28, 23, 30, tzinfo=UTC), datetime(2026, 11, 29, 7, 0, tzinfo=UTC)),
])
def test_the_next_shift_boundary_is_strictly_after_now(now: datetime,
                                                       expected: datetime) -> None:
    assert next_shift_boundary(now, ["07:00", "15:00", "23:00"], "UTC") == expected


def test_shift_boundaries_are_wall_clock_times_in_the_tenant_time_zone() -> None:
    # Lisbon is UTC+1 in summer: the 07:00 shift starts at 06:00 UTC
    summer = datetime(2026, 7, 1, 5, 0, tzinfo=UTC)
    assert next_shift_boundary(summer, ["07:00"], "Europe/Lisbon") == \
        datetime(2026, 7, 1, 6, 0, tzinfo=UTC)
    assert next_shift_boundary(summer, [], "UTC") is None


def test_a_bad_policy_is_refused_with_the_field() -> None:
    with pytest.raises(InvalidInput, match="HH:MM"):
        devices.check_policy(FrontlinePolicy(shifts=("7h",)))
    with pytest.raises(InvalidInput, match="time zone"):
        devices.check_policy(FrontlinePolicy(timezone="Mars/Olympus"))


def test_a_passkey_of_another_tenant_is_refused_on_the_device(ctx: ServiceContext) -> None:
    setup_connection(ctx)
    setup_connection(ctx, tenant="clinic", slug="clinic-idp")
    device = kiosk(ctx)
    from jitprov.services.login.flow import provision_on_login
    from jitprov.testing.builders import nurse

    result = provision_on_login(ctx, "clinic-idp", nurse("c-1"))
    key = SoftAuthenticator()
    options = passkeys.begin_registration(ctx, RP, result.session_token)
    passkeys.finish_registration(ctx, RP, result.session_token, key.register(options))

    with pytest.raises(passkeys.PasskeyRefused) as refused:
        tap(ctx, device, key)

    assert refused.value.code == "wrong_tenant"


def test_revoking_a_device_ends_its_sessions_and_its_credential(ctx: ServiceContext) -> None:
    setup_connection(ctx)
    registered = devices.register_device(ctx, "hospital", name="K", location="L")
    device, credential = devices.enrol_device(ctx, registered.code)
    _, key = enrolled(ctx)
    login = tap(ctx, device, key)

    assert devices.revoke_device(ctx, device.id, actor="cli:alice") == 1

    assert current_session(ctx, login.token) is None
    assert devices.device_of(ctx, credential) is None
    assert "device.revoked" in event_types(ctx)


def test_an_sso_session_on_the_device_is_adopted_with_its_limits(
        ctx: ServiceContext, clock: Clock) -> None:
    setup_connection(ctx)
    device = kiosk(ctx, idle_seconds=60)
    from jitprov.services.login.flow import provision_on_login
    from jitprov.testing.builders import nurse

    token = provision_on_login(ctx, "idp", nurse()).session_token

    view = devices.device_view(ctx, device, token)

    assert view.signed_in is not None and view.signed_in.device_id == device.id
    clock.advance(seconds=61)
    assert current_session(ctx, token) is None
    assert timedelta(seconds=60) == timedelta(seconds=devices.get_policy(
        ctx, "hospital").idle_seconds)


def test_the_cli_registers_devices_sets_the_policy_and_revokes_passkeys(
        capsys: pytest.CaptureFixture[str], tmp_path: object, database_url: str,
        monkeypatch: pytest.MonkeyPatch, ctx: ServiceContext) -> None:
    from jitprov.cli.main import main

    def run(*argv: str) -> tuple[int, str, str]:
        with pytest.raises(SystemExit) as exited:
            main(list(argv))
        out, err = capsys.readouterr()
        code = exited.value.code
        return (code if isinstance(code, int) else 0), out, err

    monkeypatch.setenv("JITPROV_DATABASE_URL", database_url)
    monkeypatch.setenv("JITPROV_SECRET_KEY", TEST_SECRET_KEY)
    monkeypatch.setenv("JITPROV_BASE_URL", "http://127.0.0.1:8000")
    setup_connection(ctx)
    account_id, _ = enrolled(ctx)

    code, out, _ = run("device", "register", "--tenant", "hospital", "--name", "Ward 3",
                       "--location", "St Mary's")
    assert code == 0
    assert "http://localhost:8000/device/enrol?code=dev-" in out  # passkeys need a domain
    code, out, _ = run("device", "set-policy", "--tenant", "hospital", "--shifts",
                       "07:00,19:00", "--timezone", "Europe/Lisbon")
    assert code == 0
    assert devices.get_policy(ctx, "hospital").shifts == ("07:00", "19:00")
    code, _, err = run("device", "set-policy", "--tenant", "hospital", "--shifts", "7am")
    assert (code, err.startswith("error: shift boundary")) == (2, True)
    code, out, _ = run("passkey", "list", "--account", account_id, "--json")
    [listed] = json.loads(out)
    passkey_id = str(listed["id"])
    assert (code, "badge" in listed["name"], listed["state"]) == (0, True, "active")
    code, out, _ = run("passkey", "revoke", passkey_id)
    assert code == 0 and passkeys.list_passkeys(ctx, account_id) == []
    code, out, _ = run("device", "list", "--tenant", "hospital")
    assert out.split("\n")[1].split()[1:6] == ["Ward", "3", "St", "Mary's", "waiting"]
