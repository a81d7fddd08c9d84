"""Home-realm discovery: from a person's email address to the connection they sign in through.

An admin verifies a tenant's email domain and maps it to one of the tenant's connections
(``tenant add-domain``, the admin API). No DNS TXT record is checked (jitprov may not reach
the DNS the organisation publishes in): the admin's action is the verification, and it is
recorded in the tenant's audit chain (``domain.verified``, ``domain.removed``, with the admin
as actor). A domain belongs to one tenant at most; matching is exact (``core/domains.py``).

:func:`discover` is what ``POST /sso/discover`` asks. An address whose domain no tenant
verified belongs to no tenant, so there is no audit chain to record it in: it is logged
(the domain only, never the address) and refused with a readable page.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from jitprov.core.audit import AuditEvent
from jitprov.core.domains import email_domain, normalise_domain
from jitprov.core.errors import InvalidInput, NotFound, RaceLost
from jitprov.services.context import ServiceContext
from jitprov.store.records import ConnectionRecord, DomainRecord
from jitprov.store.unit_of_work import UnitOfWork

log = logging.getLogger("jitprov.discovery")


class UnknownDomain(NotFound):
    """No tenant verified the domain of the address given: nobody signs in with it here."""

    code = "unknown_domain"


@dataclass(frozen=True, slots=True)
class Discovery:
    """Where an address signs in: the connection, and the hint for its IdP (the address)."""

    connection: str
    login_hint: str
    domain: str

    def __repr__(self) -> str:  # the address is personal data: kept out of logs
        return f"Discovery(connection={self.connection!r}, domain={self.domain!r})"


@dataclass(frozen=True, slots=True)
class Landing:
    """What the landing page offers: the email form (once any tenant verified a domain) and
    the connections it still lists as buttons."""

    ask_email: bool
    connections: list[ConnectionRecord]


def add_domain(ctx: ServiceContext, tenant: str, domain: str, *, connection: str,
               actor: str = "cli") -> DomainRecord:
    """Verify ``domain`` for the tenant and send its people to ``connection`` (one of the
    tenant's): audited as ``domain.verified``. Adding a domain the tenant holds again points
    it at ``connection`` (no event when nothing changes). Raises InvalidInput (not a domain,
    a connection of another tenant), NotFound (tenant, connection), Conflict (another tenant
    holds the domain)."""
    name = normalise_domain(domain)
    try:
        return _add_domain(ctx, tenant, name, connection, actor)
    except RaceLost:  # the same domain inserted concurrently: the second look says who won
        return _add_domain(ctx, tenant, name, connection, actor)


def _add_domain(ctx: ServiceContext, tenant: str, domain: str, connection: str,
                actor: str) -> DomainRecord:
    now = ctx.clock()
    with UnitOfWork(ctx.db) as uow:
        ten = uow.config.tenants.get(tenant)
        conn = uow.config.connections.get(connection)
        if conn.tenant_id != ten.id:
            raise InvalidInput(f"connection {connection!r} belongs to tenant "
                               f"{conn.tenant_slug!r}, not {tenant!r}")
        before = uow.config.domains.find(domain)
        if before is not None and before.tenant_slug == ten.slug \
                and before.connection_slug == conn.slug:
            return before
        uow.config.domains.put(domain, tenant_id=ten.id, connection_id=conn.id,
                               verified_by=actor, now=now)
        data: dict[str, object] = {"domain": domain, "connection": conn.slug}
        if before is not None and before.tenant_slug == ten.slug:
            data["previous_connection"] = before.connection_slug
        uow.audit.append(ten.id, ten.slug, AuditEvent("domain.verified", actor, data), now)
        record = uow.config.domains.find(domain)
        uow.commit()
    assert record is not None  # noqa: S101 - written just above, in this transaction
    return record


def remove_domain(ctx: ServiceContext, tenant: str, domain: str, *,
                  actor: str = "cli") -> str:
    """Stop discovering the tenant's ``domain``: audited as ``domain.removed``; returns the
    domain in its stored form. Raises
    InvalidInput (not a domain), NotFound (tenant, or a domain the tenant does not hold)."""
    name = normalise_domain(domain)
    now = ctx.clock()
    with UnitOfWork(ctx.db) as uow:
        ten = uow.config.tenants.get(tenant)
        before = uow.config.domains.find(name)
        uow.config.domains.remove(name, ten.id)
        uow.audit.append(ten.id, ten.slug, AuditEvent(
            "domain.removed", actor,
            {"domain": name, "connection": before.connection_slug if before else None}), now)
        uow.commit()
    return name


def list_domains(ctx: ServiceContext, tenant: str) -> list[DomainRecord]:
    """The tenant's verified domains, by name. Raises NotFound."""
    with UnitOfWork(ctx.db, readonly=True) as uow:
        return uow.config.domains.list(uow.config.tenants.get(tenant).id)


def discover(ctx: ServiceContext, email: str) -> Discovery:
    """The connection the owner of ``email`` signs in through. Raises InvalidInput (not an
    address: no ``@``, a control character, too long), UnknownDomain (no tenant verified
    its domain: logged, not audited, as it names no tenant)."""
    address, domain = email_domain(email)
    with UnitOfWork(ctx.db, readonly=True) as uow:
        found = uow.config.domains.find(domain)
    if found is None:
        log.info("discovery: no tenant verified the domain %s", domain)
        raise UnknownDomain(f"no organisation signs in here with addresses at {domain}; "
                            "check the address, or ask your administrator")
    return Discovery(connection=found.connection_slug, login_hint=address, domain=domain)


def landing(ctx: ServiceContext, *, dev_mode: bool) -> Landing:
    """The landing page's choices. Once any tenant has verified a domain, it asks for the
    email and lists no connection (the demo IdP's still, under ``jitprov dev``); before,
    it lists every enabled connection, so a fresh installation can sign in. The demo IdP's
    connections (kind ``mock``) only under ``jitprov dev``."""
    with UnitOfWork(ctx.db, readonly=True) as uow:
        ask_email = uow.config.domains.any()
        connections = [c for c in uow.config.connections.list()
                       if c.enabled and (dev_mode or c.kind != "mock")]
    if ask_email:
        connections = [c for c in connections if c.kind == "mock"]
    return Landing(ask_email=ask_email, connections=connections)


def domains_verified(ctx: ServiceContext) -> bool:
    """Whether any tenant has verified an email domain (discovery can route someone)."""
    with UnitOfWork(ctx.db, readonly=True) as uow:
        return uow.config.domains.any()
