"""``groups_missing: keep`` protects the grants of rules that may read the IdP's ``groups``
claim, and only those: a rule on other claims follows its rule when the groups claim is absent."""

from __future__ import annotations

import pytest

from jitprov.core.identity import Account, RoleGrant
from jitprov.core.mapping import load_policy
from jitprov.core.mapping.expressions import compile_expression
from jitprov.core.provisioning import Update, decide

MAPPING = """\
roles:
  rules:
    - id: nurses
      grant: [nurse]
      when: contains(groups, 'Nurses')
    - id: pharmacy
      grant: [pharmacist]
      when: contains(scim_groups, 'Pharmacy')
    - id: ward
      grant: [ward-3]
      when: department == 'Ward 3'
"""


@pytest.mark.parametrize(("text", "reads"), [
    ("contains(groups, 'Nurses')", True),
    ("length(groups) > `0` && department == 'x'", True),
    ("contains(@.groups, 'x')", True),
    ("contains(keys(@), 'groups')", True),
    ("contains(scim_groups, 'Pharmacy')", False),
    ("department == 'Ward 3'", False),
    ("contains(scim_groups[*].name, 'x')", False),
])
def test_an_expression_says_whether_it_may_read_a_claim(text: str, reads: bool) -> None:
    assert compile_expression(text).may_read("groups") is reads


def test_an_absent_groups_claim_keeps_only_the_grants_of_rules_that_read_it() -> None:
    policy = load_policy(MAPPING, "test.yaml")
    held = frozenset({RoleGrant("nurse", "rule:idp/nurses"),
                      RoleGrant("pharmacist", "rule:idp/pharmacy"),
                      RoleGrant("ward-3", "rule:idp/ward")})
    account = Account(id="a1", tenant="t", grants=held)
    mapped = policy.map({"department": "Ward 5", "scim_groups": []}).scoped("idp")
    assert mapped.groups is None
    decision = decide(account, mapped, policy.settings, owner="idp")
    assert isinstance(decision, Update)
    assert {g.role for g in decision.changes.grants_revoked} == {"pharmacist", "ward-3"}
    kept = [e for e in decision.trace if e.rule == "groups_missing"]
    assert kept and kept[0].roles == ("nurse",)


def test_with_revoke_or_a_groups_claim_every_stale_rule_grant_goes() -> None:
    policy = load_policy(MAPPING.replace("roles:", "groups_missing: revoke\nroles:"), "t.yaml")
    account = Account(id="a1", tenant="t",
                      grants=frozenset({RoleGrant("nurse", "rule:idp/nurses")}))
    decision = decide(account, policy.map({}).scoped("idp"), policy.settings, owner="idp")
    assert isinstance(decision, Update)
    assert {g.role for g in decision.changes.grants_revoked} == {"nurse"}
