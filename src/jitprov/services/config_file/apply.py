"""``jitprov apply``: the plan (what to create, update, delete to make the database say what
the file says) and carrying it out through the services the CLI and the admin API call, so
validation and audit events are theirs, with the actor ``apply:<file digest>`` (over the
admin API, preceded by the admin token's actor: ``admin-token:<id>:<name> apply:<digest>``).

All or nothing: the plan is made and carried out inside one transaction
(:class:`~jitprov.store.one_transaction.OneTransaction`), each service's unit of work a
savepoint of it; a refusal at any step rolls every step back. The steps run in this order,
so each finds what it needs: tenants; their policies; connections (created, changed);
verified domains (removed under ``--prune``, then added or re-pointed); webhook endpoints
(removed under ``--prune``, then added or changed); connections removed under ``--prune``.
A dry run carries the plan out the same way, then rolls it back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Literal

from jitprov.core.errors import JitprovError
from jitprov.core.mapping.impact import ImpactReport
from jitprov.services import admin, devices, discovery, lifecycle, mapping_preview, webhooks
from jitprov.services.config_file.model import (
    SAML_METADATA_FIELDS,
    Connection,
    Frontline,
    Tenant,
    TenantPolicy,
)
from jitprov.services.config_file.source import (
    ConfigFileError,
    ConfigSource,
    Loc,
    settings_config,
    shown_url,
)
from jitprov.services.config_file.state import TenantState, normal_settings, read_tenant
from jitprov.services.context import PolicyCache, ServiceContext
from jitprov.services.login.oidc import new_client_key
from jitprov.services.scim import tokens as scim_tokens
from jitprov.store.one_transaction import OneTransaction
from jitprov.store.records import ConnectionRecord, WebhookEndpointRecord

Action = Literal["create", "update", "delete"]
#: the order steps run in (see the module's docstring)
TENANT, POLICY, CONNECTION, DOMAIN_REMOVAL, DOMAIN, WEBHOOK_REMOVAL, WEBHOOK, \
    CONNECTION_REMOVAL = range(8)
_DORMANT = ("dormant_warn_days", "dormant_deactivate_days", "delete_after_days")
_SCIM = ("scim_delete", "scim_on_existing")


@dataclass(frozen=True)
class Change:
    """One line of the plan: an object created, updated (with the fields that change; never
    a value) or deleted."""

    action: Action
    kind: str
    name: str
    fields: tuple[str, ...] = ()

    def __str__(self) -> str:
        changed = f": {', '.join(self.fields)}" if self.fields else ""
        return f"{self.action} {self.kind} {self.name}{changed}"


@dataclass
class _Step:
    change: Change
    loc: Loc
    phase: int
    run: Callable[[ServiceContext], object]
    #: a changed mapping of an existing connection: (connection, text, source)
    mapping: tuple[str, str, str] | None = None


@dataclass(frozen=True)
class ApplyResult:
    changes: list[Change]
    #: the impact preview of each changed mapping (dry run), by connection slug
    previews: dict[str, ImpactReport] = field(default_factory=dict)
    dry_run: bool = False
    actor: str = ""


def apply_config(ctx: ServiceContext, source: ConfigSource, *, dry_run: bool = False,
                 prune: bool = False, by: str | None = None,
                 preview_limit: int = mapping_preview.DEFAULT_PREVIEW_LIMIT) -> ApplyResult:
    """Make the database say what ``source`` says, in one transaction (rolled back when
    ``dry_run``); ``prune`` also deletes the connections, domains and webhooks of the
    file's tenants that the file does not name. Every change is audited with the actor
    ``apply:<digest>``, preceded by ``by`` (who applies it, e.g. an admin token's actor)
    when given. Applying a file twice changes nothing the second time and writes no audit
    event. Raises ConfigFileError (file, line, key path)."""
    actor = f"{by} {source.actor}" if by else source.actor
    transaction = OneTransaction(ctx.db)
    with transaction as db:
        inner = replace(ctx, db=db, policies=PolicyCache())
        steps = plan_steps(inner, source, prune=prune, actor=actor)
        previews = {}
        if dry_run:
            for step in steps:
                if step.mapping is not None:
                    slug, text, where = step.mapping
                    previews[slug] = mapping_preview.preview_impact(inner, slug, text, where,
                                                                    limit=preview_limit)
        for step in steps:
            try:
                step.run(inner)
            except ConfigFileError:
                raise
            except JitprovError as exc:
                raise source.error(step.loc, f"{step.change.action} {step.change.kind} "
                                             f"{step.change.name}: {exc}") from None
        if not dry_run:
            transaction.commit()
    for step in steps:
        if step.change.kind == "connection":
            ctx.connections.forget(step.change.name.split("/", 1)[1])
    return ApplyResult(changes=[s.change for s in steps], previews=previews, dry_run=dry_run,
                       actor=actor)


def plan_steps(ctx: ServiceContext, source: ConfigSource, *, prune: bool,
               actor: str | None = None) -> list[_Step]:
    """The steps, in the order they run, audited as ``actor`` (default: the source's)."""
    steps: list[_Step] = []
    connections = {c.slug: c for c in admin.list_connections(ctx)}
    for slug, tenant in source.model.tenants.items():
        _Planner(ctx, source, slug, tenant, connections, steps,
                 actor or source.actor).plan(prune)
    return sorted(steps, key=lambda s: s.phase)  # stable: the file's order within a phase


class _Planner:
    def __init__(self, ctx: ServiceContext, source: ConfigSource, slug: str, tenant: Tenant,
                 connections: dict[str, ConnectionRecord], steps: list[_Step],
                 actor: str) -> None:
        self.ctx, self.source, self.slug, self.tenant = ctx, source, slug, tenant
        self.connections, self.steps = connections, steps
        self.actor = actor
        self.at: Loc = ("tenants", slug)

    def add(self, phase: int, change: Change, loc: Loc, run: Callable[[ServiceContext], object],
            mapping: tuple[str, str, str] | None = None) -> None:
        self.steps.append(_Step(change, loc, phase, run, mapping))

    def plan(self, prune: bool) -> None:
        state = read_tenant(self.ctx, self.slug)
        self._tenant(state)
        self._policy(state.policy if state else TenantPolicy())
        self._frontline(state.frontline if state else Frontline())
        for conn_slug, conn in self.tenant.connections.items():
            self._connection(conn_slug, conn)
        self._domains(state.domains if state else {}, prune)
        self._webhooks(state, prune)
        if prune and state is not None:
            for conn_slug in state.connections:
                if conn_slug not in self.tenant.connections:
                    self.add(CONNECTION_REMOVAL,
                             Change("delete", "connection", f"{self.slug}/{conn_slug}"),
                             (*self.at, "connections"),
                             partial(admin.remove_connection, slug=conn_slug,
                                     actor=self.actor))

    def _tenant(self, state: TenantState | None) -> None:
        name = self.tenant.name or self.slug
        if state is None:
            self.add(TENANT, Change("create", "tenant", self.slug), self.at,
                     lambda c: admin.create_tenant(c, self.slug, name, actor=self.actor))
        elif state.record.name != name:
            self.add(TENANT, Change("update", "tenant", self.slug, ("name",)),
                     (*self.at, "name"),
                     lambda c: admin.rename_tenant(c, self.slug, name, actor=self.actor))

    def _policy(self, current: TenantPolicy) -> None:
        want = self.tenant.policy
        changed = tuple(f for f in TenantPolicy.model_fields
                        if getattr(want, f) != getattr(current, f))
        if not changed:
            return

        def run(c: ServiceContext) -> None:
            if set(changed) & set(_DORMANT):
                lifecycle.set_dormant_policy(
                    c, self.slug, warn_days=want.dormant_warn_days,
                    deactivate_days=want.dormant_deactivate_days,
                    delete_after_days=want.delete_after_days, actor=self.actor)
            if "audit_retention_days" in changed:
                lifecycle.set_audit_retention(c, self.slug, want.audit_retention_days,
                                              actor=self.actor)
            if set(changed) & set(_SCIM):
                scim_tokens.set_scim_policy(c, self.slug, delete=want.scim_delete,
                                            on_existing=want.scim_on_existing,
                                            actor=self.actor)
            if "claims_retention_days" in changed:
                mapping_preview.set_claims_retention(c, self.slug, want.claims_retention_days,
                                                     actor=self.actor)
        self.add(POLICY, Change("update", "policy", self.slug, changed), (*self.at, "policy"),
                 run)

    def _frontline(self, current: Frontline) -> None:
        want = self.tenant.frontline
        changed = tuple(f for f in Frontline.model_fields
                        if getattr(want, f) != getattr(current, f))
        if changed:
            policy = devices.FrontlinePolicy(**{**want.model_dump(),
                                                "shifts": tuple(want.shifts)})
            self.add(POLICY, Change("update", "frontline", self.slug, changed),
                     (*self.at, "frontline"),
                     lambda c: devices.set_policy(c, self.slug, policy, actor=self.actor))

    def _connection(self, conn_slug: str, conn: Connection) -> None:
        where: Loc = (*self.at, "connections", conn_slug)
        name = f"{self.slug}/{conn_slug}"
        text, mapping_source = self.source.mappings[(self.slug, conn_slug)]
        config = settings_config(conn)
        secret = self.source.secrets.get((*where, "oidc", "client_secret"))
        record = self.connections.get(conn_slug)
        if record is None:
            def create(c: ServiceContext) -> None:
                if conn.kind == "oidc":
                    admin.add_oidc_connection(
                        c, tenant=self.slug, slug=conn_slug, config=config,
                        client_secret=secret, mapping=text, mapping_source=mapping_source,
                        check_provider=False, actor=self.actor)
                elif conn.kind == "saml":
                    admin.add_saml_connection_from_config(
                        c, tenant=self.slug, slug=conn_slug, config=config, mapping=text,
                        mapping_source=mapping_source, actor=self.actor)
                else:
                    admin.add_mock_connection(c, tenant=self.slug, slug=conn_slug,
                                              mapping=text, mapping_source=mapping_source,
                                              actor=self.actor)
                if not conn.enabled:
                    admin.set_connection_enabled(c, conn_slug, enabled=False,
                                                 actor=self.actor)
            self.add(CONNECTION, Change("create", "connection", name), where, create)
            return
        if record.tenant_slug != self.slug:
            raise self.source.error((*where, "[key]"), f"connection {conn_slug} belongs to "
                                    f"tenant {record.tenant_slug} (connection slugs are "
                                    "global)")
        if record.kind != conn.kind:
            raise self.source.error((*where, conn.kind), f"connection {conn_slug} is "
                                    f"{record.kind}: a connection's kind cannot change")
        want = normal_settings(conn.kind, config)
        have = normal_settings(record.kind, record.config)
        if conn.kind == "saml" and want["metadata_url"] and \
                want["metadata_url"] == have["metadata_url"]:
            want.update({f: have[f] for f in SAML_METADATA_FIELDS})  # the refresh's
        changed = [f for f in want if want[f] != have.get(f)]
        store = {**want, **_server_made(record)}
        secrets: dict[str, str] = {}
        if conn.kind == "oidc":
            opened = self.ctx.secretbox.open(record.secrets) if record.secrets else {}
            if secret is not None and opened.get("client_secret") != secret:
                secrets["client_secret"] = secret
                changed.append("client_secret")
            if want["token_auth_method"] == "private_key_jwt":  # noqa: S105 - a method
                if "private_jwk" not in opened or "client_public_jwk" not in store:
                    secrets["private_jwk"], store["client_public_jwk"] = \
                        new_client_key(conn_slug)
            else:
                store.pop("client_public_jwk", None)
        fields = [*changed, *(["mapping"] if record.mapping != text else []),
                  *(["enabled"] if record.enabled != conn.enabled else [])]
        if not fields:
            return

        def update(c: ServiceContext) -> None:
            if changed:
                admin.update_connection(c, conn_slug, config=store, secrets_=secrets or None,
                                        changed=changed, actor=self.actor)
            if record.mapping != text:
                admin.set_mapping(c, conn_slug, text, mapping_source, actor=self.actor)
            if record.enabled != conn.enabled:
                admin.set_connection_enabled(c, conn_slug, enabled=conn.enabled,
                                             actor=self.actor)
        self.add(CONNECTION, Change("update", "connection", name, tuple(fields)), where,
                 update, (conn_slug, text, mapping_source) if record.mapping != text else None)

    def _domains(self, current: dict[str, str], prune: bool) -> None:
        wanted: dict[str, str] = {}
        for domain, conn_slug in self.tenant.domains.items():
            stored = self.source.domains[(self.slug, domain)]
            wanted[stored] = conn_slug
            if current.get(stored) == conn_slug:
                continue
            action: Action = "create" if stored not in current else "update"
            self.add(DOMAIN, Change(action, "domain", f"{self.slug}/{stored}",
                                    () if action == "create" else ("connection",)),
                     (*self.at, "domains", domain),
                     partial(discovery.add_domain, tenant=self.slug, domain=stored,
                             connection=conn_slug, actor=self.actor))
        if prune:
            for stored in current:
                if stored not in wanted:
                    self.add(DOMAIN_REMOVAL, Change("delete", "domain", f"{self.slug}/{stored}"),
                             (*self.at, "domains"),
                             partial(discovery.remove_domain, tenant=self.slug,
                                     domain=stored, actor=self.actor))

    def _webhooks(self, state: TenantState | None, prune: bool) -> None:
        current = state.webhooks if state else []
        by_url: dict[str, WebhookEndpointRecord] = {}
        for known in current:
            by_url.setdefault(known.url, known)
        for index, hook in enumerate(self.tenant.webhooks):
            where: Loc = (*self.at, "webhooks", index)
            secret = self.source.secrets[(*where, "secret")]
            url = self.source.webhook_urls[(self.slug, index)]
            name = f"{self.slug}/{shown_url(url)}"
            endpoint = by_url.get(url)
            if endpoint is None:
                self.add(WEBHOOK, Change("create", "webhook", name), where,
                         partial(webhooks.add_endpoint, tenant=self.slug, url=url,
                                 event_types=hook.events, actor=self.actor, secret=secret))
                continue
            types = webhooks.check_event_types(hook.events)
            new_types = types if list(endpoint.event_types) != types else None
            new_secret = secret if webhooks.endpoint_secret(self.ctx, endpoint.id) != secret \
                else None
            fields = (*(("events",) if new_types else ()),
                      *(("secret",) if new_secret else ()))
            if fields:
                self.add(WEBHOOK, Change("update", "webhook", name, fields), where,
                         partial(webhooks.change_endpoint, endpoint_id=endpoint.id,
                                 event_types=new_types, secret=new_secret, actor=self.actor))
        if prune:
            wanted = [self.source.webhook_urls[(self.slug, i)]
                      for i in range(len(self.tenant.webhooks))]
            kept = {by_url[url].id for url in wanted if url in by_url}
            for endpoint in current:
                if endpoint.id not in kept:
                    self.add(WEBHOOK_REMOVAL, Change(
                        "delete", "webhook", f"{self.slug}/{shown_url(endpoint.url)}"),
                        (*self.at, "webhooks"),
                        partial(webhooks.remove_endpoint, endpoint_id=endpoint.id,
                                actor=self.actor))


def _server_made(record: ConnectionRecord) -> dict[str, object]:
    """Settings jitprov made, not the file: the SP certificate, the private_key_jwt public
    key."""
    keep = ("sp_certificate", "client_public_jwk")
    return {k: record.config[k] for k in keep if record.config.get(k) is not None}

