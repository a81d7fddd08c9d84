"""SCIM Users on the accounts JIT login writes: one account, one audit log, one outbox."""

from __future__ import annotations

import pytest

from jitprov.core.provisioning import Link, NoChange
from jitprov.protocols.scim import errors as e
from jitprov.services import admin
from jitprov.services.common import LoginRefused
from jitprov.services.context import ServiceContext
from jitprov.services.login.flow import provision_on_login
from jitprov.services.scim import tokens as scim_tokens
from jitprov.services.scim import users as scim_users
from jitprov.services.sessions import current_session
from jitprov.testing.builders import nurse, setup_connection
from tests.services.scim.helpers import (
    BASE,
    audit_types,
    outbox,
    patch,
    scim_client,
    user,
)

MAPPING = "profile: {email: email}\nroles: {default: [staff]}\n"


def test_a_scim_created_user_is_the_account_of_its_first_sso_login(ctx: ServiceContext) -> None:
    principal = scim_client(ctx, connection="idp")
    created = scim_users.create_user(ctx, principal, BASE, user(externalId="u-1"))
    assert created.body is not None
    login = provision_on_login(ctx, "idp", nurse(subject="u-1"))
    assert isinstance(login.decision, Link)
    assert login.account_id == created.body["id"]
    again = provision_on_login(ctx, "idp", nurse(subject="u-1"))
    assert again.account_id == created.body["id"]
    assert isinstance(again.decision, NoChange | type(again.decision))


@pytest.mark.parametrize("rebinder", [None, "other"])
def test_another_client_cannot_point_a_connections_logins_at_an_account(
        ctx: ServiceContext, rebinder: str | None) -> None:
    # the account's externalId names subjects of the connection bound to the client that
    # wrote it: a client bound to another connection (or to none) that rewrites it does not
    # make the first connection's login with that subject land in this account
    owner = scim_client(ctx, connection="idp")
    admin.add_mock_connection(ctx, tenant="hospital", slug="other", mapping=MAPPING,
                              mapping_source="m.yaml")
    other = scim_client(ctx, name="rogue", connection=rebinder, setup=False)
    created = scim_users.create_user(ctx, owner, BASE, user(externalId="u-1"))
    assert created.body is not None
    victim = created.body["id"]
    scim_users.patch_user(ctx, other, BASE, victim, patch(
        {"op": "replace", "path": "externalId", "value": "attacker-sub"}))

    login = provision_on_login(ctx, "idp", nurse(subject="attacker-sub",
                                                 email="mallory@x.example"))

    assert login.account_id != victim
    if rebinder == "other":  # the rewriter's own connection now links to it
        assert provision_on_login(ctx, "other", nurse(subject="attacker-sub",
                                                      email="m2@x.example")).account_id == victim


def test_create_is_audited_and_announced_with_the_token_as_actor(ctx: ServiceContext) -> None:
    principal = scim_client(ctx, name="entra-prod")
    scim_users.create_user(ctx, principal, BASE, user())
    assert ("account.created", "scim:entra-prod") in audit_types(ctx)
    assert outbox(ctx)[-1] == "account.created"


def test_active_false_revokes_every_session_at_once(ctx: ServiceContext) -> None:
    principal = scim_client(ctx)
    user_id = scim_users.create_user(ctx, principal, BASE, user()).body["id"]  # type: ignore[index]
    first = provision_on_login(ctx, "idp", nurse(subject="u-1"))
    second = provision_on_login(ctx, "idp", nurse(subject="u-1"))
    rendered = scim_users.patch_user(ctx, principal, BASE, user_id, patch(
        {"op": "Replace", "path": "active", "value": "False"}))
    assert rendered.body is not None and rendered.body["active"] is False
    assert current_session(ctx, first.session_token) is None
    assert current_session(ctx, second.session_token) is None
    with pytest.raises(LoginRefused):
        provision_on_login(ctx, "idp", nurse(subject="u-1"))
    events = [t for t, _ in audit_types(ctx)]
    assert "account.deactivated" in events
    assert outbox(ctx)[-1] == "account.deactivated"


def test_deactivation_records_the_revocation_time(ctx: ServiceContext) -> None:
    from jitprov.services import audit_export

    principal = scim_client(ctx)
    user_id = scim_users.create_user(ctx, principal, BASE, user()).body["id"]  # type: ignore[index]
    scim_users.replace_user(ctx, principal, BASE, user_id, user(active=False))
    event = [ev for ev in audit_export.iter_events(ctx, "hospital")
             if ev.type == "account.deactivated"][-1]
    assert event.actor == "scim:entra"
    assert event.data["revocation_ms"] >= 0


def test_a_deactivation_is_never_refused_for_another_attribute(ctx: ServiceContext) -> None:
    principal = scim_client(ctx)
    user_id = scim_users.create_user(ctx, principal, BASE, user()).body["id"]  # type: ignore[index]
    rendered = scim_users.replace_user(ctx, principal, BASE, user_id, {
        **user(), "active": "False", "emails": [{"value": "not an email"}]})
    assert rendered.body is not None and rendered.body["active"] is False
    assert rendered.body["emails"][0]["value"] == "ana@hospital.example"  # the rest refused
    patched = scim_users.patch_user(ctx, principal, BASE, user_id, patch(
        {"op": "replace", "path": "active", "value": False},
        {"op": "replace", "path": "shoeSize", "value": 44}))
    assert patched.body is not None and patched.body["active"] is False


def test_if_match_still_applies_to_a_deactivation(ctx: ServiceContext) -> None:
    principal = scim_client(ctx)
    user_id = scim_users.create_user(ctx, principal, BASE, user()).body["id"]  # type: ignore[index]
    with pytest.raises(e.PreconditionFailed):
        scim_users.replace_user(ctx, principal, BASE, user_id, user(active=False),
                                if_match='W/"9"')
    rendered = scim_users.replace_user(ctx, principal, BASE, user_id, user(active=False),
                                       if_match='W/"1"')
    assert rendered.body is not None and rendered.body["active"] is False


def test_reactivation_is_explicit_and_audited(ctx: ServiceContext) -> None:
    principal = scim_client(ctx)
    user_id = scim_users.create_user(ctx, principal, BASE, user()).body["id"]  # type: ignore[index]
    scim_users.replace_user(ctx, principal, BASE, user_id, user(active=False))
    body = {k: v for k, v in user().items() if k != "active"}
    assert scim_users.replace_user(ctx, principal, BASE, user_id,
                                   body).body["active"] is False  # type: ignore[index]
    assert scim_users.replace_user(ctx, principal, BASE, user_id,
                                   user(active=True)).body["active"] is True  # type: ignore[index]
    assert ("account.reactivated", "scim:entra") in audit_types(ctx)


def test_delete_deactivates_by_default_and_the_user_is_gone_for_scim(
        ctx: ServiceContext) -> None:
    principal = scim_client(ctx)
    user_id = scim_users.create_user(ctx, principal, BASE, user()).body["id"]  # type: ignore[index]
    scim_users.delete_user(ctx, principal, user_id)
    with pytest.raises(e.NotFound):
        scim_users.get_user(ctx, principal, BASE, user_id)
    [kept] = admin.list_accounts(ctx, "hospital")
    assert (kept.account.id, kept.account.status) == (user_id, "deactivated")
    assert ["account.deactivated", "account.scim_deleted"] == [
        t for t, _ in audit_types(ctx) if t.startswith("account.")][-2:]


def test_delete_erases_when_the_tenant_says_so(ctx: ServiceContext) -> None:
    principal = scim_client(ctx)
    scim_tokens.set_scim_policy(ctx, "hospital", delete="erase")
    user_id = scim_users.create_user(ctx, principal, BASE, user()).body["id"]  # type: ignore[index]
    session = provision_on_login(ctx, "idp", nurse(subject="u-1")).session_token
    scim_users.delete_user(ctx, principal, user_id)
    with pytest.raises(e.NotFound):
        scim_users.get_user(ctx, principal, BASE, user_id)
    assert current_session(ctx, session) is None
    assert "account.deleted" in [t for t, _ in audit_types(ctx)]
    assert outbox(ctx)[-1] == "account.deleted"


def test_post_of_a_jit_account_is_a_uniqueness_conflict_by_default(ctx: ServiceContext) -> None:
    setup_connection(ctx)
    jit = provision_on_login(ctx, "idp", nurse(subject="idp-sub"))
    principal = scim_client(ctx, setup=False)
    with pytest.raises(e.Uniqueness):
        scim_users.create_user(ctx, principal, BASE, user("ana@hospital.example"))
    with pytest.raises(e.Uniqueness):  # the same person by email, under another userName
        scim_users.create_user(ctx, principal, BASE, user(
            "ana.lima", emails=[{"value": "ana@hospital.example", "primary": True}]))
    found = scim_users.query_users(ctx, principal, BASE,
                                   filter_text='userName eq "ana@hospital.example"')
    assert [r["id"] for r in found["Resources"]] == [jit.account_id]


def test_post_adopts_a_jit_account_when_the_tenant_says_so(ctx: ServiceContext) -> None:
    setup_connection(ctx)
    jit = provision_on_login(ctx, "idp", nurse(subject="idp-sub"))
    scim_tokens.set_scim_policy(ctx, "hospital", on_existing="adopt")
    principal = scim_client(ctx, setup=False)
    adopted = scim_users.create_user(ctx, principal, BASE, user(
        "ana.lima", emails=[{"value": "ana@hospital.example", "primary": True}]))
    assert adopted.body is not None and adopted.body["id"] == jit.account_id
    assert adopted.body["userName"] == "ana.lima"
    with pytest.raises(e.Uniqueness):  # a SCIM-named account is never adopted twice
        scim_users.create_user(ctx, principal, BASE, user(
            "ana.lima", emails=[{"value": "ana@hospital.example", "primary": True}]))
    again = provision_on_login(ctx, "idp", nurse(subject="idp-sub"))
    assert again.account_id == jit.account_id


def test_users_are_isolated_by_tenant(ctx: ServiceContext) -> None:
    from jitprov.services import admin

    principal = scim_client(ctx)
    user_id = scim_users.create_user(ctx, principal, BASE, user()).body["id"]  # type: ignore[index]
    admin.create_tenant(ctx, "clinic")
    token = scim_tokens.create_token(ctx, "clinic", "okta")[1]
    other = scim_tokens.authenticate(ctx, "clinic", token)
    assert other is not None
    with pytest.raises(e.NotFound):
        scim_users.get_user(ctx, other, BASE, user_id)
    assert scim_users.query_users(ctx, other, BASE, filter_text=None)["totalResults"] == 0


def test_patch_validates_the_result_like_a_put(ctx: ServiceContext) -> None:
    principal = scim_client(ctx)
    user_id = scim_users.create_user(ctx, principal, BASE, user()).body["id"]  # type: ignore[index]
    with pytest.raises(e.InvalidValue):
        scim_users.patch_user(ctx, principal, BASE, user_id, patch(
            {"op": "add", "path": "emails", "value": [{"value": "nope"}]}))
    with pytest.raises(e.Uniqueness):
        other = scim_users.create_user(ctx, principal, BASE, user("bob@x.example",
                                                                   externalId="u-2"))
        assert other.body is not None
        scim_users.patch_user(ctx, principal, BASE, other.body["id"], patch(
            {"op": "replace", "path": "userName", "value": "ANA@hospital.example"}))


def test_bad_filters_are_invalidfilter(ctx: ServiceContext) -> None:
    principal = scim_client(ctx)
    for text in ('userName eq', 'shoeSize eq "42"', 'userName zz "a"'):
        with pytest.raises(e.InvalidFilter):
            scim_users.query_users(ctx, principal, BASE, filter_text=text)
