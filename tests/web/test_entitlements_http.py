"""Roles that follow SCIM membership, through HTTP: a demo login with a ``scim_groups`` rule,
then SCIM group changes seen by ``/auth/verify``, ``/me`` and the identity token at the very
next request, without any login; and a large change drained by the re-evaluation job."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from starlette.testclient import TestClient

from jitprov.core.identity import ExternalIdentity, RoleGrant
from jitprov.jobs import entitlements as entitlement_jobs
from jitprov.services import admin, audit_export, entitlements
from jitprov.services.context import ServiceContext
from jitprov.services.login.flow import provision_on_login
from jitprov.store.unit_of_work import UnitOfWork
from tests.web.helpers import make_client, sign_in
from tests.web.scim_helpers import GROUP_SCHEMA, Scim, patch, scim_token, user

ANA = "ana@hospital.example"
MAPPING = """\
profile:
  email: email
  name: name
groups: groups
roles:
  default: [staff]
  rules:
    - id: nurses
      grant: [nurse]
      when: contains(groups, 'Nurses')
    - id: pharmacy
      grant: [pharmacist]
      when: contains(scim_groups, 'Pharmacy')
    - id: controlled
      grant: [controlled-drugs]
      when: contains(scim_groups, 'Controlled Drugs')
      approval: required
linking:
  by_email: never
"""


@pytest.fixture
def client(ctx: ServiceContext) -> Iterator[TestClient]:
    admin.create_tenant(ctx, "hospital")
    admin.add_mock_connection(ctx, tenant="hospital", slug="idp", mapping=MAPPING,
                              mapping_source="pharmacy.yaml")
    with make_client(ctx) as c:
        yield c


@pytest.fixture
def scim(client: TestClient, ctx: ServiceContext) -> Scim:
    return Scim(client, scim_token(ctx))


def _group(name: str, *members: str) -> dict[str, Any]:
    return {"schemas": [GROUP_SCHEMA], "displayName": name,
            "members": [{"value": m} for m in members]}


def verified_roles(client: TestClient) -> list[str]:
    r = client.get("/auth/verify")
    assert r.status_code == 200, r.text
    roles = r.headers["x-jitprov-roles"].split(",")
    payload = r.headers["x-jitprov-token"].split(".")[1]
    token = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert sorted(token["roles"]) == sorted(roles)  # the identity token says the same
    assert client.get("/me").json()["roles"] == sorted(roles)
    return roles


def _scim_user_in_pharmacy(scim: Scim) -> tuple[str, str]:
    """A SCIM client creates Ana (externalId: her demo-login subject) in group Pharmacy."""
    user_id = scim.post("/Users", user(ANA, externalId=ANA)).json()["id"]
    r = scim.post("/Groups", _group("Pharmacy", user_id))
    assert r.status_code == 201, r.text
    return user_id, r.json()["id"]


def test_a_demo_login_sees_scim_groups_and_a_patch_revokes_at_the_next_request(
        client: TestClient, scim: Scim, ctx: ServiceContext) -> None:
    user_id, group_id = _scim_user_in_pharmacy(scim)
    sign_in(client)
    assert client.get("/me").json()["id"] == user_id
    assert verified_roles(client) == ["nurse", "pharmacist", "staff"]
    assert client.get("/auth/verify", params={"role": "pharmacist"}).status_code == 200

    r = scim.patch(f"/Groups/{group_id}", patch(
        {"op": "remove", "path": f'members[value eq "{user_id}"]'}))
    assert r.status_code == 204, r.text
    assert verified_roles(client) == ["nurse", "staff"]  # no login in between
    assert client.get("/auth/verify", params={"role": "pharmacist"}).status_code == 403

    [event] = [e for e in audit_export.iter_events(ctx, "hospital")
               if e.type == "account.updated" and e.actor == "scim:entra"]
    assert event.account_id == user_id
    assert event.data["changes"] == {"grants_revoked": [
        {"role": "pharmacist", "source": "rule:idp/pharmacy"}]}
    with UnitOfWork(ctx.db, readonly=True) as uow:
        sent = [(k, p.get("role")) for _, k, p in uow.outbox.pending(1000)]
    assert ("role.revoked", "pharmacist") in sent


def test_a_member_added_after_the_login_gets_the_role_at_once(
        client: TestClient, scim: Scim, ctx: ServiceContext) -> None:
    sign_in(client)  # JIT: SCIM sees the account as a User of the same id
    account_id = client.get("/me").json()["id"]
    group_id = scim.post("/Groups", _group("Pharmacy")).json()["id"]
    assert verified_roles(client) == ["nurse", "staff"]
    r = scim.patch(f"/Groups/{group_id}", patch(
        {"op": "add", "path": "members", "value": [{"value": account_id}]}))
    assert r.status_code == 204, r.text
    assert verified_roles(client) == ["nurse", "pharmacist", "staff"]
    with UnitOfWork(ctx.db, readonly=True) as uow:
        grants = {(g.role, g.source) for g in uow.accounts.get(account_id).grants}
    assert ("pharmacist", "rule:idp/pharmacy") in grants
    # Entra's removal by a value list
    r = scim.patch(f"/Groups/{group_id}", patch(
        {"op": "Remove", "path": "members", "value": [{"value": account_id}]}))
    assert r.status_code == 204, r.text
    assert verified_roles(client) == ["nurse", "staff"]


def test_a_group_rename_and_put_follow_the_new_name(
        client: TestClient, scim: Scim) -> None:
    user_id, group_id = _scim_user_in_pharmacy(scim)
    sign_in(client)
    assert "pharmacist" in verified_roles(client)
    r = scim.patch(f"/Groups/{group_id}", patch(
        {"op": "replace", "path": "displayName", "value": "Pharmacy (closed)"}))
    assert r.status_code == 204, r.text
    assert verified_roles(client) == ["nurse", "staff"]
    r = scim.put(f"/Groups/{group_id}", _group("Pharmacy", user_id))
    assert r.status_code == 200, r.text
    assert verified_roles(client) == ["nurse", "pharmacist", "staff"]
    r = scim.put(f"/Groups/{group_id}", _group("Pharmacy"))  # PUT without her
    assert verified_roles(client) == ["nurse", "staff"]


def test_a_group_delete_revokes_and_other_grants_stay(
        client: TestClient, scim: Scim, ctx: ServiceContext) -> None:
    user_id, group_id = _scim_user_in_pharmacy(scim)
    controlled = scim.post("/Groups", _group("Controlled Drugs", user_id)).json()["id"]
    sign_in(client)
    assert verified_roles(client) == ["nurse", "pharmacist", "staff"]
    with UnitOfWork(ctx.db) as uow:  # an approved grant of the same role, and a manual one
        uow.grants.grant(user_id, RoleGrant("pharmacist", "approval"), ctx.clock(), "admin")
        uow.grants.grant(user_id, RoleGrant("auditor", "manual"), ctx.clock(), "admin")
        [pending] = [p.role for p in uow.accounts.get(user_id).pending]
        uow.commit()
    assert pending == "controlled-drugs"
    assert scim.delete(f"/Groups/{group_id}").status_code == 204
    assert verified_roles(client) == ["auditor", "nurse", "pharmacist", "staff"]
    with UnitOfWork(ctx.db, readonly=True) as uow:
        account = uow.accounts.get(user_id)
    assert {(g.role, g.source) for g in account.grants if g.role == "pharmacist"} == {
        ("pharmacist", "approval")}
    assert scim.delete(f"/Groups/{controlled}").status_code == 204  # request withdrawn
    with UnitOfWork(ctx.db, readonly=True) as uow:
        assert uow.accounts.get(user_id).pending == frozenset()


def _wait_for_empty_queue(ctx: ServiceContext, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while entitlements.backlog(ctx):
        assert time.monotonic() < deadline, "the re-evaluation job did not drain its queue"
        time.sleep(0.05)


def test_a_large_group_goes_through_the_job(client: TestClient, scim: Scim,
                                           ctx: ServiceContext) -> None:
    """More members than the inline limit (200): the SCIM request queues them and answers;
    the job of ``serve`` grants and then revokes every role, batch by batch."""
    sign_in(client)
    ids = [client.get("/me").json()["id"]]
    for i in range(249):
        ids.append(provision_on_login(ctx, "idp", ExternalIdentity(
            "https://idp.example", f"u-{i}", {"email": f"u{i}@hospital.example",
                                             "groups": ["Nurses"]})).account_id)
    r = scim.post("/Groups", _group("Pharmacy", *ids))
    assert r.status_code == 201, r.text
    assert entitlements.backlog(ctx) == 250
    assert verified_roles(client) == ["nurse", "staff"]  # queued, not yet evaluated

    stop = threading.Event()
    entitlement_jobs.run_periodically(ctx, timedelta(seconds=0.1), stop)
    try:
        _wait_for_empty_queue(ctx)
        assert verified_roles(client) == ["nurse", "pharmacist", "staff"]
        assert scim.delete(f"/Groups/{r.json()['id']}").status_code == 204
        _wait_for_empty_queue(ctx)
    finally:
        stop.set()
    assert verified_roles(client) == ["nurse", "staff"]
    holders = [v.account.id for v in admin.list_accounts(ctx, "hospital")
               if "pharmacist" in v.account.roles]
    assert holders == []
    revoked = [e for e in audit_export.iter_events(ctx, "hospital")
               if e.type == "account.updated" and e.actor == "scim:entra"
               and "grants_revoked" in e.data["changes"]]  # type: ignore[operator]
    assert len(revoked) == 250
    [report] = audit_export.verify(ctx, "hospital")  # batches append to the chain intact
    assert report.intact, report.problems


def test_without_a_groups_claim_a_scim_groups_role_still_follows_scim(
        client: TestClient, scim: Scim, ctx: ServiceContext) -> None:
    """An IdP that sends no groups claim (SCIM carries the groups) under the default
    ``groups_missing: keep``: the keep protects grants of rules that read ``groups`` only, so a
    SCIM removal revokes the ``scim_groups`` role at the next request."""
    user_id, group_id = _scim_user_in_pharmacy(scim)
    sign_in(client, groups="")
    assert verified_roles(client) == ["pharmacist", "staff"]
    r = scim.patch(f"/Groups/{group_id}", patch(
        {"op": "remove", "path": f'members[value eq "{user_id}"]'}))
    assert r.status_code == 204, r.text
    assert verified_roles(client) == ["staff"]
