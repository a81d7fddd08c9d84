"""Loading a mapping file: every error names file, line and rule; good files compile."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from jitprov.core.errors import MappingError
from jitprov.core.mapping import PolicySettings, load_policy
from jitprov.core.mapping.expressions import MAX_EXPRESSION_LENGTH
from jitprov.core.mapping.model import MAX_RULES

VECTORS = Path(__file__).parent.parent / "vectors" / "mapping"
EXPECTED_ERRORS: dict[str, dict[str, object]] = json.loads(
    (VECTORS / "expected-errors.json").read_text(encoding="utf-8")
)


def load_error(text: str, source: str = "m.yaml") -> MappingError:
    with pytest.raises(MappingError) as caught:
        load_policy(text, source)
    return caught.value


@pytest.mark.parametrize("name", sorted(EXPECTED_ERRORS))
def test_bad_vector_fails_with_its_line_rule_and_message(name: str) -> None:
    err = load_error((VECTORS / name).read_text(encoding="utf-8"), name)
    actual = {"line": err.line, "rule": err.rule, "message": err.message}
    assert EXPECTED_ERRORS[name] == actual
    assert name == err.source


def test_every_bad_vector_has_an_expectation() -> None:
    on_disk = {path.name for path in VECTORS.glob("bad-*.yaml")}
    assert on_disk == set(EXPECTED_ERRORS)


@pytest.mark.parametrize("path", sorted(VECTORS.glob("good-*.yaml")), ids=lambda p: p.name)
def test_good_vector_loads(path: Path) -> None:
    policy = load_policy(path.read_text(encoding="utf-8"), path.name)
    assert path.name == policy.source


def test_error_reads_file_line_rule_message() -> None:
    err = load_error((VECTORS / "bad-unknown-field.yaml").read_text(), "hospital.yaml")
    expected = "hospital.yaml:6: roles.rules[1] (id nurse-by-group): unknown field 'whne'"
    assert expected == str(err)


def test_hospital_example_compiles_with_its_settings() -> None:
    policy = load_policy((VECTORS / "good-hospital.yaml").read_text(), "hospital.yaml")
    expected = PolicySettings(on_login="sync", link_by_email="verified_email",
                              groups_missing="keep", mirrors_groups=True,
                              rules_reading_groups=frozenset({"nurse-by-group", "r2"}))
    assert expected == policy.settings
    assert ["email", "name", "department"] == [field.name for field in policy.profile]
    assert ("staff",) == policy.default_roles
    assert [("nurse-by-group", 10, False), ("r2", 13, True)] == [
        (rule.id, rule.line, rule.approval_required) for rule in policy.rules
    ]
    assert [("d1", 17, "email not verified")] == [
        (rule.id, rule.line, rule.reason) for rule in policy.deny
    ]


@pytest.mark.parametrize("text", ["", "{}", "# only a comment\n", "profile:\nroles:\n"])
def test_empty_policy_maps_nothing_and_grants_nothing(text: str) -> None:
    policy = load_policy(text)
    mapped = policy.map({"email": "a@example.org", "groups": ["admin"]})
    assert ({}, frozenset(), frozenset(), ()) == (
        mapped.profile, mapped.grants, mapped.pending, mapped.denials
    )
    assert PolicySettings(rules_reading_groups=frozenset()) == policy.settings


def test_fingerprint_is_sha256_of_the_text() -> None:
    text = "roles:\n  default: [staff]\n"
    assert hashlib.sha256(text.encode()).hexdigest() == load_policy(text).fingerprint


@pytest.mark.parametrize("value", ["verified_only", "verified_email"])
def test_verified_only_is_an_alias_of_verified_email(value: str) -> None:
    policy = load_policy(f"linking:\n  by_email: {value}\n")
    assert "verified_email" == policy.settings.link_by_email


def test_rules_without_id_are_numbered_from_one_per_section() -> None:
    policy = load_policy(
        "roles:\n  rules:\n    - grant: [a]\n    - grant: [b]\n"
        "deny:\n  - when: banned\n"
    )
    assert (["r1", "r2"], ["d1"]) == ([r.id for r in policy.rules], [r.id for r in policy.deny])


def test_deny_rule_without_reason_gets_one_naming_the_rule() -> None:
    policy = load_policy("deny:\n  - id: banned\n    when: banned\n")
    assert "denied by rule banned" == policy.deny[0].reason


def test_rule_ids_are_unique_across_grant_and_deny_rules() -> None:
    err = load_error("roles:\n  rules:\n    - id: x\n      grant: [a]\ndeny:\n  - id: x\n"
                     "    when: banned\n")
    assert (6, "deny[1] (id x)", "duplicate rule id 'x' (first at line 3)") == (
        err.line, err.rule, err.message
    )


def test_unknown_top_level_field_is_named_with_its_line() -> None:
    err = load_error("profile:\n  email: email\nrole:\n  default: [staff]\n")
    assert (3, None, "unknown field 'role'") == (err.line, err.rule, err.message)


def test_duplicate_key_on_one_line_is_an_error() -> None:
    err = load_error("on_login: sync\nlinking: {by_email: never, by_email: pending}\n")
    assert (2, "linking.by_email", "duplicate key 'by_email' (first at line 2)") == (
        err.line, err.rule, err.message
    )


def test_expression_longer_than_the_limit_is_refused_with_its_line() -> None:
    long = "a || " * (MAX_EXPRESSION_LENGTH // 5) + "b"
    err = load_error(f"profile:\n  email: email\n  name: {long}\n")
    assert (3, "profile.name") == (err.line, err.rule)
    assert err.message.startswith("String should have at most 1000 characters")


def test_grant_rule_with_wrong_arity_fails_at_load_not_at_login() -> None:
    err = load_error("roles:\n  rules:\n    - grant: [a]\n      when: contains(groups)\n")
    expected = (4, "roles.rules[1] (id r1)",
                "when: invalid expression 'contains(groups)': contains() takes 2 argument(s), "
                "1 given")
    assert expected == (err.line, err.rule, err.message)


def test_groups_expression_that_does_not_compile_names_groups() -> None:
    err = load_error("profile:\n  email: email\ngroups: groups[\n")
    assert (3, "groups") == (err.line, err.rule)


def test_email_verified_expression_that_does_not_compile_names_it() -> None:
    err = load_error("linking:\n  by_email: never\n  email_verified: '&&'\n")
    assert (3, "linking.email_verified") == (err.line, err.rule)


def test_more_than_max_rules_is_refused() -> None:
    rules = "".join(f"    - grant: [r{i}]\n" for i in range(MAX_RULES + 1))
    err = load_error("roles:\n  rules:\n" + rules)
    assert (2, "roles.rules") == (err.line, err.rule)


def test_python_tags_are_refused_like_safe_load() -> None:
    err = load_error("profile:\n  email: !!python/object/apply:os.system ['true']\n")
    assert 2 == err.line
    assert err.message.startswith("invalid YAML: could not determine a constructor")


def test_alias_bomb_fails_fast_and_names_only_a_bit_of_it() -> None:
    # Each level doubles the document YAML would build; neither the line index nor the error
    # message expands it.
    levels = ["  - &a0 [x, x]"] + [f"  - &a{i} [*a{i - 1}, *a{i - 1}]" for i in range(1, 40)]
    err = load_error("on_login:\n" + "\n".join(levels) + "\n")
    assert (1, "on_login") == (err.line, err.rule)
    assert len(err.message) < 200


def test_multiple_documents_are_refused() -> None:
    err = load_error("on_login: sync\n---\non_login: create_only\n")
    assert 2 == err.line
    assert err.message.startswith("invalid YAML: expected a single document")


def test_control_character_is_a_yaml_error_with_its_line() -> None:
    err = load_error("profile:\n  email: email\x07\n")
    assert 2 == err.line
    assert err.message.startswith("invalid YAML")


def test_null_when_is_an_error_not_always_matching() -> None:
    err = load_error("roles:\n  rules:\n    - grant: [admin]\n      when:\n")
    assert (4, "roles.rules[1] (id r1)") == (err.line, err.rule)


def test_summary_counts_what_the_policy_holds() -> None:
    policy = load_policy((VECTORS / "good-hospital.yaml").read_text())
    expected = "3 profile fields, 2 grant rules, 1 deny rule, default roles: staff"
    assert expected == policy.summary


def test_a_role_name_longer_than_64_is_an_error_naming_its_line() -> None:
    """The mapping and the admin services share one role-name rule (``core/identity.py``):
    a rule may not grant a role an admin could not revoke or block."""
    long = "r" * 65
    err = load_error(f"roles:\n  rules:\n    - id: a\n      grant: [staff, {long}]\n")
    assert (err.line, err.rule) == (4, "roles.rules[1] (id a)")
    assert "at most 64 characters" in err.message
    load_policy(f"roles:\n  default: [{'r' * 64}]\n", source="m.yaml")  # 64 is fine
