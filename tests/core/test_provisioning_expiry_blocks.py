"""decide() with time-bound grants and admin blocks: an expired grant is not held; a blocked
role is never granted nor requested by a rule, and a rule's grant of it goes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from jitprov.core.identity import Account, PendingGrant, RoleGrant
from jitprov.core.provisioning import NoChange, Update, apply_changes, decide
from tests.core.test_provisioning import SYNC, account, mapped

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
PAST = NOW - timedelta(seconds=1)
LATER = NOW + timedelta(days=1)
CHARGE = (("charge-nurse", "rule:charge"),)


def test_an_expired_approval_is_not_held_and_the_rule_asks_again() -> None:
    acc = account(grants=frozenset({RoleGrant("staff", "rule:default"),
                                    RoleGrant("charge-nurse", "approval", PAST)}))
    decision = decide(acc, mapped(pending=CHARGE), SYNC, now=NOW)
    assert isinstance(decision, Update)
    assert decision.changes.pending_added == frozenset({PendingGrant("charge-nurse",
                                                                     "rule:charge")})
    assert decision.changes.grants_revoked == frozenset()  # the sweep removes the row


def test_an_approval_still_valid_is_held_and_nothing_is_asked() -> None:
    acc = account(grants=frozenset({RoleGrant("staff", "rule:default"),
                                    RoleGrant("charge-nurse", "approval", LATER)}))
    assert isinstance(decide(acc, mapped(pending=CHARGE), SYNC, now=NOW), NoChange)


def test_expiry_is_exact_a_grant_expiring_now_is_gone() -> None:
    grant = RoleGrant("x", "manual", NOW)
    assert (grant.active_at(PAST), grant.active_at(NOW)) == (True, False)
    acc = account(grants=frozenset({grant, RoleGrant("y", "manual")}))
    assert acc.at(NOW).roles == frozenset({"y"})
    assert acc.at(PAST) is acc


def test_an_expired_rule_row_granted_again_is_replaced_not_duplicated() -> None:
    stale = RoleGrant("staff", "rule:default", PAST)
    decision = decide(account(grants=frozenset({stale})), mapped(), SYNC, now=NOW)
    assert isinstance(decision, Update)
    assert decision.changes.grants_revoked == frozenset({stale})
    assert decision.changes.grants_added == frozenset({RoleGrant("staff", "rule:default")})
    after = apply_changes(account(grants=frozenset({stale})), decision.changes)
    assert after.grants == frozenset({RoleGrant("staff", "rule:default")})


def test_a_blocked_role_is_not_granted_by_its_rule() -> None:
    acc = account(blocked=frozenset({"nurse"}))
    decision = decide(acc, mapped(grants=(("staff", "rule:default"), ("nurse", "rule:n"))),
                      SYNC, now=NOW)
    assert isinstance(decision, NoChange)
    assert any(e.kind == "note" and e.outcome == "blocked" and e.roles == ("nurse",)
               for e in decision.trace)


def test_a_held_rule_grant_of_a_blocked_role_is_revoked_even_without_groups() -> None:
    acc = account(grants=frozenset({RoleGrant("staff", "rule:default"),
                                    RoleGrant("nurse", "rule:n")}),
                  blocked=frozenset({"nurse"}))
    # the groups claim is missing: other rule grants are kept, the blocked one goes
    decision = decide(acc, mapped(groups=None), SYNC, now=NOW)
    assert isinstance(decision, Update)
    assert decision.changes.grants_revoked == frozenset({RoleGrant("nurse", "rule:n")})


def test_a_blocked_role_is_never_requested_and_its_request_is_withdrawn() -> None:
    acc = account(pending=frozenset({PendingGrant("charge-nurse", "rule:charge")}),
                  blocked=frozenset({"charge-nurse"}))
    decision = decide(acc, mapped(groups=frozenset({"Charge"}), pending=CHARGE), SYNC,
                      now=NOW)
    assert isinstance(decision, Update)
    assert decision.changes.pending_added == frozenset()
    assert decision.changes.pending_withdrawn == frozenset({PendingGrant("charge-nurse",
                                                                         "rule:charge")})


def test_a_block_leaves_grants_of_other_sources_to_the_admin() -> None:
    acc = account(grants=frozenset({RoleGrant("staff", "rule:default"),
                                    RoleGrant("nurse", "scim")}),
                  blocked=frozenset({"nurse"}))
    assert isinstance(decide(acc, mapped(), SYNC, now=NOW), NoChange)



def test_a_block_wins_at_read_time_over_a_stored_grant_of_the_role() -> None:
    """A grant stored by a writer that raced the block is never held: ``Account.at`` leaves
    it out (forward-auth, /me and the admin views read through it)."""
    now = datetime(2026, 1, 1, tzinfo=UTC)
    account = Account(id="a", tenant="t", blocked=frozenset({"nurse"}), grants=frozenset({
        RoleGrant("nurse", "manual"), RoleGrant("nurse", "rule:idp/nurses"),
        RoleGrant("staff", "rule:idp/default")}))
    assert account.at(now).roles == {"staff"}
