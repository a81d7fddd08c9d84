"""Grants through the admin API when writes meet: a block wins at read time and serialises
with grants on the account row, expired rows are announced by whichever write removes them,
a block withdraws open requests, lost races are retried, and what manual grants refuse."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from jitprov.core.errors import RaceLost
from jitprov.services import accounts, admin, audit_export
from jitprov.services.context import ServiceContext
from jitprov.store.database import Database
from jitprov.store.grants import GrantRepository
from jitprov.store.unit_of_work import UnitOfWork
from jitprov.testing.builders import setup_connection
from tests.conftest import Clock
from tests.web.helpers import make_client, sign_in

Api = tuple[TestClient, dict[str, str], str]


@pytest.fixture
def api(ctx: ServiceContext) -> Iterator[Api]:
    setup_connection(ctx)
    _, token = admin.create_admin_token(ctx, "ops")
    with make_client(ctx, dev_mode=True) as client:
        sign_in(client)  # a demo login: the account, and a session for /auth/verify
        [view] = admin.list_accounts(ctx, "hospital")
        yield client, {"Authorization": f"Bearer {token}"}, view.account.id


def url(account_id: str) -> str:
    return f"/api/tenants/hospital/accounts/{account_id}"


def outbox(ctx: ServiceContext) -> list[tuple[str, Mapping[str, object]]]:
    with UnitOfWork(ctx.db, readonly=True) as uow:
        return [(kind, payload) for _, kind, payload in uow.outbox.pending(limit=1000)]


def events(ctx: ServiceContext, kind: str, tenant: str = "hospital") -> list[Any]:
    return [e for e in audit_export.iter_events(ctx, tenant) if e.type == kind]


def store_grant(ctx: ServiceContext, account_id: str, role: str, source: str = "manual",
                expires_in: timedelta | None = None) -> None:
    """A grant row written as a writer that lost the race against a block would have."""
    from jitprov.core.identity import RoleGrant
    now = ctx.clock()
    with UnitOfWork(ctx.db) as uow:
        uow.grants.grant(account_id, RoleGrant(role, source, now + expires_in
                                               if expires_in else None), now, "racer")
        uow.commit()


def waiting_on_a_lock(db: Database, timeout: float = 10) -> bool:
    """True once a session of this database waits on a row or advisory lock (PostgreSQL)."""
    deadline = time.monotonic() + timeout
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        while time.monotonic() < deadline:
            if c.execute(sa.text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock'")).scalar():
                return True
            time.sleep(0.02)
    return False


# -- a block wins ------------------------------------------------------------------------------

def test_a_grant_of_a_blocked_role_stored_by_a_lost_race_is_held_nowhere(
        api: Api, ctx: ServiceContext) -> None:
    client, auth, account_id = api
    r = client.request("DELETE", f"{url(account_id)}/grants/pharmacy:read", headers=auth,
                       params={"reason": "not on this ward", "block": "true"})
    assert r.status_code == 200 and r.json()["blocked"] is True
    store_grant(ctx, account_id, "pharmacy:read")  # committed after the block: the race

    assert client.get("/auth/verify").headers["x-jitprov-roles"] == "nurse,staff"
    assert "pharmacy:read" not in client.get("/me").json()["roles"]
    [user] = client.get("/api/tenants/hospital/users", headers=auth).json()
    assert "pharmacy:read" not in user["roles"]
    listing = client.get(f"{url(account_id)}/grants", headers=auth).json()
    assert "pharmacy:read" not in {g["role"] for g in listing["grants"]}
    assert [o["role"] for o in listing["overrides"]] == ["pharmacy:read"]
    review = client.get("/api/tenants/hospital/access-review", headers=auth,
                        params={"format": "json"}).json()
    assert "pharmacy:read" not in {row["role"] for row in review}


def test_on_postgresql_a_grant_waits_for_a_block_in_progress_and_is_refused(
        api: Api, ctx: ServiceContext) -> None:
    if ctx.db.dialect != "postgresql":
        pytest.skip("SQLite runs write transactions one at a time (the write lock)")
    client, auth, account_id = api
    answer: dict[str, Any] = {}

    def grant() -> None:
        answer["r"] = client.post(f"{url(account_id)}/grants", headers=auth,
                                  json={"role": "pharmacy:read", "reason": "cover"})

    with UnitOfWork(ctx.db) as uow:  # what a block does, held open before its commit
        uow.accounts.lock(account_id)
        uow.grants.block(account_id, "pharmacy:read", blocked_by="cli", reason="incident",
                         now=ctx.clock())
        racer = threading.Thread(target=grant)
        racer.start()
        waited = waiting_on_a_lock(ctx.db)
        uow.commit()
    racer.join(30)
    assert waited, "the grant did not wait for the account row"
    assert answer["r"].status_code == 400
    assert "blocked" in answer["r"].json()["message"]
    with UnitOfWork(ctx.db, readonly=True) as uow:
        assert "pharmacy:read" not in {g.role for g in uow.accounts.get(account_id).grants}


# -- expired rows a write removes are announced ---------------------------------------------

def test_a_block_announces_the_expired_rows_it_deletes(api: Api, ctx: ServiceContext,
                                                       clock: Clock) -> None:
    client, auth, account_id = api
    r = client.post(f"{url(account_id)}/grants", headers=auth,
                    json={"role": "keys", "reason": "night", "expires_in_days": 1})
    assert r.status_code == 201
    expires_at = r.json()["expires_at"]
    assert ("role.granted", {"account_id": account_id, "tenant": "hospital", "role": "keys",
                             "source": "manual", "expires_at": expires_at}) in outbox(ctx)
    clock.advance(days=2)

    r = client.request("DELETE", f"{url(account_id)}/grants/keys", headers=auth,
                       json={"reason": "lost keys", "block": True})
    assert r.json()["revoked"] == []  # nothing live was revoked...
    [expired] = events(ctx, "grant.expired")  # ...but the expired row is announced
    [blocked] = events(ctx, "grant.blocked")
    assert (expired.actor, expired.data["role"], expired.data["source"],
            expired.data["expires_at"], expired.data["removed_by"]) == (
        "lifecycle:expiry", "keys", "manual", expires_at, blocked.actor)
    assert ("role.revoked", {"account_id": account_id, "tenant": "hospital", "role": "keys",
                             "source": "manual", "reason": "expired"}) in outbox(ctx)
    with UnitOfWork(ctx.db, readonly=True) as uow:
        assert "keys" not in {g.role for g in uow.accounts.get(account_id).grants}
    assert audit_export.verify(ctx, "hospital")[0].intact


def test_granting_again_over_an_expired_grant_announces_the_old_one(
        api: Api, ctx: ServiceContext, clock: Clock) -> None:
    client, auth, account_id = api
    client.post(f"{url(account_id)}/grants", headers=auth,
                json={"role": "keys", "reason": "night", "expires_in_days": 1})
    clock.advance(days=2)
    r = client.post(f"{url(account_id)}/grants", headers=auth,
                    json={"role": "keys", "reason": "again"})
    assert r.status_code == 201
    assert [e.data["role"] for e in events(ctx, "grant.expired")] == ["keys"]
    assert [p["reason"] for k, p in outbox(ctx) if k == "role.revoked"] == ["expired"]


def test_the_users_list_shows_each_grants_expiry(api: Api, clock: Clock) -> None:
    client, auth, account_id = api
    r = client.post(f"{url(account_id)}/grants", headers=auth,
                    json={"role": "keys", "reason": "night", "expires_in_days": 3})
    [user] = client.get("/api/tenants/hospital/users", headers=auth).json()
    assert {"role": "keys", "source": "manual", "expires_at": r.json()["expires_at"]} in \
        user["grants"]
    assert {"role": "nurse", "source": "rule:idp/nurses", "expires_at": None} in user["grants"]


# -- a block withdraws open requests ----------------------------------------------------------

def test_a_block_withdraws_the_open_approval_requests_of_the_role(
        api: Api, ctx: ServiceContext) -> None:
    client, auth, account_id = api
    sign_in(client, groups="Nurses,Charge Nurses")  # the rule asks for approval
    [request] = accounts.list_requests(ctx, "hospital")
    r = client.request("DELETE", f"{url(account_id)}/grants/charge-nurse", headers=auth,
                       json={"reason": "not yet", "block": True})
    assert r.status_code == 200
    assert accounts.list_requests(ctx, "hospital") == []
    [withdrawn] = accounts.list_requests(ctx, "hospital", status="withdrawn")
    assert withdrawn.id == request.id
    [blocked] = events(ctx, "grant.blocked")
    assert blocked.data["requests_withdrawn"] == [request.id]
    r = client.post(f"/api/approvals/{request.id}", headers=auth,
                    json={"approve": True, "reason": "x"})
    assert r.status_code == 400  # blocked (and withdrawn): never a grant
    assert "charge-nurse" not in client.get("/me").json()["roles"]


# -- a DELETE's reason as a query parameter ----------------------------------------------------

def test_revoke_and_unblock_take_the_reason_as_a_query_parameter(api: Api,
                                                                  ctx: ServiceContext) -> None:
    client, auth, account_id = api
    client.post(f"{url(account_id)}/grants", headers=auth,
                json={"role": "auditor", "reason": "q4"})
    r = client.delete(f"{url(account_id)}/grants/auditor", headers=auth,
                      params={"reason": "quarter over"})
    assert r.status_code == 200 and r.json()["revoked"] == ["manual"]
    assert events(ctx, "grant.revoked")[0].data["reason"] == "quarter over"

    r = client.delete(f"{url(account_id)}/grants/nurse", headers=auth,
                      params={"reason": "incident", "block": "true"})
    assert r.json()["blocked"] is True
    r = client.delete(f"{url(account_id)}/overrides/nurse", headers=auth,
                      params={"reason": "cleared"})
    assert r.json() == {"account_id": account_id, "role": "nurse", "blocked": False}

    before = len(list(audit_export.iter_events(ctx, "hospital")))
    r = client.delete(f"{url(account_id)}/grants/staff", headers=auth)
    assert r.status_code == 422 and "reason" in r.json()["message"]
    assert len(list(audit_export.iter_events(ctx, "hospital"))) == before


# -- lost races --------------------------------------------------------------------------------

def test_a_lost_race_is_retried_then_409(api: Api, ctx: ServiceContext,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    client, auth, account_id = api
    real = GrantRepository.grant
    losses = {"left": 1}

    def racy(self: GrantRepository, *args: Any, **kwargs: Any) -> None:
        if losses["left"]:
            losses["left"] -= 1
            raise RaceLost("a unique key was written concurrently")
        real(self, *args, **kwargs)

    monkeypatch.setattr(GrantRepository, "grant", racy)
    r = client.post(f"{url(account_id)}/grants", headers=auth,
                    json={"role": "keys", "reason": "night"})
    assert r.status_code == 201  # the second attempt won
    assert len(events(ctx, "grant.added")) == 1

    losses["left"] = 100
    r = client.post(f"{url(account_id)}/grants", headers=auth,
                    json={"role": "badge", "reason": "night"})
    assert r.status_code == 409
    assert r.json()["error"] == "race_lost"
    assert len(events(ctx, "grant.added")) == 1


# -- what manual grants refuse -----------------------------------------------------------------

@pytest.mark.parametrize("kind", ["admin", "service", "break_glass"])
def test_only_user_accounts_take_manual_grants(api: Api, ctx: ServiceContext,
                                               kind: str) -> None:
    client, auth, account_id = api
    with ctx.db.engine.begin() as c:
        c.execute(sa.text("UPDATE account SET kind = :k WHERE id = :i"),
                  {"k": kind, "i": account_id})
    r = client.post(f"{url(account_id)}/grants", headers=auth,
                    json={"role": "keys", "reason": "night"})
    assert r.status_code == 400
    assert f"is a {kind} account" in r.json()["message"]
    assert events(ctx, "grant.added") == []


def test_the_console_admin_role_is_never_granted_by_hand(api: Api, ctx: ServiceContext) -> None:
    client, auth, account_id = api
    r = client.post(f"{url(account_id)}/grants", headers=auth,
                    json={"role": "jitprov-admin", "reason": "help"})
    assert r.status_code == 400
    assert "mapping rule" in r.json()["message"]
    assert events(ctx, "grant.added") == []


# -- role names --------------------------------------------------------------------------------

def test_a_role_name_over_64_is_refused_on_add_but_a_stored_one_can_be_revoked(
        api: Api, ctx: ServiceContext) -> None:
    client, auth, account_id = api
    long = "r" * 65
    r = client.post(f"{url(account_id)}/grants", headers=auth,
                    json={"role": long, "reason": "x"})
    assert r.status_code == 400 and "1 to 64 characters" in r.json()["message"]
    store_grant(ctx, account_id, "r" * 100)  # written before the rule was tightened
    r = client.delete(f"{url(account_id)}/grants/{'r' * 100}", headers=auth,
                      params={"reason": "clean up"})
    assert r.status_code == 200 and r.json()["revoked"] == ["manual"]


def test_a_mapping_granting_a_role_over_64_is_refused_with_its_line(api: Api) -> None:
    client, auth, _ = api
    r = client.post("/api/mapping/check", headers=auth, json={
        "mapping": f"roles:\n  default:\n    - {'r' * 65}\n", "source": "long.yaml"})
    assert r.status_code == 422
    assert "long.yaml:3" in r.json()["message"]
    assert "at most 64 characters" in r.json()["message"]
