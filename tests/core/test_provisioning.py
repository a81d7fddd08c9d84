"""decide(): the semantics of the spine, one behaviour per test."""

from __future__ import annotations

from jitprov.core.identity import Account, PendingGrant, RoleGrant
from jitprov.core.mapping.result import (
    Denial,
    MappedIdentity,
    PolicySettings,
    RuleGrantIntent,
)
from jitprov.core.provisioning import (
    Create,
    Deny,
    Link,
    LinkCandidate,
    NoChange,
    Pending,
    Update,
    apply_changes,
    decide,
)

SYNC = PolicySettings(mirrors_groups=True)


def mapped(*, email: str | None = "ana@example.org", groups: frozenset[str] | None = None,
           grants: tuple[tuple[str, str], ...] = (("staff", "rule:default"),),
           pending: tuple[tuple[str, str], ...] = (), denials: tuple[Denial, ...] = (),
           verified: bool = True, **profile: str) -> MappedIdentity:
    prof = dict(profile)
    if email:
        prof["email"] = email
    return MappedIdentity(profile=prof, groups=groups,
                          grants=frozenset(RuleGrantIntent(r, s) for r, s in grants),
                          pending=frozenset(RuleGrantIntent(r, s) for r, s in pending),
                          denials=denials, email_verified=verified)


def account(**kw: object) -> Account:
    base: dict[str, object] = {"id": "acc-1", "tenant": "t",
                               "profile": {"email": "ana@example.org"},
                               "profile_sources": {"email": "rule:profile.email"},
                               "grants": frozenset({RoleGrant("staff", "rule:default")})}
    base.update(kw)
    return Account(**base)  # type: ignore[arg-type]


def test_creates_account_with_profile_groups_and_rule_grants_at_first_login() -> None:
    m = mapped(groups=frozenset({"Nurses"}), grants=(("staff", "rule:default"),
                                                     ("nurse", "rule:nurses")), name="Ana")
    decision = decide(None, m, SYNC)
    assert isinstance(decision, Create)
    assert decision.changes.profile == {"email": (None, "ana@example.org"), "name": (None, "Ana")}
    assert decision.changes.groups_added == frozenset({"Nurses"})
    assert decision.changes.grants_added == frozenset({RoleGrant("staff", "rule:default"),
                                                       RoleGrant("nurse", "rule:nurses")})


def test_deny_rule_wins_over_matching_grants() -> None:
    m = mapped(grants=(("admin", "rule:a"),), denials=(Denial("unverified", "no", 3),))
    decision = decide(None, m, SYNC)
    assert isinstance(decision, Deny)
    assert (decision.code, decision.rule, decision.reason) == ("denied_by_rule", "unverified",
                                                               "no")


def test_deactivated_account_is_refused_before_anything_else() -> None:
    decision = decide(account(status="deactivated"), mapped(), SYNC)
    assert isinstance(decision, Deny)
    assert decision.code == "account_inactive"
    assert decision.account_id == "acc-1"


def test_revokes_rule_grant_when_its_rule_stops_matching() -> None:
    acc = account(grants=frozenset({RoleGrant("staff", "rule:default"),
                                    RoleGrant("nurse", "rule:nurses")}),
                  groups=frozenset({"Nurses"}))
    decision = decide(acc, mapped(groups=frozenset({"Porters"})), SYNC)
    assert isinstance(decision, Update)
    assert decision.changes.grants_revoked == frozenset({RoleGrant("nurse", "rule:nurses")})
    assert decision.changes.groups_removed == frozenset({"Nurses"})
    assert decision.changes.groups_added == frozenset({"Porters"})


def test_rules_never_remove_manual_scim_or_approval_grants() -> None:
    protected = {RoleGrant("auditor", "manual"), RoleGrant("pharmacist", "scim"),
                 RoleGrant("charge-nurse", "approval")}
    acc = account(grants=frozenset({RoleGrant("staff", "rule:default"), *protected}))
    decision = decide(acc, mapped(groups=frozenset({"x"})), SYNC)
    assert isinstance(decision, Update | NoChange)
    revoked = decision.changes.grants_revoked if isinstance(decision, Update) else frozenset()
    assert revoked & protected == frozenset()


def test_absent_groups_claim_keeps_rule_grants_by_default() -> None:
    acc = account(grants=frozenset({RoleGrant("staff", "rule:default"),
                                    RoleGrant("nurse", "rule:nurses")}),
                  groups=frozenset({"Nurses"}))
    decision = decide(acc, mapped(groups=None), SYNC)
    assert isinstance(decision, NoChange)
    assert any(e.rule == "groups_missing" and e.outcome == "kept" for e in decision.trace)


def test_absent_groups_claim_revokes_when_policy_says_so() -> None:
    acc = account(grants=frozenset({RoleGrant("staff", "rule:default"),
                                    RoleGrant("nurse", "rule:nurses")}),
                  groups=frozenset({"Nurses"}))
    decision = decide(acc, mapped(groups=None),
                      PolicySettings(groups_missing="revoke", mirrors_groups=True))
    assert isinstance(decision, Update)
    assert decision.changes.grants_revoked == frozenset({RoleGrant("nurse", "rule:nurses")})
    assert decision.changes.groups_removed == frozenset({"Nurses"})


def test_absent_groups_claim_keeps_rule_grants_without_a_groups_line_too() -> None:
    acc = account(grants=frozenset({RoleGrant("staff", "rule:default"),
                                    RoleGrant("nurse", "rule:nurses")}))
    decision = decide(acc, mapped(groups=None), PolicySettings(mirrors_groups=False))
    assert isinstance(decision, NoChange)


def test_groups_are_not_mirrored_without_a_groups_line() -> None:
    decision = decide(None, mapped(groups=frozenset({"Nurses"})),
                      PolicySettings(mirrors_groups=False))
    assert isinstance(decision, Create)
    assert decision.changes.groups_added == frozenset()


def test_approval_roles_become_pending_not_grants() -> None:
    m = mapped(pending=(("charge-nurse", "rule:charge"),))
    decision = decide(None, m, SYNC)
    assert isinstance(decision, Create)
    assert decision.changes.pending_added == frozenset({PendingGrant("charge-nurse",
                                                                     "rule:charge")})
    assert "charge-nurse" not in {g.role for g in decision.changes.grants_added}


def test_pending_grant_is_withdrawn_when_its_rule_stops_matching() -> None:
    acc = account(pending=frozenset({PendingGrant("charge-nurse", "rule:charge")}))
    decision = decide(acc, mapped(groups=frozenset({"Nurses"})), SYNC)
    assert isinstance(decision, Update)
    assert decision.changes.pending_withdrawn == frozenset({PendingGrant("charge-nurse",
                                                                         "rule:charge")})


def test_no_pending_request_for_a_role_already_held() -> None:
    acc = account(grants=frozenset({RoleGrant("staff", "rule:default"),
                                    RoleGrant("charge-nurse", "approval")}))
    decision = decide(acc, mapped(pending=(("charge-nurse", "rule:charge"),)), SYNC)
    assert isinstance(decision, NoChange)


def test_login_does_not_overwrite_profile_field_set_by_scim_or_admin() -> None:
    acc = account(profile={"email": "ana@example.org", "department": "Ward 9"},
                  profile_sources={"email": "rule:profile.email", "department": "manual"})
    decision = decide(acc, mapped(department="Ward 3"), SYNC)
    assert isinstance(decision, NoChange)
    assert any(e.rule == "profile.department" and e.outcome == "kept" for e in decision.trace)


def test_absent_claim_never_clears_a_profile_field() -> None:
    acc = account(profile={"email": "ana@example.org", "department": "Ward 3"},
                  profile_sources={"email": "rule:profile.email",
                                   "department": "rule:profile.department"})
    assert isinstance(decide(acc, mapped(), SYNC), NoChange)


def test_create_only_policy_changes_nothing_at_later_logins() -> None:
    decision = decide(account(), mapped(name="New Name", grants=(("x", "rule:x"),)),
                      PolicySettings(on_login="create_only"))
    assert isinstance(decision, NoChange)


def test_known_email_is_denied_when_linking_is_never() -> None:
    other = account(id="acc-2")
    decision = decide(None, mapped(), SYNC, [LinkCandidate(other, "email")])
    assert isinstance(decision, Deny)
    assert decision.code == "email_in_use"
    assert "linking.by_email: never" in decision.reason


def test_verified_email_links_to_the_one_matching_account() -> None:
    other = account(id="acc-2")
    decision = decide(None, mapped(), PolicySettings(link_by_email="verified_email"),
                      [LinkCandidate(other, "email")])
    assert isinstance(decision, Link)
    assert (decision.account_id, decision.matched_by) == ("acc-2", "email")


def test_unverified_email_is_never_linked() -> None:
    decision = decide(None, mapped(verified=False),
                      PolicySettings(link_by_email="verified_email"),
                      [LinkCandidate(account(id="acc-2"), "email")])
    assert isinstance(decision, Deny)
    assert decision.code == "email_unverified"


def test_admin_and_break_glass_accounts_are_never_linked_by_email() -> None:
    for kind in ("admin", "break_glass"):
        decision = decide(None, mapped(), PolicySettings(link_by_email="verified_email"),
                          [LinkCandidate(account(id="acc-2", kind=kind), "email")])
        assert isinstance(decision, Deny)
        assert decision.code == "link_refused"


def test_two_accounts_with_the_email_are_not_linked() -> None:
    decision = decide(None, mapped(), PolicySettings(link_by_email="verified_email"),
                      [LinkCandidate(account(id="a"), "email"),
                       LinkCandidate(account(id="b"), "email")])
    assert isinstance(decision, Deny)
    assert decision.code == "email_ambiguous"


def test_pending_linking_queues_the_link_for_an_admin() -> None:
    decision = decide(None, mapped(), PolicySettings(link_by_email="pending"),
                      [LinkCandidate(account(id="acc-2"), "email")])
    assert isinstance(decision, Pending)
    assert decision.account_id == "acc-2"


def test_scim_account_with_subject_as_external_id_is_linked_not_duplicated() -> None:
    scim = account(id="scim-1", provisioned_by="scim", external_id="00u1", grants=frozenset(),
                   profile={"email": "ana@example.org"}, profile_sources={"email": "scim"})
    decision = decide(None, mapped(), SYNC, [LinkCandidate(scim, "external_id"),
                                             LinkCandidate(scim, "email")])
    assert isinstance(decision, Link)
    assert (decision.account_id, decision.matched_by) == ("scim-1", "external_id")
    assert decision.changes.grants_added == frozenset({RoleGrant("staff", "rule:default")})


def test_deactivated_scim_account_is_not_resurrected_by_a_first_login() -> None:
    scim = account(id="scim-1", status="deactivated", provisioned_by="scim",
                   external_id="00u1")
    decision = decide(None, mapped(), SYNC, [LinkCandidate(scim, "external_id")])
    assert isinstance(decision, Deny)
    assert decision.code == "account_inactive"


def test_provisioning_the_same_identity_twice_changes_nothing_the_second_time() -> None:
    m = mapped(groups=frozenset({"Nurses"}), grants=(("staff", "rule:default"),
                                                     ("nurse", "rule:n")),
               pending=(("charge", "rule:c"),), name="Ana")
    first = decide(None, m, SYNC)
    assert isinstance(first, Create)
    created = apply_changes(Account(id="new", tenant="t"), first.changes)
    assert isinstance(decide(created, m, SYNC), NoChange)


def test_a_connection_manages_only_its_own_rule_grants() -> None:
    acc = account(grants=frozenset({RoleGrant("staff", "rule:okta/default"),
                                    RoleGrant("contractor", "rule:agency/contractors")}),
                  pending=frozenset({PendingGrant("lead", "rule:agency/leads")}),
                  groups=frozenset({"x"}))
    m = mapped(grants=(("staff", "rule:okta/default"),), groups=frozenset({"x"}))
    assert isinstance(decide(acc, m, SYNC, owner="okta"), NoChange)
    decision = decide(acc, m, SYNC, owner="agency")
    assert isinstance(decision, Update)
    assert decision.changes.grants_revoked == frozenset({RoleGrant("contractor",
                                                                   "rule:agency/contractors")})
    assert decision.changes.pending_withdrawn == frozenset({PendingGrant("lead",
                                                                         "rule:agency/leads")})
