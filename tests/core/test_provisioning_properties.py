"""Properties of decide(), over generated accounts, mapped identities and policies."""

from __future__ import annotations

import dataclasses

from hypothesis import given
from hypothesis import strategies as st

from jitprov.core.identity import Account
from jitprov.core.mapping import load_policy
from jitprov.core.mapping.result import Denial, MappedIdentity, PolicySettings
from jitprov.core.provisioning import (
    Create,
    Deny,
    Link,
    LinkCandidate,
    NoChange,
    Update,
    apply_changes,
    decide,
)
from jitprov.testing.builders import HOSPITAL
from tests.strategies import accounts, denials, login_claims, mapped_identities, policy_settings

candidates = st.lists(st.builds(LinkCandidate, accounts,
                                st.sampled_from(["email", "external_id"])), max_size=2).map(
    lambda found: [LinkCandidate(dataclasses.replace(c.account, id=f"acc-{i}"), c.matched_by)
                   for i, c in enumerate(found)])
existing_or_none = st.none() | accounts


@given(existing_or_none, mapped_identities, policy_settings, candidates)
def test_same_input_gives_same_decision(existing: Account | None, mapped: MappedIdentity,
                                        policy: PolicySettings,
                                        cands: list[LinkCandidate]) -> None:
    assert decide(existing, mapped, policy, cands) == decide(existing, mapped, policy, cands)


@given(existing_or_none, mapped_identities, denials, policy_settings, candidates)
def test_a_matching_deny_always_denies(existing: Account | None, mapped: MappedIdentity,
                                       deny: tuple[Denial, ...], policy: PolicySettings,
                                       cands: list[LinkCandidate]) -> None:
    decision = decide(existing, dataclasses.replace(mapped, denials=deny), policy, cands)
    assert isinstance(decision, Deny)


@given(accounts, mapped_identities, policy_settings)
def test_rules_never_remove_a_non_rule_grant(account: Account, mapped: MappedIdentity,
                                             policy: PolicySettings) -> None:
    decision = decide(account, mapped, policy)
    if isinstance(decision, Update):
        assert all(g.by_rule for g in decision.changes.grants_revoked)


@given(accounts, mapped_identities, policy_settings)
def test_logins_never_overwrite_scim_or_manual_profile_fields(
        account: Account, mapped: MappedIdentity, policy: PolicySettings) -> None:
    decision = decide(account, mapped, policy)
    if isinstance(decision, Update):
        for name in decision.changes.profile:
            source = account.profile_sources.get(name)
            assert source is None or source.startswith("rule:")


@given(existing_or_none, mapped_identities, policy_settings, candidates)
def test_provisioning_twice_changes_nothing_the_second_time(
        existing: Account | None, mapped: MappedIdentity, policy: PolicySettings,
        cands: list[LinkCandidate]) -> None:
    first = decide(existing, mapped, policy, cands)
    if isinstance(first, Create):
        after = apply_changes(Account(id="new", tenant="t"), first.changes)
    elif isinstance(first, Update | Link):
        base = existing if isinstance(first, Update) else next(
            c.account for c in cands if c.account.id == first.account_id)
        assert base is not None
        after = apply_changes(base, first.changes)
    else:
        return
    assert isinstance(decide(after, mapped, policy, cands), NoChange)


@given(login_claims)
def test_real_policy_end_to_end_is_idempotent(claims: dict[str, object]) -> None:
    policy = load_policy(HOSPITAL.format(linking="never"), "hospital.yaml")
    mapped = policy.map(claims)
    first = decide(None, mapped, policy.settings)
    if not isinstance(first, Create):
        assert isinstance(first, Deny)
        return
    after = apply_changes(Account(id="new", tenant="t"), first.changes)
    assert isinstance(decide(after, policy.map(claims), policy.settings), NoChange)
