"""The SCIM store on SQLite and PostgreSQL: filters translated to SQL against real rows (every
operator, the case rules of RFC 7643, LIKE escaping, complex filters), sorting and pagination,
uniqueness, versions, group membership batches and client tokens.

A Hypothesis property checks the translator against a reference evaluator written from RFC 7644
§3.4.2.2 over a small population.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jitprov.core.provisioning import Changes
from jitprov.protocols.scim.filter import (
    And,
    AttrPath,
    Compare,
    Filter,
    Not,
    Or,
    Present,
    ValuePath,
    parse_filter,
)
from jitprov.store.database import Database
from jitprov.store.records import ConnectionRecord, TenantRecord
from jitprov.store.scim.errors import (
    InvalidFilter,
    Uniqueness,
    UnknownMembers,
    VersionMismatch,
)
from jitprov.store.scim.records import ENTERPRISE_SCHEMA, ScimUser
from jitprov.store.unit_of_work import UnitOfWork

from .seed import Clock

pytestmark = pytest.mark.filterwarnings("error")


@dataclass(frozen=True)
class Person:
    user_name: str
    email: str | None = None
    external_id: str | None = None
    active: bool = True
    scim: Mapping[str, Any] | None = None


PEOPLE = [
    Person("Alice@Example.org", "alice@example.org", "ext-A", True, {
        "displayName": "Alice Liddell", "title": "Engineer", "userType": "Employee",
        "name": {"givenName": "Alice", "familyName": "Liddell"},
        "emails": [{"value": "Alice@Example.org", "type": "work", "primary": True},
                   {"value": "alice@home.net", "type": "home"}],
        ENTERPRISE_SCHEMA: {"department": "R&D", "employeeNumber": "701",
                            "manager": {"value": "boss-1", "displayName": "Queen"}}}),
    Person("bob", "bob@example.org", "ext-b", True, {
        "displayName": "Bob 100% Builder", "title": "engineer_lead",
        "name": {"givenName": "Bob", "familyName": "Builder"},
        "emails": [{"value": "bob@example.org", "type": "work", "primary": True}],
        ENTERPRISE_SCHEMA: {"department": "Sales"}}),
    Person("carol", "carol@other.org", "EXT-A", False, {
        "displayName": "Carol_X", "name": {"familyName": "Danvers"},
        "emails": [{"value": "carol@other.org", "type": "home", "primary": False}]}),
    Person("dave\\x", None, None, True, {"title": "", "emails": []}),
]


def make_users(db: Database, clock: Clock, tenant: TenantRecord) -> dict[str, ScimUser]:
    """The PEOPLE, one minute apart, plus a JIT account (no userName, no SCIM data)."""
    users: dict[str, ScimUser] = {}
    for person in PEOPLE:
        with UnitOfWork(db) as uow:
            user = uow.scim.users.create_user(
                tenant.id, user_name=person.user_name, external_id=person.external_id,
                external_id_connection_id=None, active=person.active, email=person.email,
                scim=dict(person.scim or {}), profile={}, now=clock())
            uow.commit()
        users[person.user_name.lower()] = user
        clock.advance(minutes=1)
    with UnitOfWork(db) as uow:
        jit_id = uow.accounts.create(
            tenant_id=tenant.id, changes=Changes(profile={"email": (None, "Erin@JIT.org")}),
            provisioned_by="jit", now=clock())
        uow.commit()
    with UnitOfWork(db, readonly=True) as uow:
        jit = uow.scim.users.get_user(tenant.id, jit_id)
    assert jit is not None
    users["erin"] = jit
    return users


@pytest.fixture
def users(db: Database, clock: Clock, tenant: TenantRecord) -> dict[str, ScimUser]:
    return make_users(db, clock, tenant)


def matching(db: Database, tenant: TenantRecord, users: Mapping[str, ScimUser],
             text: str) -> set[str]:
    """The keys of ``users`` the filter ``text`` selects."""
    by_id = {u.id: key for key, u in users.items()}
    with UnitOfWork(db, readonly=True) as uow:
        total, page = uow.scim.users.query_users(tenant.id, parse_filter(text), count=1000)
    assert total == len(page)
    return {by_id[u.id] for u in page}


@pytest.mark.parametrize(("text", "expected"), [
    # userName: caseExact=false (RFC 7643 §4.1.1), a JIT account's email stands in for it
    ('userName eq "ALICE@example.ORG"', {"alice@example.org"}),
    ('userName eq "erin@jit.org"', {"erin"}),
    ('userName ne "bob"', {"alice@example.org", "carol", "dave\\x", "erin"}),
    ('userName co "example"', {"alice@example.org"}),
    ('userName sw "B"', {"bob"}),
    ('userName ew ".ORG"', {"alice@example.org", "erin"}),
    ('userName gt "carol"', {"dave\\x", "erin"}),
    ('userName ge "carol"', {"carol", "dave\\x", "erin"}),
    ('userName lt "bob"', {"alice@example.org"}),
    ('userName le "bob"', {"alice@example.org", "bob"}),
    ('userName pr', {"alice@example.org", "bob", "carol", "dave\\x", "erin"}),
    ('userName co "\\\\"', {"dave\\x"}),
    # externalId and id: caseExact=true
    ('externalId eq "ext-A"', {"alice@example.org"}),
    ('externalId eq "EXT-A"', {"carol"}),
    ('externalId sw "ext-"', {"alice@example.org", "bob"}),
    ('externalId co "T-a"', set()),
    ('externalId pr', {"alice@example.org", "bob", "carol"}),
    ('not (externalId pr)', {"dave\\x", "erin"}),
    ('active eq true', {"alice@example.org", "bob", "dave\\x", "erin"}),
    ('active eq false', {"carol"}),
    ('active ne true', {"carol"}),
    # JSON attributes, caseExact=false
    ('displayName eq "alice liddell"', {"alice@example.org"}),
    ('displayName co "100%"', {"bob"}),
    ('displayName co "0%"', {"bob"}),
    ('displayName co "l_x"', {"carol"}),
    ('displayName co "l_"', {"carol"}),
    ('displayName ew "_x"', {"carol"}),
    ('displayName co "%"', {"bob"}),
    ('displayName co "_"', {"carol"}),
    ('title eq "ENGINEER"', {"alice@example.org"}),
    ('title co "engineer"', {"alice@example.org", "bob"}),
    ('title pr', {"alice@example.org", "bob"}),
    ('title ne "engineer"', {"bob", "carol", "dave\\x", "erin"}),
    ('title eq null', {"carol", "dave\\x", "erin"}),
    ('userType eq "employee"', {"alice@example.org"}),
    ('name.familyName sw "D"', {"carol"}),
    ('name.givenName pr', {"alice@example.org", "bob"}),
    ('name pr', {"alice@example.org", "bob", "carol"}),
    ('urn:ietf:params:scim:schemas:core:2.0:User:name.familyName eq "builder"', {"bob"}),
    # the enterprise extension, with and without its URN
    ('urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq "r&d"',
     {"alice@example.org"}),
    ('department eq "sales"', {"bob"}),
    ('urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq "boss-1"',
     {"alice@example.org"}),
    ('employeeNumber gt "700"', {"alice@example.org"}),
    # RFC 7644 §3.4.2.2: "schemas eq" the extension's URN: the users that have a value in it
    (f'schemas eq "{ENTERPRISE_SCHEMA}"', {"alice@example.org", "bob"}),
    ('schemas eq "urn:ietf:params:scim:schemas:core:2.0:user"',
     {"alice@example.org", "bob", "carol", "dave\\x", "erin"}),
    # multi-valued emails; a JIT account has its email column as its one, primary email
    ('emails.value eq "ALICE@home.net"', {"alice@example.org"}),
    ('emails eq "erin@jit.org"', {"erin"}),
    ('emails co "example.org"', {"alice@example.org", "bob"}),
    ('emails.type eq "home"', {"alice@example.org", "carol"}),
    ('emails.primary eq true', {"alice@example.org", "bob", "erin"}),
    ('emails.primary eq false', {"carol"}),
    ('emails pr', {"alice@example.org", "bob", "carol", "erin"}),
    ('not (emails pr)', {"dave\\x"}),
    ('emails[type eq "work" and value co "example.org"]', {"alice@example.org", "bob"}),
    ('emails[type eq "home" and value co "example.org"]', set()),
    ('emails[type eq "home"] and emails[value co "example.org"]', {"alice@example.org"}),
    ('emails[not (type eq "work")]', {"alice@example.org", "carol", "erin"}),
    ('emails[primary eq true and value ew "jit.org"]', {"erin"}),
    # logic: and binds tighter than or; not; grouping
    ('userName eq "bob" or userName eq "carol" and active eq true', {"bob"}),
    ('(userName eq "bob" or userName eq "carol") and active eq true', {"bob"}),
    ('not (userName eq "bob" or active eq false)', {"alice@example.org", "dave\\x", "erin"}),
    ('NOT (title pr) AND emails PR', {"carol", "erin"}),
])
def test_a_filter_selects_exactly_the_matching_users(
        db: Database, tenant: TenantRecord, users: dict[str, ScimUser], text: str,
        expected: set[str]) -> None:
    assert expected == matching(db, tenant, users, text)


def test_case_insensitive_matching_folds_non_ascii_letters_too(
        db: Database, clock: Clock, tenant: TenantRecord) -> None:
    with UnitOfWork(db) as uow:
        user = uow.scim.users.create_user(
            tenant.id, user_name="Jörg", external_id=None, external_id_connection_id=None,
            active=True, email=None, scim={"displayName": "MÜLLER Jörg"}, profile={},
            now=clock())
        uow.commit()
    users = {"jörg": user}

    assert {"jörg"} == matching(db, tenant, users, 'displayName eq "müller jörg"')
    assert {"jörg"} == matching(db, tenant, users, 'displayName sw "MüLL"')
    assert {"jörg"} == matching(db, tenant, users, 'userName eq "JÖRG"')


def test_meta_dates_compare_as_datetimes(db: Database, tenant: TenantRecord,
                                         users: dict[str, ScimUser]) -> None:
    bob = users["bob"]
    created = bob.created_at.isoformat().replace("+00:00", "Z")

    assert {"bob"} == matching(db, tenant, users, f'meta.created eq "{created}"')
    assert {"carol", "dave\\x", "erin"} == matching(
        db, tenant, users, f'meta.created gt "{created}"')
    assert {"alice@example.org"} == matching(db, tenant, users,
                                             f'meta.lastModified lt "{created}"')
    assert {"alice@example.org", "bob"} == matching(
        db, tenant, users, f'meta.lastModified le "{bob.created_at.isoformat()}"')


def test_a_filter_never_sees_another_tenants_users(
        db: Database, clock: Clock, tenant: TenantRecord, other_tenant: TenantRecord,
        users: dict[str, ScimUser]) -> None:
    with UnitOfWork(db) as uow:
        uow.scim.users.create_user(
            other_tenant.id, user_name="bob", external_id=None, external_id_connection_id=None,
            active=True, email=None, scim={}, profile={}, now=clock())
        uow.commit()

    assert {"bob"} == matching(db, tenant, users, 'userName eq "bob"')
    with UnitOfWork(db, readonly=True) as uow:
        assert uow.scim.users.get_user(other_tenant.id, users["bob"].id) is None


def test_groups_of_a_user_are_filterable(db: Database, clock: Clock, tenant: TenantRecord,
                                         users: dict[str, ScimUser]) -> None:
    with UnitOfWork(db) as uow:
        group = uow.scim.groups.create_group(tenant.id, display_name="Nurses",
                                             external_id=None, now=clock())
        uow.scim.groups.add_members(group.id, [users["bob"].id, users["erin"].id], now=clock())
        uow.commit()

    assert {"bob", "erin"} == matching(db, tenant, users, f'groups.value eq "{group.id}"')
    assert {"bob", "erin"} == matching(db, tenant, users, 'groups.display eq "NURSES"')
    assert {"bob", "erin"} == matching(db, tenant, users, 'groups pr')
    assert {"alice@example.org", "carol", "dave\\x"} == matching(
        db, tenant, users, f'not (groups[value eq "{group.id}"])')


@pytest.mark.parametrize("text", [
    'nickname eq "x" and password eq "x"',
    'userName.foo eq "x"',
    'urn:example:Other:userName eq "x"',
    'emails.nope eq "x"',
    'emails[nope eq "x"]',
    'userName[value eq "x"]',
    'active eq "true"',
    'active gt true',
    'userName eq 12',
    'meta.created gt "yesterday"',
    'meta.created co "2026"',
    'name eq "x"',
])
def test_an_untranslatable_filter_is_an_invalid_filter(
        db: Database, tenant: TenantRecord, text: str) -> None:
    with UnitOfWork(db, readonly=True) as uow, pytest.raises(InvalidFilter):
        uow.scim.users.query_users(tenant.id, parse_filter(text))


# -- sorting and pagination -------------------------------------------------------------------
def test_pages_are_stable_and_cover_every_user_once(
        db: Database, clock: Clock, tenant: TenantRecord) -> None:
    with UnitOfWork(db) as uow:
        for i in range(23):
            uow.scim.users.create_user(
                tenant.id, user_name=f"user{i:02d}", external_id=None,
                external_id_connection_id=None, active=True, email=None,
                scim={"title": "same"} if i % 2 else {}, profile={}, now=clock())
        uow.commit()

    for sort_by in (None, "title", "meta.created", "userName", "externalId"):
        for descending in (False, True):
            seen: list[str] = []
            with UnitOfWork(db, readonly=True) as uow:
                _, everyone = uow.scim.users.query_users(
                    tenant.id, None, sort_by=sort_by, descending=descending)
                for start in range(1, 24, 5):  # pages past the middle are read from the end
                    total, page = uow.scim.users.query_users(
                        tenant.id, None, sort_by=sort_by, descending=descending,
                        start_index=start, count=5)
                    assert 23 == total
                    seen += [u.id for u in page]
            assert [u.id for u in everyone] == seen, (sort_by, descending)
            assert 23 == len(set(seen))


def test_sort_by_orders_values_and_puts_absent_ones_last(
        db: Database, tenant: TenantRecord, users: dict[str, ScimUser]) -> None:
    with UnitOfWork(db, readonly=True) as uow:
        _, by_family = uow.scim.users.query_users(tenant.id, None, sort_by="name.familyName")
        _, by_name_desc = uow.scim.users.query_users(tenant.id, None, sort_by="userName",
                                                     descending=True)

    assert ["bob", "carol", "Alice@Example.org"] == [u.user_name for u in by_family][:3]
    assert ["Erin@JIT.org", "dave\\x", "carol", "bob", "Alice@Example.org"] == [
        u.effective_user_name for u in by_name_desc]


def test_start_index_and_count_follow_rfc_7644_3_4_2_4(
        db: Database, tenant: TenantRecord, users: dict[str, ScimUser]) -> None:
    with UnitOfWork(db, readonly=True) as uow:
        assert (5, []) == uow.scim.users.query_users(tenant.id, None, count=0)
        total, page = uow.scim.users.query_users(tenant.id, None, start_index=0, count=2)
        assert (5, 2) == (total, len(page))
        total, page = uow.scim.users.query_users(tenant.id, None, start_index=5, count=10)
        assert (5, 1) == (total, len(page))
        assert (5, []) == uow.scim.users.query_users(tenant.id, None, start_index=9)
    with pytest.raises(InvalidFilter), UnitOfWork(db, readonly=True) as uow:
        uow.scim.users.query_users(tenant.id, None, sort_by="emails[type eq 1]")


# -- writes -----------------------------------------------------------------------------------
def test_user_name_is_unique_per_tenant_case_insensitively(
        db: Database, clock: Clock, tenant: TenantRecord, other_tenant: TenantRecord,
        users: dict[str, ScimUser]) -> None:
    def create(tenant_id: int, user_name: str) -> None:
        with UnitOfWork(db) as uow:
            uow.scim.users.create_user(
                tenant_id, user_name=user_name, external_id=None,
                external_id_connection_id=None, active=True, email=None, scim={}, profile={},
                now=clock())
            uow.commit()

    with pytest.raises(Uniqueness):
        create(tenant.id, "BOB")
    with pytest.raises(Uniqueness):  # the JIT account's email is its userName
        create(tenant.id, "erin@JIT.org")
    create(other_tenant.id, "BOB")


def test_a_jit_account_is_found_by_user_name_and_can_be_given_one(
        db: Database, clock: Clock, tenant: TenantRecord, users: dict[str, ScimUser]) -> None:
    erin = users["erin"]
    assert erin.user_name is None and erin.scim is None
    assert "erin@jit.org" == (erin.effective_user_name or "").lower()

    with UnitOfWork(db) as uow:
        found = uow.scim.users.find_by_user_name(tenant.id, "ERIN@jit.org")
        assert found is not None and erin.id == found.id
        replaced = uow.scim.users.replace_user(
            erin.id, expected_version=erin.version, user_name="erin", external_id="e-1",
            email="Erin@JIT.org", scim={"emails": [{"value": "Erin@JIT.org"}]}, profile={},
            now=clock())
        uow.commit()

    assert ("erin", erin.version + 1, "jit") == (replaced.user_name, replaced.version,
                                                 replaced.provisioned_by)
    assert {"erin"} == matching(db, tenant, users, 'userName eq "Erin"')
    assert set() == matching(db, tenant, users, 'userName eq "erin@jit.org"')
    assert {"erin"} == matching(db, tenant, users, 'emails eq "erin@jit.org"')


def test_replace_user_checks_the_version_and_the_user_name(
        db: Database, clock: Clock, tenant: TenantRecord, users: dict[str, ScimUser]) -> None:
    bob = users["bob"]
    with pytest.raises(VersionMismatch), UnitOfWork(db) as uow:
        uow.scim.users.replace_user(
            bob.id, expected_version=bob.version + 1, user_name="bob", external_id=None,
            email=None, scim={}, profile={}, now=clock())
    with pytest.raises(Uniqueness), UnitOfWork(db) as uow:
        uow.scim.users.replace_user(
            bob.id, expected_version=None, user_name="CAROL", external_id=None, email=None,
            scim={}, profile={}, now=clock())
    with pytest.raises(Uniqueness), UnitOfWork(db) as uow:  # the JIT account's email
        uow.scim.users.replace_user(
            bob.id, expected_version=None, user_name="erin@jit.ORG", external_id=None,
            email=None, scim={}, profile={}, now=clock())
    with UnitOfWork(db) as uow:
        same = uow.scim.users.replace_user(
            bob.id, expected_version=None, user_name="Bob", external_id=None, email=None,
            scim={}, profile={"name": "Bob"}, now=clock(), status="deactivated")
        uow.commit()
    assert ("Bob", "deactivated", clock(), {"name": "Bob"}) == (
        same.user_name, same.status, same.deactivated_at, same.profile)


def test_delete_user_removes_the_account_and_its_memberships(
        db: Database, clock: Clock, tenant: TenantRecord, users: dict[str, ScimUser]) -> None:
    with UnitOfWork(db) as uow:
        group = uow.scim.groups.create_group(tenant.id, display_name="G", external_id=None,
                                             now=clock())
        uow.scim.groups.add_members(group.id, [users["bob"].id], now=clock())
        uow.scim.users.delete_user(users["bob"].id)
        uow.commit()
    with UnitOfWork(db, readonly=True) as uow:
        assert uow.scim.users.get_user(tenant.id, users["bob"].id) is None
        assert [] == uow.scim.groups.members(group.id)


# -- groups -----------------------------------------------------------------------------------
def test_group_display_names_are_unique_per_tenant(
        db: Database, clock: Clock, tenant: TenantRecord, other_tenant: TenantRecord) -> None:
    with UnitOfWork(db) as uow:
        first = uow.scim.groups.create_group(tenant.id, display_name="Nurses",
                                             external_id="g1", now=clock())
        uow.scim.groups.create_group(tenant.id, display_name="Doctors", external_id=None,
                                     now=clock())
        uow.scim.groups.create_group(other_tenant.id, display_name="NURSES",
                                     external_id=None, now=clock())
        with pytest.raises(Uniqueness):
            uow.scim.groups.create_group(tenant.id, display_name="nurses", external_id=None,
                                         now=clock())
        with pytest.raises(Uniqueness):
            uow.scim.groups.replace_group(first.id, expected_version=1, display_name="DOCTORS",
                                          external_id=None, now=clock())
        renamed = uow.scim.groups.replace_group(first.id, expected_version=1,
                                                display_name="Nurses (all)",
                                                external_id="g1", now=clock())
        with pytest.raises(VersionMismatch):
            uow.scim.groups.replace_group(first.id, expected_version=1, display_name="x",
                                          external_id=None, now=clock())
        uow.commit()
    assert ("Nurses (all)", 2) == (renamed.display_name, renamed.version)


def test_membership_batches_add_only_missing_and_report_what_changed(
        db: Database, clock: Clock, tenant: TenantRecord, other_tenant: TenantRecord,
        users: dict[str, ScimUser]) -> None:
    ids = sorted(u.id for u in users.values())
    with UnitOfWork(db) as uow:
        group = uow.scim.groups.create_group(tenant.id, display_name="G", external_id=None,
                                             now=clock())
        assert sorted(ids[:3]) == sorted(uow.scim.groups.add_members(group.id, ids[:3],
                                                                     now=clock()))
        assert [ids[3]] == uow.scim.groups.add_members(group.id, [*ids[1:4], ids[3]],
                                                       now=clock())
        assert [] == uow.scim.groups.add_members(group.id, ids[:4], now=clock())
        assert [ids[0]] == uow.scim.groups.remove_members(group.id, [ids[0], "nobody"])
        assert 3 == uow.scim.groups.count_members(group.id)
        assert 2 == uow.scim.groups.touch_group(group.id, clock())
        uow.commit()

    with UnitOfWork(db) as uow:
        stranger = uow.scim.users.create_user(
            other_tenant.id, user_name="x", external_id=None, external_id_connection_id=None,
            active=True, email=None, scim={}, profile={}, now=clock())
        with pytest.raises(UnknownMembers) as refused:
            uow.scim.groups.add_members(group.id, [ids[0], stranger.id, "nope"], now=clock())
        assert (stranger.id, "nope") == refused.value.account_ids

    with UnitOfWork(db) as uow:
        added, removed = uow.scim.groups.replace_members(group.id, [ids[0], ids[1]],
                                                         now=clock())
        assert ([ids[0]], sorted([ids[2], ids[3]])) == (added, sorted(removed))
        assert [ids[1]] == uow.scim.groups.remove_members_where(
            group.id, parse_filter(f'value eq "{ids[1]}"'))
        light = uow.scim.groups.get_group(tenant.id, group.id, with_members=False)
        full = uow.scim.groups.get_group(tenant.id, group.id)
        uow.commit()
    assert light is not None and light.members is None
    assert full is not None and full.members is not None
    assert [ids[0]] == [m.value for m in full.members]


def test_groups_filter_on_display_name_members_and_meta(
        db: Database, clock: Clock, tenant: TenantRecord, users: dict[str, ScimUser]) -> None:
    with UnitOfWork(db) as uow:
        nurses = uow.scim.groups.create_group(tenant.id, display_name="Nurses",
                                              external_id="N-1", now=clock())
        clock.advance(minutes=1)
        doctors = uow.scim.groups.create_group(tenant.id, display_name="Doctors_on_call",
                                               external_id=None, now=clock())
        uow.scim.groups.add_members(nurses.id, [users["bob"].id], now=clock())
        uow.commit()

    def groups(text: str, **kwargs: Any) -> list[str]:
        with UnitOfWork(db, readonly=True) as uow:
            _, page = uow.scim.groups.query_groups(tenant.id, parse_filter(text), **kwargs)
        return [g.display_name for g in page]

    assert ["Nurses"] == groups('displayName eq "NURSES"')
    assert ["Doctors_on_call"] == groups('displayName co "s_o"')
    assert [] == groups('displayName co "s%o"')
    assert ["Nurses"] == groups('externalId eq "N-1"')
    assert [] == groups('externalId eq "n-1"')
    assert ["Nurses"] == groups(f'members[value eq "{users["bob"].id}"]')
    assert ["Nurses"] == groups(f'members.value eq "{users["bob"].id}"')
    assert ["Nurses"] == groups('members pr')
    assert ["Doctors_on_call"] == groups('not (members pr)')
    created = doctors.created_at.isoformat()
    assert ["Doctors_on_call", "Nurses"] == groups(f'meta.created le "{created}"',
                                                   sort_by="displayName")
    with UnitOfWork(db, readonly=True) as uow:
        assert [(nurses.id, "Nurses")] == uow.scim.groups.groups_of(users["bob"].id)
        assert {users["bob"].id: [(nurses.id, "Nurses")], users["carol"].id: []} == (
            uow.scim.groups.groups_of_many([users["bob"].id, users["carol"].id]))
        total, page = uow.scim.groups.query_groups(tenant.id, None, with_members=True)
    assert 2 == total
    assert {"Nurses": 1, "Doctors_on_call": 0} == {
        g.display_name: len(g.members or ()) for g in page}


# -- tokens -----------------------------------------------------------------------------------
def test_tokens_are_found_by_hash_until_revoked_or_expired(
        db: Database, clock: Clock, tenant: TenantRecord, connection: ConnectionRecord) -> None:
    live = hashlib.sha256(b"live").hexdigest()
    short = hashlib.sha256(b"short").hexdigest()
    with UnitOfWork(db) as uow:
        live_id = uow.scim.tokens.create_token(tenant.id, "okta", live,
                                               connection_id=connection.id, expires_at=None,
                                               now=clock())
        uow.scim.tokens.create_token(tenant.id, "tmp", short, connection_id=None,
                                     expires_at=clock() + timedelta(hours=1), now=clock())
        uow.commit()

    with UnitOfWork(db) as uow:
        found = uow.scim.tokens.find_active(live, clock())
        assert found is not None
        assert (live_id, tenant.id, connection.id, live) == (
            found.id, found.tenant_id, found.connection_id, found.token_hash)
        assert uow.scim.tokens.find_active(short, clock() + timedelta(hours=2)) is None
        assert uow.scim.tokens.find_active(hashlib.sha256(b"x").hexdigest(), clock()) is None
        uow.scim.tokens.touch(live_id, clock())
        uow.scim.tokens.touch(live_id, clock() + timedelta(seconds=30))  # throttled
        uow.scim.tokens.revoke(live_id, clock())
        uow.commit()

    with UnitOfWork(db, readonly=True) as uow:
        assert uow.scim.tokens.find_active(live, clock()) is None
        listed = {r.name: r for r in uow.scim.tokens.list_tokens(tenant.id)}
    assert {"okta", "tmp"} == set(listed)
    assert (clock(), clock()) == (listed["okta"].last_used_at, listed["okta"].revoked_at)


# -- the translator against a reference evaluator ---------------------------------------------
def _view(user: ScimUser) -> dict[str, Any]:
    """The user as SCIM shows it (the attributes the property filters on)."""
    scim = dict(user.scim) if user.scim is not None else None
    emails = (scim or {}).get("emails") if scim is not None else (
        [{"value": user.email, "primary": True}] if user.email else [])
    return {"username": user.effective_user_name, "externalid": user.external_id,
            "title": (scim or {}).get("title"), "emails": emails or []}


CASE_EXACT = {"externalid"}


def _compare(actual: Any, op: str, expected: Any, case_exact: bool) -> bool:
    if expected is None:
        return actual is None or actual == ""
    if actual is None or not isinstance(actual, type(expected)):
        return False
    if isinstance(expected, bool):
        return bool(actual == expected)
    a, e = (str(actual), str(expected)) if case_exact else (actual.lower(), expected.lower())
    return {"eq": a == e, "co": e in a, "sw": a.startswith(e), "ew": a.endswith(e),
            "gt": a > e, "ge": a >= e, "lt": a < e, "le": a <= e}[op]


def _evaluate(node: Filter, view: Mapping[str, Any]) -> bool:
    """RFC 7644 §3.4.2.2, written out in Python: the oracle the SQL must agree with."""
    if isinstance(node, And):
        return _evaluate(node.left, view) and _evaluate(node.right, view)
    if isinstance(node, Or):
        return _evaluate(node.left, view) or _evaluate(node.right, view)
    if isinstance(node, Not):
        return not _evaluate(node.operand, view)
    if isinstance(node, ValuePath):
        return any(_evaluate(node.filter, {k.lower(): v for k, v in e.items()})
                   for e in view[node.path.attribute.lower()])
    name = node.path.attribute.lower()
    value = view.get(name)
    if name == "emails":
        sub = (node.path.sub_attribute or "value").lower()
        if isinstance(node, Present) and node.path.sub_attribute is None:
            return bool(value)
        return any(_evaluate(_rebase(node, sub), {k.lower(): v for k, v in e.items()})
                   for e in value or [])
    if isinstance(node, Present):
        return value is not None and value != ""
    assert isinstance(node, Compare)
    if node.op == "ne":
        return not _compare(value, "eq", node.value, name in CASE_EXACT)
    return _compare(value, node.op, node.value, name in CASE_EXACT)


def _rebase(node: Compare | Present, sub: str) -> Compare | Present:
    path = AttrPath(sub)
    return Present(path) if isinstance(node, Present) else Compare(path, node.op, node.value)


_WORDS = st.sampled_from(["a", "A", "b", "ab", "a%", "%", "_", "a_b", "\\", "x.org", "@", ""])
_OPS = st.sampled_from(["eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le"])


def _atoms(attribute: str) -> st.SearchStrategy[Filter]:
    path = AttrPath(attribute)
    return st.one_of(st.builds(Compare, st.just(path), _OPS, _WORDS),
                     st.just(Present(path)), st.just(Compare(path, "eq", None)))


_ELEMENT = st.one_of(_atoms("value"), _atoms("type"),
                     st.builds(Compare, st.just(AttrPath("primary")), st.just("eq"),
                               st.booleans()))
_FILTERS: st.SearchStrategy[Filter] = st.recursive(
    st.one_of(_atoms("userName"), _atoms("externalId"), _atoms("title"),
              st.builds(lambda a, s: Compare(AttrPath("emails", s), a.op, a.value)
                        if isinstance(a, Compare) else Present(AttrPath("emails", s)),
                        _atoms("x"), st.sampled_from(["value", "type"])),
              st.builds(ValuePath, st.just(AttrPath("emails")),
                        st.recursive(_ELEMENT, lambda c: st.one_of(
                            st.builds(And, c, c), st.builds(Or, c, c), st.builds(Not, c)),
                            max_leaves=3))),
    lambda children: st.one_of(st.builds(And, children, children),
                               st.builds(Or, children, children), st.builds(Not, children)),
    max_leaves=5)

POPULATION = [
    Person("a", "A@x.org", "A", True, {"title": "a%", "emails": [
        {"value": "A@x.org", "type": "a", "primary": True}, {"value": "_", "type": "b"}]}),
    Person("A_b", None, "a_b", True, {"title": "", "emails": [{"value": "ab", "type": "A"}]}),
    Person("a%", "b@x.org", None, False, {"title": "%", "emails": []}),
    Person("\\", None, "\\", True, {"emails": [{"value": "a%", "primary": False}]}),
    Person("x.org", None, "%", True, {"title": "A_B"}),
]


@settings(max_examples=120, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_the_sql_filter_returns_exactly_what_the_reference_evaluator_accepts(
        db: Database, clock: Clock, tenant: TenantRecord, data: st.DataObject) -> None:
    with UnitOfWork(db, readonly=True) as uow:
        population, _ = uow.scim.users.query_users(tenant.id, None)
    if not population:
        with UnitOfWork(db) as uow:
            for person in POPULATION:
                uow.scim.users.create_user(
                    tenant.id, user_name=person.user_name, external_id=person.external_id,
                    external_id_connection_id=None, active=person.active,
                    email=person.email, scim=dict(person.scim or {}), profile={}, now=clock())
            uow.accounts.create(tenant_id=tenant.id,
                                changes=Changes(profile={"email": (None, "Ab@X.org")}),
                                provisioned_by="jit", now=clock())
            uow.commit()
    with UnitOfWork(db, readonly=True) as uow:
        _, everyone = uow.scim.users.query_users(tenant.id, None)
    node = data.draw(_FILTERS)

    with UnitOfWork(db, readonly=True) as uow:
        _, page = uow.scim.users.query_users(tenant.id, node, count=100)

    expected = sorted(u.id for u in everyone if _evaluate(node, _view(u)))
    assert expected == sorted(u.id for u in page), node
