"""Properties of the mapping: total, deterministic, and a deny always wins."""

from __future__ import annotations

import copy
from pathlib import Path

import yaml
from hypothesis import given
from hypothesis import strategies as st

from jitprov.core.errors import MappingError
from jitprov.core.mapping import Policy, load_policy
from tests.strategies import claims, mapping_documents

VECTORS = Path(__file__).parent.parent / "vectors" / "mapping"
HOSPITAL = load_policy((VECTORS / "good-hospital.yaml").read_text(), "good-hospital.yaml")

# Exercises functions, comparisons, projections and filters on claims of any shape.
KITCHEN_SINK = load_policy("""
profile:
  email: email
  name: name || join(' ', [given_name, family_name])
  initials: join('', [given_name[0:1], family_name[0:1]])
  first_group: groups[0]
  count: length(groups)
  sorted: sort(groups)
  text: to_string(@)
groups: groups[?starts_with(@, 'N')] || groups
roles:
  default: [staff]
  rules:
    - grant: [nurse]
      when: contains(groups, 'Nurses')
    - grant: [many]
      when: length(groups) > `2`
    - grant: [named]
      when: contains(keys(@), 'name') && name != ''
    - grant: [boss]
      when: max_by(people, &age).name == 'boss'
      approval: required
deny:
  - when: "!email_verified"
  - when: contains(groups, 'banned') || starts_with(email, 'x')
linking:
  by_email: pending
  email_verified: email_verified == `true`
""", "kitchen-sink.yaml")

POLICIES = [HOSPITAL, KITCHEN_SINK]


@given(claims, st.sampled_from(POLICIES))
def test_map_never_raises_and_profile_is_text(given_claims: dict[str, object],
                                              policy: Policy) -> None:
    mapped = policy.map(given_claims)
    assert all(isinstance(v, str) and v for v in mapped.profile.values())
    assert mapped.groups is None or (mapped.groups and all(mapped.groups))


@given(claims, st.sampled_from(POLICIES))
def test_same_claims_give_the_same_mapped_identity(given_claims: dict[str, object],
                                                   policy: Policy) -> None:
    assert policy.map(given_claims) == policy.map(copy.deepcopy(given_claims))


@given(claims, st.sampled_from(POLICIES))
def test_a_denied_identity_carries_no_grant(given_claims: dict[str, object],
                                            policy: Policy) -> None:
    mapped = policy.map(given_claims)
    if mapped.denials:
        assert (frozenset(), frozenset()) == (mapped.grants, mapped.pending)


@given(claims)
def test_hospital_denies_exactly_when_email_verified_is_falsy(
    given_claims: dict[str, object],
) -> None:
    # `!email_verified` is JMESPath negation: a string "false" is truthy, so it is not denied
    # here; only `email_verified` itself requires a JSON true.
    mapped = HOSPITAL.map(given_claims)
    value = given_claims.get("email_verified")
    falsy = value is None or value is False or (isinstance(value, str | list | dict) and not value)
    assert (["d1"] if falsy else []) == [d.rule for d in mapped.denials]
    assert (value is True) == mapped.email_verified


@given(claims, st.sampled_from(POLICIES))
def test_grants_come_only_from_the_policy_rules(given_claims: dict[str, object],
                                                policy: Policy) -> None:
    mapped = policy.map(given_claims)
    allowed = {(role, "rule:default") for role in policy.default_roles} | {
        (role, f"rule:{rule.id}") for rule in policy.rules for role in rule.roles
    }
    assert {(g.role, g.source) for g in mapped.grants | mapped.pending} <= allowed


@given(st.text(max_size=200))
def test_loading_any_text_raises_nothing_but_mapping_error(text: str) -> None:
    try:
        load_policy(text)
    except MappingError:
        pass


@given(mapping_documents)
def test_loading_mapping_like_yaml_raises_nothing_but_mapping_error(document: object) -> None:
    text = yaml.safe_dump(document)
    try:
        policy = load_policy(text)
    except MappingError as err:
        assert err.line is None or 1 <= err.line <= text.count("\n") + 1
    else:
        policy.map({"groups": ["A"], "email_verified": True, "email": "a@example.org"})
