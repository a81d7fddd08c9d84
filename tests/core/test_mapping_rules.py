"""What a compiled policy makes of claims: profile, groups, denials, grants and the trace."""

from __future__ import annotations

from pathlib import Path

import pytest

from jitprov.core.mapping import (
    Denial,
    MappedIdentity,
    Policy,
    RuleGrantIntent,
    TraceEntry,
    load_policy,
)
from jitprov.core.mapping.expressions import MAX_CLAIMS_BYTES

HOSPITAL = (Path(__file__).parent.parent / "vectors" / "mapping" / "good-hospital.yaml").read_text()


def policy(text: str) -> Policy:
    return load_policy(text, "test.yaml")


def trace_of(mapped: MappedIdentity, kind: str) -> list[tuple[str, str, str]]:
    return [(t.rule, t.outcome, t.detail) for t in mapped.trace if t.kind == kind]


def roles(intents: frozenset[RuleGrantIntent]) -> set[tuple[str, str]]:
    return {(i.role, i.source) for i in intents}


NURSE_RULE = "roles:\n  rules:\n    - id: nurse\n      grant: [nurse]\n" \
             "      when: contains(groups, 'Nurses')\n"


# contains(): our null-safe extension


def test_contains_on_a_missing_claim_is_false_not_an_error() -> None:
    mapped = policy(NURSE_RULE).map({"email": "a@example.org"})
    assert [("nurse", "not_matched", "")] == trace_of(mapped, "grant")
    assert frozenset() == mapped.grants


def test_contains_on_a_list_claim_matches_an_exact_member() -> None:
    mapped = policy(NURSE_RULE).map({"groups": ["Charge Nurses", "Nurses"]})
    assert {("nurse", "rule:nurse")} == roles(mapped.grants)


def test_contains_on_an_array_does_not_take_true_for_1() -> None:
    p = policy("roles:\n  rules:\n    - grant: [one]\n      when: contains(levels, `1`)\n")
    assert frozenset() == p.map({"levels": [True]}).grants
    assert {("one", "rule:r1")} == roles(p.map({"levels": [1.0]}).grants)


def test_contains_on_a_number_is_an_error_so_the_rule_does_not_match() -> None:
    mapped = policy(NURSE_RULE).map({"groups": 7})
    [(rule, outcome, detail)] = trace_of(mapped, "grant")
    assert ("nurse", "error") == (rule, outcome)
    assert "invalid type for value: 7" in detail
    assert frozenset() == mapped.grants


# profile


PROFILE = "profile:\n  email: email\n  name: name\n  age: age\n  admin: admin\n"


@pytest.mark.parametrize(
    ("claims", "expected"),
    [
        ({"email": "a@example.org"}, {"email": "a@example.org"}),
        ({"email": ["a@example.org"]}, {"email": "a@example.org"}),  # SAML sends lists
        ({"age": 42}, {"age": "42"}),
        ({"age": 1.5}, {"age": "1.5"}),
        ({"admin": True, "age": False}, {"admin": "true", "age": "false"}),
        ({"age": [7]}, {"age": "7"}),
        ({"email": None, "name": "", "age": []}, {}),
    ],
)
def test_profile_field_is_a_scalar_as_text(claims: dict[str, object],
                                           expected: dict[str, str]) -> None:
    assert expected == policy(PROFILE).map(claims).profile


def test_profile_field_with_several_values_is_left_out_and_traced() -> None:
    mapped = policy(PROFILE).map({"email": ["a@example.org", "b@example.org"], "name": "Ann"})
    assert {"name": "Ann"} == mapped.profile
    expected = TraceEntry("profile", "profile.email", "error",
                          "expected one value, got a list of 2", 2)
    assert expected == mapped.trace[0]


@pytest.mark.parametrize("value", [{"first": "Ann"}, [["Ann"]], [{"first": "Ann"}]])
def test_profile_field_with_an_object_or_nested_list_is_left_out(value: object) -> None:
    mapped = policy(PROFILE).map({"name": value})
    assert {} == mapped.profile
    assert "error" == next(t.outcome for t in mapped.trace if t.rule == "profile.name")


def test_profile_expression_error_leaves_the_field_out() -> None:
    p = policy("profile:\n  name: join(' ', names)\n  email: email\n")
    mapped = p.map({"names": "Ann", "email": "a@example.org"})
    assert {"email": "a@example.org"} == mapped.profile
    assert ("profile.name", "error", 2) == (mapped.trace[0].rule, mapped.trace[0].outcome,
                                            mapped.trace[0].line)


def test_missing_claim_is_traced_absent_not_set() -> None:
    mapped = policy("profile:\n  department: department\n").map({})
    assert [("profile.department", "absent", "no value: the field is left as it is")] == \
        trace_of(mapped, "profile")


def test_profile_falls_back_with_or() -> None:
    mapped = policy(HOSPITAL).map({"given_name": "Ann", "family_name": "Lee"})
    assert "Ann Lee" == mapped.profile["name"]


# groups


@pytest.mark.parametrize(
    ("claim", "expected"),
    [
        (["Nurses", "ICU"], frozenset({"Nurses", "ICU"})),
        ("Nurses", frozenset({"Nurses"})),
        ([], None),
        ("", None),
        (None, None),
    ],
)
def test_groups_are_a_set_of_strings_or_none(claim: object,
                                             expected: frozenset[str] | None) -> None:
    assert expected == policy("groups: groups\n").map({"groups": claim}).groups


def test_absent_groups_claim_gives_none() -> None:
    assert None is policy("groups: groups\n").map({"email": "a@example.org"}).groups


def test_groups_drop_non_string_items_with_a_note() -> None:
    mapped = policy("groups: groups\n").map({"groups": ["Nurses", 3, None, "", {"a": 1}]})
    assert frozenset({"Nurses"}) == mapped.groups
    expected = [("groups", "dropped", "dropped 4 item(s) that are not non-empty strings")]
    assert expected == trace_of(mapped, "note")


def test_groups_that_are_an_object_are_an_error_and_none() -> None:
    mapped = policy("groups: groups\n").map({"groups": {"Nurses": True}})
    assert None is mapped.groups
    expected = [("groups", "error", "expected a list of strings or a string, got an object")]
    assert expected == trace_of(mapped, "groups")


def test_groups_claim_is_read_but_not_mirrored_without_a_groups_line() -> None:
    compiled = policy("{}")
    assert frozenset({"Nurses"}) == compiled.map({"groups": ["Nurses"]}).groups
    assert None is compiled.map({}).groups
    assert False is compiled.settings.mirrors_groups


def test_a_group_named_admin_grants_nothing_without_a_rule() -> None:
    mapped = policy(HOSPITAL).map({"email_verified": True, "groups": ["admin", "Admins"]})
    assert {("staff", "rule:default")} == roles(mapped.grants)
    assert frozenset() == mapped.pending


# deny


def test_deny_wins_over_matching_grants() -> None:
    mapped = policy(HOSPITAL).map({"email_verified": False, "groups": ["Nurses"]})
    assert (Denial("d1", "email not verified", 17),) == mapped.denials
    assert (frozenset(), frozenset()) == (mapped.grants, mapped.pending)
    assert [("nurse-by-group", "matched", "matched, not granted: the login is denied")] == \
        trace_of(mapped, "grant")


def test_every_deny_rule_is_evaluated_and_each_match_is_a_denial() -> None:
    p = policy("deny:\n  - id: a\n    when: banned\n    reason: banned\n"
               "  - id: b\n    when: contractor\n    reason: contractor\n")
    mapped = p.map({"banned": True, "contractor": "yes"})
    assert (Denial("a", "banned", 2), Denial("b", "contractor", 5)) == mapped.denials


def test_deny_rule_that_cannot_be_evaluated_denies() -> None:
    p = policy("roles:\n  default: [staff]\ndeny:\n  - id: old\n    when: age > `100` || "
               "abs(age) > `100`\n")
    mapped = p.map({"age": "ninety"})
    [denial] = mapped.denials
    assert ("old", 4) == (denial.rule, denial.line)
    assert denial.reason.startswith("deny rule old could not be evaluated: ")
    assert frozenset() == mapped.grants
    assert [("old", "error")] == [(r, o) for r, o, _ in trace_of(mapped, "deny")]


@pytest.mark.parametrize(
    ("value", "denied"),
    [(False, False), (None, False), ("", False), ([], False), ({}, False),
     (True, True), (0, True), ("no", True), ([False], True)],
)
def test_deny_uses_jmespath_truthiness(value: object, denied: bool) -> None:
    p = policy("deny:\n  - when: flag\n")
    assert denied == bool(p.map({"flag": value}).denials)


def test_claims_larger_than_the_limit_are_denied() -> None:
    mapped = policy(HOSPITAL).map({"blob": "x" * MAX_CLAIMS_BYTES, "email_verified": True})
    [denial] = mapped.denials
    assert "claims" == denial.rule
    assert frozenset() == mapped.grants


@pytest.mark.parametrize("bad", [float("nan"), {1, 2}, b"bytes"])
def test_claims_that_are_not_json_are_denied(bad: object) -> None:
    mapped = policy(HOSPITAL).map({"email_verified": True, "odd": bad})
    assert ["claims"] == [d.rule for d in mapped.denials]
    assert (frozenset(), {}) == (mapped.grants, mapped.profile)


# roles


def test_default_roles_come_from_rule_default() -> None:
    mapped = policy("roles:\n  default: [staff, visitor]\n").map({})
    assert {("staff", "rule:default"), ("visitor", "rule:default")} == roles(mapped.grants)


def test_rule_without_when_always_matches() -> None:
    mapped = policy("roles:\n  rules:\n    - id: all\n      grant: [reader]\n").map({})
    assert {("reader", "rule:all")} == roles(mapped.grants)


def test_approval_required_makes_a_pending_intent_not_a_grant() -> None:
    mapped = policy(HOSPITAL).map({"email_verified": True, "groups": ["Charge Nurses"]})
    assert {("charge-nurse", "rule:r2")} == roles(mapped.pending)
    assert {("staff", "rule:default")} == roles(mapped.grants)
    assert [("r2", "pending", "")] == trace_of(mapped, "approval")


def test_grant_rule_error_does_not_match() -> None:
    p = policy("roles:\n  rules:\n    - grant: [senior]\n      when: age > `60` || "
               "abs(age) > `60`\n")
    mapped = p.map({"age": "old"})
    assert frozenset() == mapped.grants
    assert ["error"] == [o for _, o, _ in trace_of(mapped, "grant")]


def test_ordering_of_a_string_and_a_number_is_null_not_an_error() -> None:
    p = policy("roles:\n  rules:\n    - grant: [senior]\n      when: age > `60`\n")
    assert [("r1", "not_matched", "")] == trace_of(p.map({"age": "61"}), "grant")


# email_verified


@pytest.mark.parametrize(
    ("value", "expected"),
    [(True, True), ("true", False), ("True", False), (1, False), (None, False), ([True], False)],
)
def test_email_verified_only_for_json_true(value: object, expected: bool) -> None:
    assert expected == policy("{}").map({"email_verified": value}).email_verified


def test_email_verified_missing_is_false() -> None:
    assert False is policy("{}").map({"email": "a@example.org"}).email_verified


def test_email_verified_expression_is_configurable() -> None:
    p = policy("linking:\n  email_verified: mail_ok\n")
    assert (True, False) == (p.map({"mail_ok": True}).email_verified,
                             p.map({"email_verified": True}).email_verified)


# the trace


def test_trace_follows_evaluation_order_with_rule_lines() -> None:
    mapped = policy(HOSPITAL).map({
        "email": "ann@example.org", "email_verified": True, "name": "Ann Lee",
        "groups": ["Nurses"],
    })
    expected = [
        ("profile", "profile.email", "set", 3),
        ("profile", "profile.name", "set", 4),
        ("profile", "profile.department", "absent", 5),
        ("groups", "groups", "set", 6),
        ("linking", "linking.email_verified", "verified", None),
        ("deny", "d1", "not_matched", 17),
        ("default", "default", "granted", 8),
        ("grant", "nurse-by-group", "granted", 10),
        ("approval", "r2", "not_matched", 13),
    ]
    assert expected == [(t.kind, t.rule, t.outcome, t.line) for t in mapped.trace]
    assert {("staff", "rule:default"), ("nurse", "rule:nurse-by-group")} == roles(mapped.grants)
    assert {"email": "ann@example.org", "name": "Ann Lee"} == mapped.profile


def test_expressions_see_the_raw_claims_only() -> None:
    # The mapped groups are not injected: an expression reads the claim as the IdP sent it.
    p = policy("groups: memberOf\nroles:\n  rules:\n    - grant: [x]\n"
               "      when: contains(groups, 'A')\n")
    assert frozenset() == p.map({"memberOf": ["A"]}).grants


def test_map_does_not_change_the_claims() -> None:
    claims: dict[str, object] = {"groups": ["Nurses"], "email_verified": True}
    policy(HOSPITAL).map(claims)
    assert {"groups": ["Nurses"], "email_verified": True} == claims


def test_join_skips_absent_name_parts() -> None:
    policy = load_policy("profile:\n  name: name || join(' ', [given_name, family_name])\n")
    assert {"name": "Ana Lima"} == policy.map({"given_name": "Ana", "family_name": "Lima"}
                                              ).profile
    assert {"name": "Lima"} == policy.map({"family_name": "Lima"}).profile
    assert {} == policy.map({}).profile


def test_join_of_a_non_string_part_is_a_field_error() -> None:
    mapped = load_policy("profile:\n  name: join(' ', [given_name])\n").map({"given_name": 3})
    assert {} == mapped.profile
    assert ["error"] == [e.outcome for e in mapped.trace if e.rule == "profile.name"]
