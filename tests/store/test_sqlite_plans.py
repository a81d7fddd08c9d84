"""SQLite plans of the account lookups on the login and SCIM paths.

SQLite runs without statistics here (no ANALYZE, as in a deployment), so its planner picks an
index by shape alone: next to ``kind = 'user'`` it happily walks (tenant_id, kind, id), every
user of the tenant, instead of the email or userName index (a SCIM POST once cost 300 ms at
100,000 users that way). Each lookup below must reach ``account`` through a selective index:
the plan never scans the table nor reads it by ``tenant_id`` (and kind) alone.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import sqlite

from jitprov.protocols.scim.filter import parse_filter
from jitprov.store.database import Database
from jitprov.store.records import TenantRecord
from jitprov.store.scim.filters import Translator, user_attributes
from jitprov.store.unit_of_work import UnitOfWork
from tests.conftest import Clock

UNSELECTIVE = re.compile(r"SCAN account\b|account USING (COVERING )?INDEX \w+ "
                         r"\(tenant_id=\?( AND kind=\?)?\)")


@pytest.fixture
def sqlite_db(tmp_path: Path, sqlite_template: Path) -> Iterator[Database]:
    shutil.copy(sqlite_template, tmp_path / "plans.db")
    database = Database.connect(f"sqlite:///{tmp_path / 'plans.db'}", pool_size=1)
    yield database
    database.dispose()


def account_plans(db: Database, work: Callable[[UnitOfWork], object]) -> list[str]:
    """The query plan lines of every SELECT on ``account`` that ``work`` runs."""
    statements: list[str] = []
    db.engine.dispose()
    sa.event.listen(db.engine, "connect",
                    lambda conn, _: conn.set_trace_callback(statements.append))
    with UnitOfWork(db) as uow:  # not committed: rolled back on exit
        work(uow)
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")
               and re.search(r"\baccount\b", s)]
    assert selects, "the work reads accounts"
    lines: list[str] = []
    with db.engine.connect() as conn:
        for sql in selects:
            lines += [f"{row[3]}  <- {sql[:120]}"
                      for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}")]
    return lines


@pytest.fixture
def tenant(sqlite_db: Database) -> TenantRecord:
    with UnitOfWork(sqlite_db) as uow:
        record = uow.config.tenants.create("plans", "Plans", Clock()())
        uow.commit()
    return record


HUNDRED_GROUPS = " or ".join(f'groups.value eq "g{i}"' for i in range(100))

LOOKUPS: dict[str, Callable[[UnitOfWork, int], object]] = {
    "SCIM POST: userName uniqueness": lambda uow, t: uow.scim.users.create_user(
        t, user_name="ana@x.example", external_id="00u1", external_id_connection_id=None,
        active=True, email="ana@x.example", scim={}, profile={}, now=Clock()()),
    "SCIM: find by userName": lambda uow, t: uow.scim.users.find_by_user_name(
        t, "ana@x.example"),
    "SCIM filter: userName eq": lambda uow, t: uow.scim.users.query_users(
        t, parse_filter('userName eq "ana@x.example"')),
    "SCIM filter: externalId eq": lambda uow, t: uow.scim.users.query_users(
        t, parse_filter('externalId eq "00u1"')),
    "first login: link candidates": lambda uow, t: uow.accounts.find_link_candidates(
        t, connection_id=1, email="ana@x.example", external_id="00u1"),
    "SCIM filter: 100 groups.value eq": lambda uow, t: uow.scim.users.query_users(
        t, parse_filter(HUNDRED_GROUPS)),
    "SCIM filter: 100 userName eq": lambda uow, t: uow.scim.users.query_users(
        t, parse_filter(" or ".join(f'userName eq "u{i}@x.example"' for i in range(100)))),
}


@pytest.mark.parametrize("name", LOOKUPS)
def test_account_lookups_use_a_selective_index_on_sqlite(
        sqlite_db: Database, tenant: TenantRecord, name: str) -> None:
    plans = account_plans(sqlite_db, lambda uow: LOOKUPS[name](uow, tenant.id))

    assert [line for line in plans if UNSELECTIVE.search(line)] == []


def test_a_disjunction_on_groups_is_one_lookup_of_members_not_a_subquery_per_user(
        sqlite_db: Database, tenant: TenantRecord) -> None:
    """``groups.value eq`` x 100: the groups' members are found once, by the primary key of
    scim_group_member, through one IN list of group ids; the accounts by their primary key.
    (It was 100 correlated subqueries tried on every user of the tenant: 15 s at 5,000.)"""
    plans = account_plans(sqlite_db, lambda uow: uow.scim.users.query_users(
        tenant.id, parse_filter(HUNDRED_GROUPS)))

    assert not [line for line in plans if "CORRELATED" in line]
    sql = str(Translator("sqlite", user_attributes("sqlite", tenant.id))
              .where(parse_filter(HUNDRED_GROUPS)).compile(dialect=sqlite.dialect()))
    assert (sql.count("scim_group.id IN ("), sql.count("EXISTS"), sql.count(" OR ")) == (1, 0, 0)
    members = [line for line in plans if line.startswith("SEARCH scim_group_member")]
    assert members and all("(group_id=?)" in line for line in members)
    assert [line for line in plans if line.startswith("SEARCH account ")] == [
        line for line in plans if line.startswith("SEARCH account USING INDEX "
                                                  "sqlite_autoindex_account_1 (id=?)")]
