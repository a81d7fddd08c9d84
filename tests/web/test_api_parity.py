"""API parity: every CLI command that reads or changes state has an admin API route. The test
walks the typer command tree; a new command must either name its route here or be listed as
local-only with the reason. Then the new routes are exercised through HTTP."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import pytest
import typer
from starlette.testclient import TestClient

from jitprov.cli.main import app as cli_app
from jitprov.services import admin, audit_export
from jitprov.services.context import ServiceContext
from jitprov.services.login.flow import provision_on_login
from jitprov.testing.builders import nurse, setup_connection
from jitprov.web.app import create_app
from tests.conftest import TEST_SECRET_KEY
from tests.web.helpers import make_client

#: command -> "METHOD /api/path" of its route
ROUTES = {
    "access-review": "GET /api/tenants/{tenant}/access-review",
    "apply": "POST /api/config/apply",
    "admin revoke-sessions": "POST /api/console/revoke-sessions",
    "approvals approve": "POST /api/approvals/{request_id}",
    "approvals deny": "POST /api/approvals/{request_id}",
    "approvals list": "GET /api/tenants/{tenant}/approvals",
    "audit export": "GET /api/audit/export",
    "audit search": "GET /api/audit/search",
    "audit verify": "GET /api/audit/verify",
    "break-glass approve": "POST /api/break-glass/{request_id}/approve",
    "break-glass request": "POST /api/tenants/{tenant}/break-glass",
    "connection add-oidc": "POST /api/connections/oidc",
    "connection add-saml": "POST /api/connections/saml",
    "connection disable": "PUT /api/connections/{connection}/enabled",
    "connection enable": "PUT /api/connections/{connection}/enabled",
    "connection list": "GET /api/connections",
    "connection refresh-metadata": "POST /api/connections/{connection}/refresh-metadata",
    "connection set-mapping": "PUT /api/connections/{connection}/mapping",
    "export": "GET /api/config/export",
    "device idp-status": "POST /api/connections/{connection}/health",
    "device list": "GET /api/tenants/{tenant}/devices",
    "device register": "POST /api/tenants/{tenant}/devices",
    "device revoke": "POST /api/devices/{device_id}/revoke",
    "device set-policy": "PUT /api/tenants/{tenant}/frontline-policy",
    "grants add": "POST /api/tenants/{tenant}/accounts/{account_id}/grants",
    "grants list": "GET /api/tenants/{tenant}/grants",
    "grants revoke": "DELETE /api/tenants/{tenant}/accounts/{account_id}/grants/{role}",
    "grants unblock": "DELETE /api/tenants/{tenant}/accounts/{account_id}/overrides/{role}",
    "keys rotate": "POST /api/keys/rotate",
    "lifecycle sweep": "POST /api/lifecycle/sweep",
    "links approve": "POST /api/tenants/{tenant}/links/{link_id}/{decision}",
    "links clear": "POST /api/tenants/{tenant}/links/{link_id}/{decision}",
    "links list": "GET /api/tenants/{tenant}/links",
    "links refuse": "POST /api/tenants/{tenant}/links/{link_id}/{decision}",
    "mapping check": "POST /api/mapping/check",
    "mapping preview": "POST /api/connections/{connection}/mapping/preview",
    "mapping retention": "PATCH /api/tenants/{tenant}/policy",
    "mapping test": "POST /api/connections/{connection}/mapping/test",
    "passkey list": "GET /api/accounts/{account_id}/passkeys",
    "passkey revoke": "POST /api/passkeys/{passkey_id}/revoke",
    "scim-token create": "POST /api/tenants/{tenant}/scim-tokens",
    "scim-token list": "GET /api/tenants/{tenant}/scim-tokens",
    "scim-token revoke": "DELETE /api/tenants/{tenant}/scim-tokens/{token_id}",
    "tenant add-domain": "POST /api/tenants/{tenant}/domains",
    "tenant create": "POST /api/tenants",
    "tenant domains": "GET /api/tenants/{tenant}/domains",
    "tenant list": "GET /api/tenants",
    "tenant remove-domain": "DELETE /api/tenants/{tenant}/domains/{domain}",
    "tenant set-policy": "PATCH /api/tenants/{tenant}/policy",
    "tenant show": "GET /api/tenants/{tenant}/policy",
    "users deactivate": "POST /api/accounts/{account_id}/status",
    "users list": "GET /api/tenants/{tenant}/users",
    "users reactivate": "POST /api/accounts/{account_id}/status",
    "webhooks add": "POST /api/tenants/{tenant}/webhooks",
    "webhooks deliver": "POST /api/webhooks/deliver",
    "webhooks deliveries": "GET /api/tenants/{tenant}/webhook-deliveries",
    "webhooks events": "GET /api/webhook-events",
    "webhooks list": "GET /api/tenants/{tenant}/webhooks",
    "webhooks replay": "POST /api/webhook-deliveries/{delivery_id}/replay",
}
#: commands kept off the API, with the reason
LOCAL_ONLY = {
    "serve": "starts the server itself",
    "dev": "starts the embedded demo server",
    "db upgrade": "migrates the schema the running server depends on; an operator step",
    "admin bootstrap": "the way into the console when no credential exists yet",
    "admin-token create": "admin credentials are issued on the host, never over the API "
                          "they open",
    "admin-token list": "as create: the admin credentials are managed on the host",
    "admin-token revoke": "as create: the admin credentials are managed on the host",
    "secrets init": "the master key is made and kept on the host, never sent over HTTP",
    "secrets rotate": "re-sealing needs the old and new master keys: on the host",
    "secrets check": "a check of this process's master key (GET /readyz says the same)",
}


def _commands() -> list[str]:
    def walk(group: Any, prefix: str = "") -> Iterator[str]:
        for name, command in sorted(group.commands.items()):
            if hasattr(command, "commands"):
                yield from walk(command, f"{prefix}{name} ")
            else:
                yield f"{prefix}{name}"
    return list(walk(typer.main.get_command(cli_app)))


def test_every_command_has_a_route_or_a_reason(ctx: ServiceContext) -> None:
    commands = set(_commands())
    assert commands - set(ROUTES) - set(LOCAL_ONLY) == set(), \
        "a CLI command without an admin API route: add one, or list it as local-only"
    assert set(ROUTES) & set(LOCAL_ONLY) == set()
    assert set(ROUTES) | set(LOCAL_ONLY) <= commands, "the table names a gone command"
    schema = create_app(make_settings(), ctx=ctx).openapi()
    served = {f"{method.upper()} {path}" for path, operations in schema["paths"].items()
              for method in operations}
    missing = {command: route for command, route in ROUTES.items() if route not in served}
    assert missing == {}


def make_settings() -> Any:
    from jitprov.settings import Settings

    return Settings(secret_key=TEST_SECRET_KEY)


@pytest.fixture
def api(ctx: ServiceContext) -> Iterator[tuple[TestClient, dict[str, str]]]:
    setup_connection(ctx)
    _, token = admin.create_admin_token(ctx, "ops")
    with make_client(ctx, dev_mode=False) as client:
        yield client, {"Authorization": f"Bearer {token}"}


def test_tenant_policy_reads_and_changes_only_what_is_given(
        api: tuple[TestClient, dict[str, str]]) -> None:
    client, auth = api
    base = "/api/tenants/hospital/policy"
    assert client.get(base).status_code == 401
    before = client.get(base, headers=auth).json()
    assert before["scim_delete"] == "deactivate" and before["dormant_warn_days"] is None
    changed = client.patch(base, headers=auth, json={"dormant_warn_days": 80,
                                                     "dormant_deactivate_days": 90}).json()
    assert (changed["dormant_warn_days"], changed["dormant_deactivate_days"]) == (80, 90)
    changed = client.patch(base, headers=auth, json={"delete_after_days": 30,
                                                     "scim_delete": "erase",
                                                     "claims_retention_days": 7}).json()
    assert changed == {**before, "dormant_warn_days": 80, "dormant_deactivate_days": 90,
                       "delete_after_days": 30, "scim_delete": "erase",
                       "claims_retention_days": 7}
    refused = client.patch(base, headers=auth, json={"dormant_warn_days": 100})
    assert refused.status_code == 400 and "before the deactivation" in refused.text
    assert client.patch(base, headers=auth, json={"scim_delete": "shred"}).status_code == 422
    assert client.get("/api/tenants/nowhere/policy", headers=auth).status_code == 404


def test_one_account_scim_tokens_and_connection_switches(
        api: tuple[TestClient, dict[str, str]], ctx: ServiceContext) -> None:
    client, auth = api
    account_id = provision_on_login(ctx, "idp", nurse()).account_id
    one = client.get(f"/api/accounts/{account_id}", headers=auth).json()
    assert one["email"] == "ana@hospital.example" and "nurse" in one["roles"]
    assert client.get("/api/accounts/nobody", headers=auth).status_code == 404
    created = client.post("/api/tenants/hospital/scim-tokens", headers=auth,
                          json={"name": "entra", "expires_in_days": 30})
    assert created.status_code == 201 and created.json()["token"].startswith("jps_")
    listed = client.get("/api/tenants/hospital/scim-tokens", headers=auth).json()
    assert [(t["name"], t["revoked"]) for t in listed] == [("entra", False)]
    assert created.json()["token"] not in str(listed)
    token_id = created.json()["id"]
    assert client.delete(f"/api/tenants/hospital/scim-tokens/{token_id}",
                         headers=auth).status_code == 200
    assert client.get("/scim/v2/hospital/Users", headers={
        "Authorization": f"Bearer {created.json()['token']}"}).status_code == 401
    off = client.put("/api/connections/idp/enabled", headers=auth, json={"enabled": False})
    assert off.json() == {"connection": "idp", "enabled": False}
    assert admin.get_connection(ctx, "idp").enabled is False
    client.put("/api/connections/idp/enabled", headers=auth, json={"enabled": True})
    assert admin.get_connection(ctx, "idp").enabled is True
    refreshed = client.post("/api/connections/idp/refresh-metadata", headers=auth).json()
    assert refreshed["outcome"] == "skipped"  # not a SAML connection with a metadata URL


def test_keys_sweep_webhook_catalogue_delivery_audit_search_and_console_sessions(
        api: tuple[TestClient, dict[str, str]], ctx: ServiceContext) -> None:
    client, auth = api
    rotated = client.post("/api/keys/rotate", headers=auth, json={"overlap_hours": 2}).json()
    published = client.get("/.well-known/jwks.json").json()["keys"]
    assert rotated["active_kid"] in {k["kid"] for k in published}
    swept = client.post("/api/lifecycle/sweep", headers=auth,
                        json={"tenant": "hospital", "dry_run": True}).json()
    assert [(r["tenant"], r["dry_run"]) for r in swept] == [("hospital", True)]
    events = {e["event"] for e in client.get("/api/webhook-events", headers=auth).json()}
    assert {"account.created", "session.revoked"} <= events
    assert client.post("/api/webhooks/deliver", headers=auth).json()["failed"] == 0
    account_id = provision_on_login(ctx, "idp", nurse(), request_id="req-parity-1").account_id
    found = client.get("/api/audit/search?request_id=req-parity-1", headers=auth).json()
    assert found and all(e["request_id"] == "req-parity-1" for e in found)
    assert found[0]["account_id"] == account_id
    assert client.get("/api/audit/search", headers=auth).status_code == 400
    assert client.post("/api/console/revoke-sessions", headers=auth,
                       json={}).json() == {"revoked": 0}


def test_configuration_export_and_apply_over_http(
        api: tuple[TestClient, dict[str, str]], ctx: ServiceContext) -> None:
    client, auth = api
    assert client.get("/api/config/export").status_code == 401
    document = client.get("/api/config/export?tenant=hospital", headers=auth).json()["document"]
    assert "  hospital:\n" in document and "mock: {}" in document
    changed = document.replace("name: hospital", "name: Hospital of St Mary")
    body = {"document": changed, "dry_run": True}
    planned = client.post("/api/config/apply", headers=auth, json=body).json()
    assert [c["line"] for c in planned["changes"]] == ["update tenant hospital: name"]
    assert admin.list_tenants(ctx)[0].name == "hospital"
    applied = client.post("/api/config/apply", headers=auth, json={**body, "dry_run": False})
    [(token_id, *_)] = admin.list_admin_tokens(ctx)  # the fixture's token, named "ops"
    digest = hashlib.sha256(changed.encode()).hexdigest()[:12]
    actor = f"admin-token:{token_id}:ops apply:{digest}"
    assert applied.json()["actor"] == actor
    assert [(e.type, e.actor) for e in audit_export.iter_events(ctx, "hospital")
            if e.type == "tenant.renamed"] == [("tenant.renamed", actor)]
    assert admin.list_tenants(ctx)[0].name == "Hospital of St Mary"
    refused = client.post("/api/config/apply", headers=auth, json={
        "document": changed.replace("enabled: true", "enabled: maybe")})
    assert refused.status_code == 400
    assert "document:" in refused.text and "enabled" in refused.text
    for nesting in ("[" * 5000, "[" * 40 + "]" * 40):  # beyond PyYAML's recursion; beyond 32
        refused = client.post("/api/config/apply", headers=auth,
                              json={"document": "version: 1\ntenants: " + nesting})
        assert refused.status_code == 400, refused.text
        assert "nested more than 32 levels deep" in refused.text


def test_configuration_apply_reads_secret_references_from_the_request_only(
        api: tuple[TestClient, dict[str, str]], ctx: ServiceContext,
        monkeypatch: pytest.MonkeyPatch) -> None:
    client, auth = api
    ctx.webhook_allow_private = True
    document = client.get("/api/config/export", headers=auth).json()["document"].replace(
        "    webhooks: []\n", "    webhooks:\n    - url: http://127.0.0.1:9/h\n"
        "      secret: ${HOOK_SECRET}\n")
    secret = "whsec_" + "a2V5" * 11
    monkeypatch.setenv("HOOK_SECRET", secret)  # the server's own: never read
    refused = client.post("/api/config/apply", headers=auth, json={"document": document})
    assert refused.status_code == 400
    assert "the environment variable HOOK_SECRET is not set" in refused.text
    applied = client.post("/api/config/apply", headers=auth,
                          json={"document": document, "env": {"HOOK_SECRET": secret}})
    assert [c["line"] for c in applied.json()["changes"]] == [
        "create webhook hospital/http://127.0.0.1:9/h"]
    assert secret not in applied.text
