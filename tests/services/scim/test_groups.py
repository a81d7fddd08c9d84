"""SCIM Groups: set-based members, audited and announced in the same transaction."""

from __future__ import annotations

from typing import Any

import pytest

from jitprov.protocols.scim import errors as e
from jitprov.protocols.scim.resources import parse_projection
from jitprov.services import audit_export
from jitprov.services.context import ServiceContext
from jitprov.services.scim import groups as scim_groups
from jitprov.services.scim import users as scim_users
from jitprov.services.scim.tokens import ScimPrincipal
from jitprov.store.unit_of_work import UnitOfWork
from tests.services.scim.helpers import (
    BASE,
    GROUP_SCHEMA,
    audit_types,
    outbox,
    patch,
    scim_client,
    user,
)


def _users(ctx: ServiceContext, principal: ScimPrincipal, n: int) -> list[str]:
    return [scim_users.create_user(ctx, principal, BASE, user(
        f"u{i}@hospital.example", externalId=f"x-{i}")).body["id"]  # type: ignore[index]
            for i in range(n)]


def _group(name: str = "Nurses", members: list[str] | None = None) -> dict[str, Any]:
    return {"schemas": [GROUP_SCHEMA], "displayName": name,
            "members": [{"value": m} for m in members or []]}


def _members(ctx: ServiceContext, principal: ScimPrincipal, group_id: str) -> set[str]:
    body = scim_groups.get_group(ctx, principal, BASE, group_id).body
    assert body is not None
    return {m["value"] for m in body.get("members", [])}


def test_create_with_members_is_audited_and_announced(ctx: ServiceContext) -> None:
    principal = scim_client(ctx)
    a, b = _users(ctx, principal, 2)
    created = scim_groups.create_group(ctx, principal, BASE, _group(members=[a, b]))
    assert created.body is not None
    assert {m["value"] for m in created.body["members"]} == {a, b}
    assert ("group.created", "scim:entra") in audit_types(ctx)
    assert ("group.members_changed", "scim:entra") in audit_types(ctx)
    assert outbox(ctx)[-2:] == ["group.created", "group.members_changed"]


def test_patch_members_add_remove_and_replace_are_set_operations(ctx: ServiceContext) -> None:
    principal = scim_client(ctx)
    a, b, c = _users(ctx, principal, 3)
    group_id = scim_groups.create_group(ctx, principal, BASE, _group()).body["id"]  # type: ignore[index]
    rendered = scim_groups.patch_group(ctx, principal, BASE, group_id, patch(
        {"op": "add", "path": "members", "value": [{"value": a}, {"value": b}]},
        {"op": "add", "path": "members", "value": [{"value": a}]}))
    assert rendered.body is None and rendered.version == 2
    assert _members(ctx, principal, group_id) == {a, b}
    scim_groups.patch_group(ctx, principal, BASE, group_id, patch(
        {"op": "remove", "path": f'members[value eq "{a}"]'}))
    assert _members(ctx, principal, group_id) == {b}
    scim_groups.patch_group(ctx, principal, BASE, group_id, patch(
        {"op": "replace", "path": "members", "value": [{"value": c}]}))
    assert _members(ctx, principal, group_id) == {c}
    scim_groups.patch_group(ctx, principal, BASE, group_id, patch(
        {"op": "remove", "path": "members"}))
    assert _members(ctx, principal, group_id) == set()
    changes = [ev.data for ev in audit_export.iter_events(ctx, "hospital")
               if ev.type == "group.members_changed"]
    assert sorted(changes[0]["added"]) == sorted([a, b])
    assert changes[1]["removed"] == [a]
    assert (changes[2]["added"], changes[2]["removed"]) == ([c], [b])


def test_a_patch_that_changes_nothing_is_not_announced(ctx: ServiceContext) -> None:
    principal = scim_client(ctx)
    (a,) = _users(ctx, principal, 1)
    group_id = scim_groups.create_group(ctx, principal, BASE, _group(members=[a])).body["id"]  # type: ignore[index]
    before = len(outbox(ctx))
    scim_groups.patch_group(ctx, principal, BASE, group_id, patch(
        {"op": "add", "path": "members", "value": [{"value": a}]}))
    assert len(outbox(ctx)) == before


def test_unknown_members_are_invalidvalue_and_nothing_is_written(ctx: ServiceContext) -> None:
    principal = scim_client(ctx)
    (a,) = _users(ctx, principal, 1)
    group_id = scim_groups.create_group(ctx, principal, BASE, _group()).body["id"]  # type: ignore[index]
    with pytest.raises(e.InvalidValue):
        scim_groups.patch_group(ctx, principal, BASE, group_id, patch(
            {"op": "add", "path": "members", "value": [{"value": a}, {"value": "nobody"}]}))
    assert _members(ctx, principal, group_id) == set()


def test_rename_and_uniqueness_of_display_names(ctx: ServiceContext) -> None:
    principal = scim_client(ctx)
    first = scim_groups.create_group(ctx, principal, BASE, _group("Nurses")).body["id"]  # type: ignore[index]
    scim_groups.create_group(ctx, principal, BASE, _group("Pharmacists"))
    with pytest.raises(e.Uniqueness):
        scim_groups.create_group(ctx, principal, BASE, _group("nurses"))
    with pytest.raises(e.Uniqueness):
        scim_groups.patch_group(ctx, principal, BASE, first, patch(
            {"op": "replace", "path": "displayName", "value": "PHARMACISTS"}))
    scim_groups.patch_group(ctx, principal, BASE, first, patch(
        {"op": "replace", "value": {"displayName": "Ward Nurses"}}))
    renamed = scim_groups.get_group(ctx, principal, BASE, first).body
    assert renamed is not None and renamed["displayName"] == "Ward Nurses"
    assert ("group.updated", "scim:entra") in audit_types(ctx)


def test_put_replaces_members_and_if_match_guards_it(ctx: ServiceContext) -> None:
    principal = scim_client(ctx)
    a, b = _users(ctx, principal, 2)
    group_id = scim_groups.create_group(ctx, principal, BASE, _group(members=[a])).body["id"]  # type: ignore[index]
    with pytest.raises(e.PreconditionFailed):
        scim_groups.replace_group(ctx, principal, BASE, group_id, _group(members=[b]),
                                  if_match='W/"7"')
    replaced = scim_groups.replace_group(ctx, principal, BASE, group_id, _group(members=[b]),
                                         if_match='W/"1"')
    assert replaced.body is not None and replaced.version == 2
    assert _members(ctx, principal, group_id) == {b}


def test_excluded_members_are_not_loaded(ctx: ServiceContext) -> None:
    principal = scim_client(ctx)
    (a,) = _users(ctx, principal, 1)
    group_id = scim_groups.create_group(ctx, principal, BASE, _group(members=[a])).body["id"]  # type: ignore[index]
    body = scim_groups.get_group(ctx, principal, BASE, group_id,
                                 parse_projection("Group", None, "members")).body
    assert body is not None and "members" not in body


def test_user_groups_are_shown_on_the_user(ctx: ServiceContext) -> None:
    principal = scim_client(ctx)
    (a,) = _users(ctx, principal, 1)
    group_id = scim_groups.create_group(ctx, principal, BASE, _group(members=[a])).body["id"]  # type: ignore[index]
    body = scim_users.get_user(ctx, principal, BASE, a).body
    assert body is not None
    assert body["groups"] == [{"value": group_id, "$ref": f"{BASE}/Groups/{group_id}",
                               "display": "Nurses", "type": "direct"}]


def test_delete_group(ctx: ServiceContext) -> None:
    principal = scim_client(ctx)
    group_id = scim_groups.create_group(ctx, principal, BASE, _group()).body["id"]  # type: ignore[index]
    scim_groups.delete_group(ctx, principal, group_id)
    with pytest.raises(e.NotFound):
        scim_groups.get_group(ctx, principal, BASE, group_id)
    assert ("group.deleted", "scim:entra") in audit_types(ctx)


SCIM_ROLES_MAPPING = """\
profile:
  email: email
groups: groups
roles:
  rules:
    - id: ward-leads
      grant: [ward-lead]
      when: contains(groups, 'Ward Leads') || contains(scim_groups, 'Ward Leads')
linking:
  by_email: never
"""


def test_scim_groups_feed_the_login_role_rules(ctx: ServiceContext) -> None:
    """A login's mapping sees ``scim_groups`` next to the IdP claims, so the same rule grants;
    removing the member revokes at once (re-evaluation), and the next login agrees."""
    from jitprov.core.identity import ExternalIdentity
    from jitprov.services import admin
    from jitprov.services.login.flow import provision_on_login

    admin.create_tenant(ctx, "hospital")
    admin.add_mock_connection(ctx, tenant="hospital", slug="idp", mapping=SCIM_ROLES_MAPPING,
                              mapping_source="scim-roles.yaml")
    principal = scim_client(ctx, setup=False)
    user_id = scim_users.create_user(ctx, principal, BASE, user(externalId="u-9")).body["id"]  # type: ignore[index]
    group_id = scim_groups.create_group(ctx, principal, BASE, _group(
        "Ward Leads", members=[user_id])).body["id"]  # type: ignore[index]
    identity = ExternalIdentity("https://idp.example", "u-9",
                                {"email": "ana@hospital.example", "groups": ["Staff"]})

    def roles() -> frozenset[str]:
        with UnitOfWork(ctx.db, readonly=True) as uow:
            return uow.accounts.get(user_id).roles

    def login() -> frozenset[str]:
        assert provision_on_login(ctx, "idp", identity).account_id == user_id
        return roles()

    assert login() == {"ward-lead"}
    scim_groups.patch_group(ctx, principal, BASE, group_id, patch(
        {"op": "remove", "path": "members"}))
    assert roles() == frozenset()
    assert login() == frozenset()


def test_a_group_read_without_members_reads_no_member_row(
        ctx: ServiceContext, monkeypatch: pytest.MonkeyPatch) -> None:
    from jitprov.store import scim as store

    principal = scim_client(ctx)
    (a,) = _users(ctx, principal, 1)
    group_id = scim_groups.create_group(ctx, principal, BASE, _group(members=[a])).body["id"]  # type: ignore[index]
    asked: list[bool] = []
    real_get = store.ScimGroupRepository.get_group

    def spy(self: store.ScimGroupRepository, tenant_id: int, gid: str, *,
            with_members: bool = True) -> store.ScimGroup | None:
        asked.append(with_members)
        return real_get(self, tenant_id, gid, with_members=with_members)

    def no_members(*args: object, **kwargs: object) -> None:
        raise AssertionError("members were read")

    monkeypatch.setattr(store.ScimGroupRepository, "get_group", spy)
    monkeypatch.setattr(store.ScimGroupRepository, "members", no_members)
    scim_groups.get_group(ctx, principal, BASE, group_id,
                          parse_projection("Group", None, "members"))
    scim_groups.patch_group(ctx, principal, BASE, group_id, patch(
        {"op": "add", "path": "members", "value": [{"value": a}]}))
    assert asked == [False, False]
