"""Passkeys: enrolment after an SSO login, username-less sign-in, the account check at every
sign-in, counters and backup flags, role freshness and the offline sign-in."""

from __future__ import annotations

from datetime import timedelta

import pytest

from jitprov.protocols.webauthn import RelyingParty
from jitprov.services import accounts, admin, audit_export, passkeys
from jitprov.services.context import ServiceContext
from jitprov.services.login.flow import provision_on_login
from jitprov.services.passkeys import PasskeyRefused
from jitprov.services.sessions import current_session
from jitprov.store.unit_of_work import UnitOfWork
from jitprov.testing.authenticator import SoftAuthenticator
from jitprov.testing.builders import nurse, setup_connection
from tests.conftest import Clock

RP = RelyingParty.from_base_url("http://testserver")


def idp_reachable(ctx: ServiceContext, connection: str) -> bool:
    """What the connection health reads now (the passkey sign-in's view of the IdP)."""
    with UnitOfWork(ctx.db, readonly=True) as uow:
        return uow.devices.health.get(uow.config.connections.get(connection).id).reachable


def sso_login(ctx: ServiceContext, subject: str = "u-1", **claims: object) -> tuple[str, str]:
    result = provision_on_login(ctx, "idp", nurse(subject, **claims))
    assert result.session_token is not None
    return result.account_id, result.session_token


def enrolled(ctx: ServiceContext, subject: str = "u-1", **claims: object,
             ) -> tuple[str, SoftAuthenticator]:
    account_id, token = sso_login(ctx, subject, **claims)
    authenticator = SoftAuthenticator()
    options = passkeys.begin_registration(ctx, RP, token)
    passkeys.finish_registration(ctx, RP, token, authenticator.register(options), name="badge")
    return account_id, authenticator


def sign_in(ctx: ServiceContext, authenticator: SoftAuthenticator,
            **kwargs: object) -> passkeys.PasskeyLogin:
    options = passkeys.begin_authentication(ctx, RP)
    return passkeys.finish_authentication(ctx, RP, authenticator.authenticate(options),
                                          **kwargs)  # type: ignore[arg-type]


def event_types(ctx: ServiceContext) -> list[str]:
    return [e.type for e in audit_export.iter_events(ctx, "hospital")]


def outbox_types(ctx: ServiceContext) -> list[str]:
    with UnitOfWork(ctx.db, readonly=True) as uow:
        return [kind for _, kind, _ in uow.outbox.pending(limit=1000)]


def test_a_passkey_enrolled_after_sso_signs_the_same_account_in(ctx: ServiceContext) -> None:
    setup_connection(ctx)
    account_id, authenticator = enrolled(ctx)

    login = sign_in(ctx, authenticator, return_to="/me")

    assert (login.account_id, login.redirect, login.offline) == (account_id, "/me", False)
    me = current_session(ctx, login.token)
    assert me is not None
    assert (me.view.account.id, me.method, me.as_me()["roles"]) == (
        account_id, "passkey", ["nurse", "staff"])
    [stored] = passkeys.list_passkeys(ctx, account_id)
    assert (stored.name, stored.sign_count, stored.last_used_at is not None) == ("badge", 1, True)
    assert {"passkey.registered", "login.passkey"} <= set(event_types(ctx))
    assert "passkey.registered" in outbox_types(ctx)


def test_a_challenge_is_single_use(ctx: ServiceContext) -> None:
    setup_connection(ctx)
    _, authenticator = enrolled(ctx)
    options = passkeys.begin_authentication(ctx, RP)
    answer = authenticator.authenticate(options)
    passkeys.finish_authentication(ctx, RP, answer)

    with pytest.raises(PasskeyRefused) as refused:
        passkeys.finish_authentication(ctx, RP, answer)

    assert refused.value.code == "challenge_expired"


def test_a_challenge_expires_after_five_minutes(ctx: ServiceContext, clock: Clock) -> None:
    setup_connection(ctx)
    _, authenticator = enrolled(ctx)
    options = passkeys.begin_authentication(ctx, RP)
    clock.advance(minutes=5, seconds=1)

    with pytest.raises(PasskeyRefused) as refused:
        passkeys.finish_authentication(ctx, RP, authenticator.authenticate(options))

    assert refused.value.code == "challenge_expired"


@pytest.mark.parametrize(("tamper", "code"), [
    ({"origin": "https://evil.example"}, "wrong_origin"),
    ({"rp_id": "evil.example"}, "wrong_rp_id"),
])
def test_an_answer_for_another_origin_or_rp_is_refused_and_audited(
        ctx: ServiceContext, tamper: dict[str, str], code: str) -> None:
    setup_connection(ctx)
    _, authenticator = enrolled(ctx)
    options = passkeys.begin_authentication(ctx, RP)

    with pytest.raises(PasskeyRefused) as refused:
        passkeys.finish_authentication(ctx, RP, authenticator.authenticate(options, **tamper))

    assert refused.value.code == code
    assert event_types(ctx)[-1] == "login.failed"


def test_a_counter_that_goes_back_is_refused_as_a_clone(ctx: ServiceContext) -> None:
    setup_connection(ctx)
    _, authenticator = enrolled(ctx)
    sign_in(ctx, authenticator)
    sign_in(ctx, authenticator)
    options = passkeys.begin_authentication(ctx, RP)

    with pytest.raises(PasskeyRefused) as refused:
        passkeys.finish_authentication(ctx, RP, authenticator.authenticate(options, sign_count=1))

    assert refused.value.code == "counter_regression"
    assert event_types(ctx)[-1] == "login.failed"


def test_a_changed_backup_eligibility_is_refused(ctx: ServiceContext) -> None:
    setup_connection(ctx)
    _, authenticator = enrolled(ctx)
    authenticator.backup_eligible = True

    with pytest.raises(PasskeyRefused) as refused:
        sign_in(ctx, authenticator)

    assert refused.value.code == "backup_flags"


def test_the_backup_state_is_recorded(ctx: ServiceContext) -> None:
    setup_connection(ctx)
    account_id, token = sso_login(ctx)
    authenticator = SoftAuthenticator(backup_eligible=True)
    options = passkeys.begin_registration(ctx, RP, token)
    passkeys.finish_registration(ctx, RP, token, authenticator.register(options))
    authenticator.backup_state = True

    sign_in(ctx, authenticator)

    [stored] = passkeys.list_passkeys(ctx, account_id)
    assert (stored.backup_eligible, stored.backup_state) == (True, True)


def test_a_user_handle_of_another_account_is_refused(ctx: ServiceContext) -> None:
    setup_connection(ctx)
    _, authenticator = enrolled(ctx)
    options = passkeys.begin_authentication(ctx, RP)

    with pytest.raises(PasskeyRefused) as refused:
        passkeys.finish_authentication(ctx, RP, authenticator.authenticate(
            options, user_handle=b"someone-else"))

    assert refused.value.code == "wrong_user_handle"


def test_a_sign_in_without_a_user_handle_is_refused(ctx: ServiceContext) -> None:
    # username-less: nobody was identified before the ceremony (WebAuthn L3 section 7.2 step 6)
    setup_connection(ctx)
    _, authenticator = enrolled(ctx)
    answer = authenticator.authenticate(passkeys.begin_authentication(ctx, RP))
    answer["response"].pop("userHandle", None)

    with pytest.raises(PasskeyRefused) as refused:
        passkeys.finish_authentication(ctx, RP, answer)

    assert refused.value.code == "wrong_user_handle"


def test_a_deactivated_account_cannot_sign_in_with_its_passkey(ctx: ServiceContext) -> None:
    setup_connection(ctx)
    account_id, authenticator = enrolled(ctx)
    accounts.set_account_status(ctx, account_id, "deactivated", reason="left the hospital")

    with pytest.raises(PasskeyRefused) as refused:
        sign_in(ctx, authenticator)

    assert (refused.value.code, refused.value.status) == ("account_inactive", 403)
    assert event_types(ctx)[-1] == "login.denied"


def test_a_revoked_passkey_no_longer_signs_in_and_its_sessions_end(
        ctx: ServiceContext) -> None:
    setup_connection(ctx)
    account_id, authenticator = enrolled(ctx)
    opened = sign_in(ctx, authenticator)
    [stored] = passkeys.list_passkeys(ctx, account_id)
    passkeys.revoke_passkey(ctx, stored.id, actor="cli:alice")

    assert current_session(ctx, opened.token) is None

    with pytest.raises(PasskeyRefused) as refused:
        sign_in(ctx, authenticator)

    assert refused.value.code == "unknown_passkey"
    assert passkeys.list_passkeys(ctx, account_id) == []
    assert "passkey.revoked" in event_types(ctx) and "passkey.revoked" in outbox_types(ctx)


def test_passkey_sign_in_never_creates_an_account(ctx: ServiceContext) -> None:
    setup_connection(ctx)
    stranger = SoftAuthenticator()
    stranger.user_handle = b"not-an-account"

    with pytest.raises(PasskeyRefused) as refused:
        sign_in(ctx, stranger)

    assert refused.value.code == "unknown_passkey"
    assert admin.list_accounts(ctx, "hospital") == []


def test_enrolment_needs_an_idp_session_not_a_passkey_one(ctx: ServiceContext) -> None:
    setup_connection(ctx)
    _, authenticator = enrolled(ctx)
    login = sign_in(ctx, authenticator)

    with pytest.raises(PasskeyRefused) as refused:
        passkeys.begin_registration(ctx, RP, login.token)

    assert refused.value.code == "fresh_login_required"
    with pytest.raises(PasskeyRefused) as anonymous:
        passkeys.begin_registration(ctx, RP, None)
    assert anonymous.value.status == 401


def test_a_registration_challenge_belongs_to_the_account_that_asked(
        ctx: ServiceContext) -> None:
    setup_connection(ctx)
    _, ana = sso_login(ctx)
    _, bob = sso_login(ctx, "u-2", email="bob@hospital.example")
    options = passkeys.begin_registration(ctx, RP, ana)

    with pytest.raises(PasskeyRefused) as refused:
        passkeys.finish_registration(ctx, RP, bob, SoftAuthenticator().register(options))

    assert refused.value.code == "challenge_expired"


def test_stale_roles_step_up_to_the_idp_instead_of_signing_in(
        ctx: ServiceContext, clock: Clock) -> None:
    setup_connection(ctx)
    _, authenticator = enrolled(ctx)
    clock.advance(days=7, seconds=1)  # the default roles_max_age

    login = sign_in(ctx, authenticator, return_to="/me")

    assert login.token is None
    assert login.redirect == "/sso/idp/login?return_to=%2Fme"
    assert event_types(ctx)[-1] == "login.step_up"


def test_an_sso_login_makes_roles_fresh_again(ctx: ServiceContext, clock: Clock) -> None:
    setup_connection(ctx)
    _, authenticator = enrolled(ctx)
    clock.advance(days=8)
    sso_login(ctx)

    assert sign_in(ctx, authenticator).token is not None


def test_with_the_idp_down_a_fresh_account_signs_in_offline_for_a_short_while(
        ctx: ServiceContext, clock: Clock) -> None:
    setup_connection(ctx)
    account_id, authenticator = enrolled(ctx)
    clock.advance(hours=1)
    passkeys.record_idp_health(ctx, "idp", ok=False, error="discovery: connect timeout")

    login = sign_in(ctx, authenticator)

    assert (login.offline, login.expires_at) == (True, clock.now + timedelta(minutes=30))
    me = current_session(ctx, login.token)
    assert me is not None and (me.offline, me.method) == (True, "offline")
    assert event_types(ctx)[-1] == "login.offline"
    assert "login.offline" in outbox_types(ctx)
    # the IdP answers again: the offline session must go back through it
    clock.advance(minutes=1)
    passkeys.record_idp_health(ctx, "idp", ok=True)
    assert current_session(ctx, login.token) is None
    assert admin.list_accounts(ctx, "hospital")[0].account.id == account_id


def test_with_the_idp_down_stale_roles_are_refused(ctx: ServiceContext, clock: Clock) -> None:
    setup_connection(ctx)
    _, authenticator = enrolled(ctx)
    clock.advance(days=8)
    passkeys.record_idp_health(ctx, "idp", ok=False)

    with pytest.raises(PasskeyRefused) as refused:
        sign_in(ctx, authenticator)

    assert refused.value.code == "roles_stale_offline"


def test_the_probe_records_an_unreachable_oidc_idp_and_its_return(
        ctx: ServiceContext, clock: Clock) -> None:
    import httpx

    from jitprov.testing.builders import HOSPITAL

    up = {"value": False}

    def idp(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/.well-known/openid-configuration"
        if not up["value"]:
            raise httpx.ConnectTimeout("timed out", request=request)
        return httpx.Response(200, json={"issuer": "https://idp.example"})

    ctx.http = httpx.Client(transport=httpx.MockTransport(idp))
    admin.create_tenant(ctx, "hospital")
    admin.add_oidc_connection(ctx, tenant="hospital", slug="okta",
                              config={"issuer": "https://idp.example", "client_id": "c"},
                              client_secret="s", mapping=HOSPITAL.format(linking="never"),
                              mapping_source="h.yaml", check_provider=False)

    assert passkeys.probe_idps(ctx) == {"okta": False}
    assert idp_reachable(ctx, "okta") is False
    up["value"] = True
    clock.advance(seconds=30)
    assert passkeys.probe_idps(ctx) == {"okta": True}
    assert idp_reachable(ctx, "okta") is True


def test_a_declared_outage_holds_until_an_admin_ends_it(ctx: ServiceContext,
                                                        clock: Clock) -> None:
    setup_connection(ctx)
    passkeys.record_idp_health(ctx, "idp", ok=False, error="IdP maintenance", actor="cli:ops")
    clock.advance(seconds=30)

    passkeys.record_idp_health(ctx, "idp", ok=True)  # what a probe would record

    assert idp_reachable(ctx, "idp") is False
    clock.advance(seconds=30)
    passkeys.record_idp_health(ctx, "idp", ok=True, actor="cli:ops")
    assert idp_reachable(ctx, "idp") is True
    assert event_types(ctx).count("connection.health_declared") == 2
