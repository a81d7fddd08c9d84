"""reevaluate_grants: what a SCIM membership change does to one identity's rule grants, without
a login. It must be exactly the grant part of what that identity's login would decide."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from jitprov.core.identity import Account, PendingGrant, RoleGrant
from jitprov.core.mapping.result import Denial, MappedIdentity, PolicySettings, RuleGrantIntent
from jitprov.core.provisioning import (
    Changes,
    Deny,
    NoChange,
    Update,
    decide,
    reevaluate_grants,
)
from tests.strategies import policy_settings

NOW = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
_roles = st.sampled_from(["staff", "nurse", "pharmacist", "admin"])
_owned = st.sampled_from(["rule:idp/default", "rule:idp/pharmacy", "rule:idp/nurses"])
_sources = _owned | st.sampled_from(["rule:other/pharmacy", "scim", "manual", "approval"])
_expiry = st.none() | st.sampled_from([NOW - timedelta(days=1), NOW + timedelta(days=1)])

accounts = st.builds(
    lambda status, grants, pending, blocked, groups: Account(
        id="acc", tenant="t", status=status, grants=grants, pending=pending,
        blocked=blocked, groups=groups),
    status=st.sampled_from(["active", "active", "suspended", "deactivated"]),
    grants=st.dictionaries(st.tuples(_roles, _sources), _expiry, max_size=5).map(
        lambda held: frozenset(RoleGrant(r, s, e) for (r, s), e in held.items())),
    pending=st.frozensets(st.builds(PendingGrant, _roles, _owned
                                    | st.just("rule:other/pharmacy")), max_size=2),
    blocked=st.frozensets(_roles, max_size=1),
    groups=st.frozensets(st.sampled_from(["Nurses", "Porters"]), max_size=2),
)
mapped_identities = st.builds(
    MappedIdentity,
    profile=st.dictionaries(st.sampled_from(["email", "name"]),
                            st.sampled_from(["a@x.org", "Ana"]), max_size=2),
    groups=st.none() | st.frozensets(st.sampled_from(["Nurses", "Doctors"]), min_size=1,
                                     max_size=2),
    grants=st.frozensets(st.builds(RuleGrantIntent, _roles, _owned), max_size=3),
    pending=st.frozensets(st.builds(RuleGrantIntent, _roles, _owned), max_size=2),
)


def _grant_part(changes: Changes) -> Changes:
    return Changes(grants_added=changes.grants_added, grants_revoked=changes.grants_revoked,
                   pending_added=changes.pending_added,
                   pending_withdrawn=changes.pending_withdrawn)


@given(accounts, mapped_identities, policy_settings, st.booleans())
def test_equals_the_grant_part_of_the_login_decision(
        account: Account, mapped: MappedIdentity, policy: PolicySettings,
        denied: bool) -> None:
    active = replace(account, status="active")
    if denied:
        mapped = replace(mapped, grants=frozenset(), pending=frozenset(),
                         denials=(Denial("left", "left the hospital"),))
    decision = decide(active, mapped, policy, owner="idp", now=NOW)
    assert isinstance(decision, Update | NoChange | Deny)
    login = _grant_part(decision.changes) if isinstance(decision, Update) else Changes()
    assert reevaluate_grants(active, mapped, policy, "idp", now=NOW) == login


@given(accounts, mapped_identities, policy_settings)
def test_never_touches_profile_groups_or_grants_it_does_not_own(
        account: Account, mapped: MappedIdentity, policy: PolicySettings) -> None:
    changes = reevaluate_grants(account, mapped, policy, "idp", now=NOW)
    assert not changes.profile and not changes.groups_added and not changes.groups_removed
    assert all(g.source.startswith("rule:idp/") for g in changes.grants_revoked)
    assert all(p.source.startswith("rule:idp/") for p in changes.pending_withdrawn)


def test_a_deny_rule_is_left_to_the_next_login() -> None:
    """A login that a deny rule refuses writes no grant: neither does a re-evaluation."""
    account = Account(id="acc", tenant="t", grants=frozenset({
        RoleGrant("pharmacist", "rule:idp/pharmacy")}))
    mapped = MappedIdentity(groups=frozenset({"Nurses"}),
                            denials=(Denial("left", "left the hospital"),))
    assert isinstance(decide(account, mapped, PolicySettings(), owner="idp"), Deny)
    assert reevaluate_grants(account, mapped, PolicySettings(), "idp").is_empty


def test_an_inactive_account_is_reevaluated_all_the_same() -> None:
    account = Account(id="acc", tenant="t", status="deactivated", grants=frozenset({
        RoleGrant("pharmacist", "rule:idp/pharmacy"), RoleGrant("pharmacist", "manual")}))
    changes = reevaluate_grants(account, MappedIdentity(groups=frozenset({"Nurses"})),
                                PolicySettings(), "idp")
    assert changes.grants_revoked == {RoleGrant("pharmacist", "rule:idp/pharmacy")}


def test_create_only_changes_nothing() -> None:
    account = Account(id="acc", tenant="t", grants=frozenset({
        RoleGrant("pharmacist", "rule:idp/pharmacy")}))
    changes = reevaluate_grants(account, MappedIdentity(groups=frozenset({"Nurses"})),
                                PolicySettings(on_login="create_only"), "idp")
    assert changes.is_empty
