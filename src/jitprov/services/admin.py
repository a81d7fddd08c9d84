"""Administration use cases: tenants, connections, mappings, accounts. Each audited."""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from jitprov.core.audit import AuditEvent
from jitprov.core.errors import InvalidInput
from jitprov.core.mapping import load_policy
from jitprov.protocols.oidc import OidcConfig
from jitprov.protocols.saml import SamlConfig, generate_sp_keypair
from jitprov.services.common import hash_token
from jitprov.services.context import ServiceContext
from jitprov.services.login.kinds import CONNECTION_KINDS
from jitprov.services.login.oidc import new_client_key, provider_metadata
from jitprov.services.login.saml import SP_KEY_SECRET, load_idp_metadata
from jitprov.store.records import AccountView, ConnectionRecord, TenantRecord
from jitprov.store.unit_of_work import UnitOfWork

SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")


def check_slug(kind: str, slug: str) -> None:
    if not SLUG.match(slug):
        raise InvalidInput(f"{kind} slug {slug!r} must be 1-63 lowercase letters, digits or "
                           "hyphens, not starting or ending with a hyphen")


def create_tenant(ctx: ServiceContext, slug: str, name: str | None = None, *,
                  actor: str = "cli") -> TenantRecord:
    """Create a tenant and start its audit chain. Raises Conflict, InvalidInput."""
    check_slug("tenant", slug)
    now = ctx.clock()
    with UnitOfWork(ctx.db) as uow:
        tenant = uow.config.tenants.create(slug, name or slug, now)
        uow.audit.append(tenant.id, tenant.slug, AuditEvent(
            "tenant.created", actor, {"slug": slug, "name": tenant.name}), now)
        uow.commit()
    return tenant


def rename_tenant(ctx: ServiceContext, slug: str, name: str, *,
                  actor: str = "cli") -> None:
    """Change a tenant's display name; audited ``tenant.renamed``. Raises NotFound,
    InvalidInput."""
    if not name.strip() or len(name) > 200:
        raise InvalidInput("a tenant name is 1-200 characters")
    now = ctx.clock()
    with UnitOfWork(ctx.db) as uow:
        tenant = uow.config.tenants.get(slug)
        uow.config.tenants.rename(tenant.id, name)
        uow.audit.append(tenant.id, tenant.slug, AuditEvent(
            "tenant.renamed", actor, {"before": tenant.name, "after": name}), now)
        uow.commit()


def list_tenants(ctx: ServiceContext) -> list[TenantRecord]:
    with UnitOfWork(ctx.db, readonly=True) as uow:
        return uow.config.tenants.list()


def add_connection(ctx: ServiceContext, *, tenant: str, slug: str, kind: str,
                   config: Mapping[str, object], secrets_: Mapping[str, str] | None,
                   mapping: str, mapping_source: str, actor: str = "cli") -> ConnectionRecord:
    """Register a connection. The mapping is compiled first: a bad rule fails here with file,
    line and rule, never at a login. Raises MappingError, Conflict, NotFound, InvalidInput."""
    check_slug("connection", slug)
    if kind not in CONNECTION_KINDS:
        raise InvalidInput(f"unknown connection kind {kind!r}; known: "
                           f"{', '.join(sorted(CONNECTION_KINDS))}")
    load_policy(mapping, mapping_source)
    CONNECTION_KINDS[kind].validate_config(config)
    now = ctx.clock()
    with UnitOfWork(ctx.db) as uow:
        ten = uow.config.tenants.get(tenant)
        sealed = ctx.secretbox.seal(secrets_) if secrets_ else None
        record = uow.config.connections.add(tenant_id=ten.id, slug=slug, kind=kind, config=config,
                                            secrets=sealed, mapping=mapping,
                                            mapping_source=mapping_source, now=now)
        uow.audit.append(ten.id, ten.slug, AuditEvent(
            "connection.created", actor, {"connection": slug, "kind": kind,
                                          "config": dict(config),
                                          "mapping_source": mapping_source}), now)
        uow.commit()
    return record


def add_mock_connection(ctx: ServiceContext, *, tenant: str, slug: str, mapping: str,
                        mapping_source: str, actor: str = "cli") -> ConnectionRecord:
    """A dev-only connection to the built-in demo IdP, with its own signing key."""
    return add_connection(ctx, tenant=tenant, slug=slug, kind="mock", config={},
                          secrets_={"signing_key": secrets.token_urlsafe(32)},
                          mapping=mapping, mapping_source=mapping_source, actor=actor)


def set_mapping(ctx: ServiceContext, connection: str, mapping: str, mapping_source: str, *,
                actor: str = "cli") -> int:
    """Replace a connection's mapping (compiled first); running nodes use it at their next
    login. Returns the connection's new version."""
    policy = load_policy(mapping, mapping_source)
    now = ctx.clock()
    with UnitOfWork(ctx.db) as uow:
        conn = uow.config.connections.get(connection)
        version = uow.config.connections.set_mapping(connection, mapping, mapping_source, now)
        ctx.connections.forget(connection)
        uow.audit.append(conn.tenant_id, conn.tenant_slug, AuditEvent(
            "connection.mapping_changed", actor,
            {"connection": connection, "mapping_source": mapping_source,
             "policy": policy.fingerprint[:16], "version": version}), now)
        uow.commit()
    return version


def set_connection_enabled(ctx: ServiceContext, slug: str, *, enabled: bool,
                           actor: str = "cli") -> None:
    """Enable or disable sign-in through a connection. Raises NotFound."""
    now = ctx.clock()
    with UnitOfWork(ctx.db) as uow:
        conn = uow.config.connections.get(slug)
        uow.config.connections.set_enabled(slug, enabled, now)
        ctx.connections.forget(slug)
        uow.audit.append(conn.tenant_id, conn.tenant_slug, AuditEvent(
            "connection.enabled" if enabled else "connection.disabled", actor,
            {"connection": slug}), now)
        uow.commit()


def update_connection(ctx: ServiceContext, slug: str, *, config: Mapping[str, object],
                      secrets_: Mapping[str, str] | None = None, changed: list[str],
                      actor: str = "cli") -> int:
    """Replace a connection's settings (validated by its kind) and, when given, merge
    ``secrets_`` into its sealed secrets; running nodes use them at their next login.
    ``changed`` names the settings that differ, for the audit event
    ``connection.updated`` (never a secret's value). Returns the new version. Raises
    InvalidInput, NotFound."""
    now = ctx.clock()
    with UnitOfWork(ctx.db) as uow:
        conn = uow.config.connections.get(slug)
        CONNECTION_KINDS[conn.kind].validate_config(config)
        sealed = conn.secrets
        if secrets_:
            current = ctx.secretbox.open(conn.secrets) if conn.secrets else {}
            sealed = ctx.secretbox.seal({**current, **secrets_})
        version = uow.config.connections.update(slug, config=config, secrets=sealed, now=now)
        ctx.connections.forget(slug)
        uow.audit.append(conn.tenant_id, conn.tenant_slug, AuditEvent(
            "connection.updated", actor, {"connection": slug, "changed": sorted(changed),
                                          "version": version}), now)
        uow.commit()
    return version


def remove_connection(ctx: ServiceContext, slug: str, *, actor: str = "cli") -> None:
    """Delete a connection no identity signs in through (its verified domains go with it);
    audited ``connection.removed``. Raises NotFound, Conflict (it has identities)."""
    now = ctx.clock()
    with UnitOfWork(ctx.db) as uow:
        conn = uow.config.connections.get(slug)
        uow.config.connections.remove(slug)
        ctx.connections.forget(slug)
        uow.audit.append(conn.tenant_id, conn.tenant_slug, AuditEvent(
            "connection.removed", actor, {"connection": slug, "kind": conn.kind}), now)
        uow.commit()


def get_connection(ctx: ServiceContext, slug: str) -> ConnectionRecord:
    with UnitOfWork(ctx.db, readonly=True) as uow:
        return uow.config.connections.get(slug)


def list_connections(ctx: ServiceContext, tenant: str | None = None) -> list[ConnectionRecord]:
    with UnitOfWork(ctx.db, readonly=True) as uow:
        tenant_id = uow.config.tenants.get(tenant).id if tenant else None
        return uow.config.connections.list(tenant_id)


def list_accounts(ctx: ServiceContext, tenant: str, *, limit: int = 1000,
                  offset: int = 0) -> list[AccountView]:
    """Accounts of a tenant, oldest first, with the grants in force now (an expired grant
    is not held, even before the sweep deletes it)."""
    now = ctx.clock()
    with UnitOfWork(ctx.db, readonly=True) as uow:
        views = uow.accounts.list(uow.config.tenants.get(tenant).id, limit=limit,
                                  offset=offset)
    return [replace(v, account=v.account.at(now)) for v in views]


def get_account(ctx: ServiceContext, account_id: str) -> AccountView:
    """One account, as :func:`list_accounts` shows it. Raises NotFound."""
    with UnitOfWork(ctx.db, readonly=True) as uow:
        view = uow.accounts.view(account_id)
    return replace(view, account=view.account.at(ctx.clock()))


ADMIN_TOKEN_PREFIX = "jpa_"  # noqa: S105 - a public prefix, not a secret


@dataclass(frozen=True, slots=True)
class AdminPrincipal:
    token_id: int
    name: str

    @property
    def actor(self) -> str:
        return f"admin-token:{self.token_id}:{self.name}"


def create_admin_token(ctx: ServiceContext, name: str, *,
                       expires_in: timedelta | None = None) -> tuple[int, str]:
    """Issue an admin API token; returns (id, token). Only its hash is stored: the token is
    shown once."""
    token = ADMIN_TOKEN_PREFIX + secrets.token_urlsafe(32)
    now = ctx.clock()
    with UnitOfWork(ctx.db) as uow:
        token_id = uow.config.admin_tokens.create(name, hash_token(token), now,
                                                  now + expires_in if expires_in else None)
        uow.commit()
    return token_id, token


def authenticate_admin(ctx: ServiceContext, token: str | None) -> AdminPrincipal | None:
    """The principal of a bearer token, or None (missing, unknown, revoked, expired).
    No token configured means no access: this never fails open."""
    if not token or not token.startswith(ADMIN_TOKEN_PREFIX):
        return None
    with UnitOfWork(ctx.db, readonly=True) as uow:
        found = uow.config.admin_tokens.find_active(hash_token(token), ctx.clock())
    return AdminPrincipal(*found) if found else None


def list_admin_tokens(ctx: ServiceContext) -> list[tuple[int, str, datetime, datetime | None,
                                                         datetime | None]]:
    with UnitOfWork(ctx.db, readonly=True) as uow:
        return uow.config.admin_tokens.list()


def revoke_admin_token(ctx: ServiceContext, token_id: int) -> None:
    with UnitOfWork(ctx.db) as uow:
        uow.config.admin_tokens.revoke(token_id, ctx.clock())
        uow.commit()


DEFAULT_OIDC_MAPPING = """\
# Default mapping of `connection add-oidc` (no --mapping given): profile and groups only;
# add roles rules, then `jitprov connection set-mapping`.
profile:
  email: email
  name: name || join(' ', [given_name, family_name])
groups: groups
"""


def add_oidc_connection(ctx: ServiceContext, *, tenant: str, slug: str,
                        config: Mapping[str, object], client_secret: str | None,
                        mapping: str | None, mapping_source: str | None,
                        check_provider: bool = True, actor: str = "cli") -> ConnectionRecord:
    """Register an OIDC provider. The client secret (or, for private_key_jwt, a new P-256 key)
    is sealed at rest; with ``check_provider`` the discovery document is fetched first, so a
    wrong issuer fails here rather than at the first login. Raises InvalidInput, OidcError,
    MappingError, Conflict, NotFound."""
    parsed = OidcConfig.parse(config)
    secrets_: dict[str, str] = {}
    if parsed.token_auth_method == "private_key_jwt":  # noqa: S105 - a method name
        secrets_["private_jwk"], public = new_client_key(slug)
        config = {**config, "client_public_jwk": public}
    elif not client_secret:
        raise InvalidInput(f"{parsed.token_auth_method} needs --client-secret")
    else:
        secrets_["client_secret"] = client_secret
    if check_provider:
        metadata = provider_metadata(ctx, parsed)
        supported = metadata.token_endpoint_auth_methods
        if parsed.token_auth_method not in supported:
            raise InvalidInput(f"the provider does not accept {parsed.token_auth_method} at its "
                               f"token endpoint (it accepts {', '.join(supported)})")
    return add_connection(ctx, tenant=tenant, slug=slug, kind="oidc", config=config,
                          secrets_=secrets_, mapping=mapping or DEFAULT_OIDC_MAPPING,
                          mapping_source=mapping_source or "default OIDC mapping", actor=actor)


DEFAULT_SAML_MAPPING = """\
# Default mapping of `connection add-saml` (no --mapping given): profile and groups only;
# add roles rules, then `jitprov connection set-mapping`. SAML attributes are lists of
# strings, by Name and by FriendlyName.
profile:
  email: email || mail
  name: displayName || name || cn
groups: groups
"""


def add_saml_connection(ctx: ServiceContext, *, tenant: str, slug: str,
                        metadata_xml: bytes | None, metadata_url: str | None,
                        mapping: str | None, mapping_source: str | None,
                        entity_id: str | None = None,
                        options: Mapping[str, object] | None = None,
                        actor: str = "cli") -> ConnectionRecord:
    """Register a SAML IdP from its metadata (inline, or fetched from ``metadata_url``, which
    the metadata refresh job then re-reads). A new SP key pair is made: the private key is
    sealed at rest, the certificate goes into the config and the SP metadata. ``entity_id``
    picks one IdP out of an aggregate; ``options`` sets other SamlConfig fields
    (``allow_idp_initiated``, ``clock_skew_seconds``...). Raises SamlError, InvalidInput,
    MappingError, Conflict, NotFound."""
    check_slug("connection", slug)
    metadata = load_idp_metadata(ctx, metadata_xml=metadata_xml, metadata_url=metadata_url,
                                 entity_id=entity_id)
    key_pem, cert_pem = generate_sp_keypair(f"jitprov {slug}")
    config = SamlConfig.from_metadata(metadata, sp_certificate=cert_pem,
                                      metadata_url=metadata_url).as_dict()
    config = SamlConfig.parse({**config, **(options or {})}).as_dict()
    return add_connection(ctx, tenant=tenant, slug=slug, kind="saml", config=config,
                          secrets_={SP_KEY_SECRET: key_pem},
                          mapping=mapping or DEFAULT_SAML_MAPPING,
                          mapping_source=mapping_source or "default SAML mapping", actor=actor)


def add_saml_connection_from_config(ctx: ServiceContext, *, tenant: str, slug: str,
                                    config: Mapping[str, object], mapping: str,
                                    mapping_source: str,
                                    actor: str = "cli") -> ConnectionRecord:
    """Register a SAML IdP from its settings as stored (no metadata read: ``jitprov
    apply`` gives them), with a new SP key pair as :func:`add_saml_connection` makes.
    Raises InvalidInput, MappingError, Conflict, NotFound."""
    check_slug("connection", slug)
    key_pem, cert_pem = generate_sp_keypair(f"jitprov {slug}")
    stored = SamlConfig.parse({**config, "sp_certificate": cert_pem}).as_dict()
    return add_connection(ctx, tenant=tenant, slug=slug, kind="saml", config=stored,
                          secrets_={SP_KEY_SECRET: key_pem}, mapping=mapping,
                          mapping_source=mapping_source, actor=actor)
