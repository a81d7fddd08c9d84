"""Builders for service tests and benchmarks: a tenant with a connection and a mapping."""

from __future__ import annotations

from jitprov.core.identity import ExternalIdentity
from jitprov.services import admin
from jitprov.services.context import ServiceContext

HOSPITAL = """\
profile:
  email: email
  name: name
  department: department
groups: groups
roles:
  default: [staff]
  rules:
    - id: nurses
      grant: [nurse]
      when: contains(groups, 'Nurses')
    - id: charge-nurses
      grant: [charge-nurse]
      when: contains(groups, 'Charge Nurses')
      approval: required
deny:
  - id: unverified
    when: "email_verified != `true`"
    reason: email not verified
linking:
  by_email: {linking}
"""


def setup_connection(ctx: ServiceContext, *, tenant: str = "hospital", slug: str = "idp",
                     linking: str = "never") -> None:
    admin.create_tenant(ctx, tenant)
    admin.add_mock_connection(ctx, tenant=tenant, slug=slug,
                              mapping=HOSPITAL.format(linking=linking),
                              mapping_source="hospital.yaml")


def nurse(subject: str = "u-1", **claims: object) -> ExternalIdentity:
    base: dict[str, object] = {"email": "ana@hospital.example", "email_verified": True,
                               "name": "Ana Lima", "department": "Ward 3",
                               "groups": ["Nurses"]}
    base.update(claims)
    return ExternalIdentity(issuer="https://idp.example", subject=subject, claims=base)
