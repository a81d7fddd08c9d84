"""The access review an auditor asks for: every role, its provenance, when, last sign-in."""

from __future__ import annotations

import csv
import io
import json

from jitprov.services import accounts
from jitprov.services.audit_export import access_review
from jitprov.services.context import ServiceContext
from jitprov.services.login.flow import provision_on_login
from jitprov.testing.builders import nurse, setup_connection


def test_access_review_lists_each_grant_with_its_provenance(ctx: ServiceContext) -> None:
    setup_connection(ctx)
    provision_on_login(ctx, "idp", nurse(groups=["Nurses", "Charge Nurses"]))
    [request] = accounts.list_requests(ctx, "hospital")
    accounts.decide_request(ctx, request.id, approve=True, reason="lead",
                             approver="cli:matron")
    rows = list(csv.DictReader(io.StringIO(access_review(ctx, "hospital", "csv"))))
    assert [(r["email"], r["role"], r["source"], r["granted_by"]) for r in rows] == [
        ("ana@hospital.example", "charge-nurse", "approval", "cli:matron"),
        ("ana@hospital.example", "nurse", "rule:idp/nurses", "login"),
        ("ana@hospital.example", "staff", "rule:idp/default", "login")]
    assert all(r["last_login_at"] and r["granted_at"] for r in rows)
    as_json = json.loads(access_review(ctx, "hospital", "json"))
    assert [r["role"] for r in as_json] == ["charge-nurse", "nurse", "staff"]
