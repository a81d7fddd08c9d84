"""IdP metadata refresh: SAML connections registered from a metadata URL re-read it once per
``metadata_refresh_seconds``, so an IdP's certificate rollover reaches every node without an
admin.

One node per period: a connection is claimed by moving its ``updated_at`` (a conditional
UPDATE that exactly one node wins); the claim also spaces retries after a failure by a full
period. A change bumps the connection's version (every node re-reads it within its 2 s cache
TTL and uses the new certificates at its next login); an unchanged document changes nothing
but the claim. A fetch or parse error keeps the old configuration and is audited as
``connection.metadata_refresh_failed`` (the reason only; no document, no secret).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import dataclass
from datetime import timedelta

from jitprov.core.audit import AuditEvent
from jitprov.core.errors import JitprovError
from jitprov.protocols.saml import IdpMetadata, SamlConfig, SamlError
from jitprov.services.context import ServiceContext
from jitprov.services.login.saml import load_idp_metadata
from jitprov.store.records import ConnectionRecord
from jitprov.store.unit_of_work import UnitOfWork

log = logging.getLogger("jitprov.jobs")

#: how often ``serve`` looks for connections due (each has its own period, 60 s at least)
CHECK_EVERY = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class RefreshReport:
    connection: str
    outcome: str  # "changed" | "unchanged" | "failed" | "skipped"
    detail: str = ""
    version: int | None = None


def refresh_due(ctx: ServiceContext) -> list[RefreshReport]:
    """Refresh every SAML connection with a metadata URL whose configuration is older than its
    ``metadata_refresh_seconds`` and that no other node claimed for this period."""
    now = ctx.clock()
    with UnitOfWork(ctx.db, readonly=True) as uow:
        candidates = [c for c in uow.config.connections.list() if c.kind == "saml"
                      and c.config.get("metadata_url")]
    reports: list[RefreshReport] = []
    for conn in candidates:
        try:
            config = SamlConfig.parse(conn.config)
        except JitprovError:
            continue  # an unreadable config is for an admin to fix, not for this job
        due_before = now - timedelta(seconds=config.metadata_refresh_seconds)
        if conn.updated_at > due_before:
            continue
        with UnitOfWork(ctx.db) as uow:
            claimed = uow.config.saml.claim_refresh(conn.slug, unchanged_since=due_before,
                                                    now=now)
            uow.commit()
        if claimed:
            reports.append(refresh_connection(ctx, conn.slug))
    return reports


def refresh_connection(ctx: ServiceContext, slug: str, *, actor: str = "job") -> RefreshReport:
    """Fetch and apply one connection's IdP metadata now. Never raises for a fetch or parse
    error (reported as ``failed``, audited, the old configuration kept); raises NotFound for
    an unknown connection."""
    with UnitOfWork(ctx.db, readonly=True) as uow:
        conn = uow.config.connections.get(slug)
    if conn.kind != "saml" or not conn.config.get("metadata_url"):
        return RefreshReport(slug, "skipped", "not a SAML connection with a metadata URL")
    try:
        config = SamlConfig.parse(conn.config)
        assert config.metadata_url is not None  # noqa: S101 - checked above
        metadata = load_idp_metadata(ctx, metadata_xml=None, metadata_url=config.metadata_url,
                                     entity_id=config.idp_entity_id)
        _check(metadata, config, ctx)
        updated = SamlConfig.parse({
            **config.as_dict(), "idp_entity_id": metadata.entity_id,
            "idp_sso_url": metadata.sso_redirect_url, "idp_certs": list(metadata.signing_certs),
            "want_authn_requests_signed": metadata.want_authn_requests_signed,
            **metadata.slo_fields()})
    except JitprovError as exc:
        _audit_failure(ctx, conn, exc, actor)
        return RefreshReport(slug, "failed", str(exc))
    if updated == config:
        return RefreshReport(slug, "unchanged", version=conn.version)
    now = ctx.clock()
    with UnitOfWork(ctx.db) as uow:
        version = uow.config.saml.replace_config(slug, updated.as_dict(),
                                                 expected_version=conn.version, now=now)
        if version is not None:
            uow.audit.append(conn.tenant_id, conn.tenant_slug, AuditEvent(
                "connection.metadata_refreshed", actor,
                {"connection": slug, "version": version, "metadata_url": config.metadata_url,
                 "before": _summary(config), "after": _summary(updated)}), now)
        uow.commit()
    ctx.connections.forget(slug)
    if version is None:
        return RefreshReport(slug, "skipped", "the connection changed meanwhile; next period")
    log.info("SAML connection %s: IdP metadata changed (version %d)", slug, version)
    return RefreshReport(slug, "changed", version=version)


def _check(metadata: IdpMetadata, config: SamlConfig, ctx: ServiceContext) -> None:
    if metadata.entity_id != config.idp_entity_id:
        raise SamlError("invalid_metadata", f"the metadata now describes {metadata.entity_id}, "
                        f"not {config.idp_entity_id}; register it as a new connection")
    if metadata.valid_until is not None and metadata.valid_until < ctx.clock():
        raise SamlError("invalid_metadata", "the metadata's validUntil has passed")


def _summary(config: SamlConfig) -> dict[str, object]:
    """What changed, with certificates as SHA-256 fingerprints of their PEM text."""
    return {"idp_sso_url": config.idp_sso_url,
            "want_authn_requests_signed": config.want_authn_requests_signed,
            "idp_certs": [hashlib.sha256(c.encode()).hexdigest()[:16]
                          for c in config.idp_certs]}


def _audit_failure(ctx: ServiceContext, conn: ConnectionRecord, exc: JitprovError,
                   actor: str) -> None:
    log.warning("SAML connection %s: metadata refresh failed, keeping the old configuration: "
                "%s", conn.slug, exc)
    try:
        with UnitOfWork(ctx.db) as uow:
            uow.audit.append(conn.tenant_id, conn.tenant_slug, AuditEvent(
                "connection.metadata_refresh_failed", actor,
                {"connection": conn.slug, "code": exc.code, "reason": str(exc)[:300]}),
                ctx.clock())
            uow.commit()
    except JitprovError:
        log.warning("metadata refresh failure of %s not audited", conn.slug, exc_info=True)


def run_periodically(ctx: ServiceContext, every: timedelta,
                     stop: threading.Event) -> threading.Thread:
    """Every ``every``, in a daemon thread until ``stop`` is set: refresh what is due."""

    def loop() -> None:
        while not stop.wait(every.total_seconds()):
            try:
                for report in refresh_due(ctx):
                    if report.outcome == "failed":
                        continue  # logged and audited by refresh_connection
                    log.info("SAML metadata of %s: %s", report.connection, report.outcome)
            except Exception:
                log.exception("SAML metadata refresh failed; retrying at the next period")

    thread = threading.Thread(target=loop, name="jitprov-saml-metadata", daemon=True)
    thread.start()
    return thread
