"""What the database holds, in the terms of the configuration file: read through the same
services as ``jitprov tenant show``, ``connection list``, ``tenant domains`` and ``webhooks
list``; and ``jitprov export``, which writes it out."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import yaml

from jitprov.core.errors import InvalidInput, NotFound
from jitprov.protocols.oidc import OidcConfig
from jitprov.protocols.saml import SamlConfig
from jitprov.services import admin, devices, discovery, lifecycle, mapping_preview, webhooks
from jitprov.services.config_file.model import (
    VERSION,
    ConfigFile,
    Frontline,
    OidcSettings,
    SamlSettings,
    TenantPolicy,
)
from jitprov.services.config_file.source import carries_secret, reference
from jitprov.services.context import ServiceContext
from jitprov.services.scim import tokens as scim_tokens
from jitprov.store.records import ConnectionRecord, TenantRecord, WebhookEndpointRecord

_OIDC_FIELDS = tuple(name for name in OidcSettings.model_fields if name != "client_secret")
_SAML_FIELDS = tuple(SamlSettings.model_fields)


@dataclass(frozen=True)
class TenantState:
    record: TenantRecord
    policy: TenantPolicy
    frontline: Frontline
    connections: dict[str, ConnectionRecord]
    #: stored (IDNA) domain -> connection slug
    domains: dict[str, str]
    webhooks: list[WebhookEndpointRecord]


def read_tenant(ctx: ServiceContext, slug: str) -> TenantState | None:
    """The tenant as stored, or None when there is no such tenant."""
    try:
        dormant, retention = lifecycle.lifecycle_policy(ctx, slug)
    except NotFound:
        return None
    record = next(t for t in admin.list_tenants(ctx) if t.slug == slug)
    scim = scim_tokens.get_scim_policy(ctx, slug)
    policy = TenantPolicy(
        dormant_warn_days=dormant.warn_days, dormant_deactivate_days=dormant.deactivate_days,
        delete_after_days=dormant.delete_after_days, audit_retention_days=retention,
        claims_retention_days=mapping_preview.claims_retention_days(ctx, slug),
        scim_delete=scim.delete, scim_on_existing=scim.on_existing)
    front = devices.get_policy(ctx, slug)
    frontline = Frontline(idle_seconds=front.idle_seconds, shifts=list(front.shifts),
                          timezone=front.timezone,
                          roles_max_age_seconds=front.roles_max_age_seconds,
                          offline_seconds=front.offline_seconds, locale=front.locale)
    return TenantState(
        record=record, policy=policy, frontline=frontline,
        connections={c.slug: c for c in admin.list_connections(ctx, slug)},
        domains={d.domain: d.connection_slug for d in discovery.list_domains(ctx, slug)},
        webhooks=webhooks.list_endpoints(ctx, slug))


def normal_settings(kind: str, config: Mapping[str, object]) -> dict[str, object]:
    """A connection's settings as the file states them, with every default filled in, from
    a stored configuration or the file's (so the two compare field by field)."""
    if kind == "oidc":
        parsed = OidcConfig.parse(config).model_dump()
        return {name: _plain(parsed[name]) for name in _OIDC_FIELDS}
    if kind == "saml":
        stored = SamlConfig.parse(config).as_dict()
        return {name: _plain(stored[name]) for name in _SAML_FIELDS}
    return {}


def _plain(value: object) -> object:
    return list(value) if isinstance(value, tuple) else value


def export_model(ctx: ServiceContext, tenant: str | None = None) -> ConfigFile:
    """Every tenant (or one), as a configuration file: secrets as references named
    ``CFG_<TENANT>_<CONNECTION>_CLIENT_SECRET`` and ``CFG_<TENANT>_WEBHOOK_<N>_SECRET``, and
    a webhook URL that may carry a token (:func:`carries_secret`) as the reference
    ``CFG_<TENANT>_WEBHOOK_<N>_URL``. Raises NotFound (the tenant), InvalidInput (two
    webhooks of a tenant on one URL)."""
    slugs = [tenant] if tenant else [t.slug for t in admin.list_tenants(ctx)]
    tenants: dict[str, object] = {}
    for slug in slugs:
        state = read_tenant(ctx, slug)
        if state is None:
            raise NotFound(f"no tenant {slug!r}")
        tenants[slug] = _tenant_document(state)
    return ConfigFile.model_validate({"version": VERSION, "tenants": tenants})


def _tenant_document(state: TenantState) -> dict[str, object]:
    slug = state.record.slug
    connections: dict[str, object] = {}
    for conn in state.connections.values():
        settings = normal_settings(conn.kind, conn.config)
        if conn.kind == "oidc" and settings["token_auth_method"] != "private_key_jwt":  # noqa: S105
            settings["client_secret"] = reference(slug, conn.slug, "client_secret")
        connections[conn.slug] = {"enabled": conn.enabled, "mapping": conn.mapping,
                                  conn.kind: settings}
    urls = [hook.url for hook in state.webhooks]
    if len(set(urls)) != len(urls):
        raise InvalidInput(f"tenant {slug} has two webhook endpoints on one URL: a "
                           "configuration file knows an endpoint by its URL")
    return {
        "name": state.record.name,
        "policy": state.policy.model_dump(),
        "frontline": state.frontline.model_dump(),
        "connections": connections,
        "domains": dict(state.domains),
        "webhooks": [{"url": reference(slug, "webhook", str(index), "url")
                      if carries_secret(hook.url) else hook.url,
                      "events": list(hook.event_types),
                      "secret": reference(slug, "webhook", str(index), "secret")}
                     for index, hook in enumerate(state.webhooks, start=1)],
    }


HEADER = """\
# jitprov configuration: `jitprov apply -f FILE [--dry-run] [--prune]`
# (JSON Schema: docs/jitprov-config.schema.json). Secrets, and webhook URLs that may carry
# a token, are ${ENV_VAR} references, resolved from the environment of `jitprov apply`;
# their values are never written here.
"""


class _Dumper(yaml.SafeDumper):
    """Block style, mappings in the model's order, multi-line text as ``|`` blocks."""


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text)


def render(model: ConfigFile) -> str:
    """The file's text: a header, then the model as YAML."""
    document = model.model_dump(mode="json")
    for tenant in document["tenants"].values():
        for conn in tenant["connections"].values():
            for kind in ("oidc", "saml", "mock"):
                if conn[kind] is None:
                    del conn[kind]  # one kind each
    body = yaml.dump(document, Dumper=_Dumper, sort_keys=False,
                     allow_unicode=True, default_flow_style=False, width=100)
    return HEADER + body


def export_config(ctx: ServiceContext, tenant: str | None = None) -> str:
    """``jitprov export``: the configuration file of every tenant, or of one."""
    return render(export_model(ctx, tenant))
