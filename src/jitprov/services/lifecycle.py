"""Dormant accounts: JIT creates accounts; this makes sure they also end.

A tenant policy (``set_dormant_policy``) warns after ``warn_days`` and deactivates after
``deactivate_days`` without a successful sign-in. Off until a tenant sets it. Only ordinary
user accounts are swept: break-glass, admin and service accounts are excluded, and accounts that
never signed in (pre-provisioned by SCIM, typically) are reported separately, never
deactivated by the sweep. Deactivation is the admin path's: sessions revoked in the same
transaction, audited (actor ``lifecycle:dormant``), announced. A warning is audited and
announced once (``account.dormant``) until the next sign-in clears it. A sweep plans with
reads, then writes in batches of ``BATCH`` changes, each its own transaction under the tenant's
job lock; every write is conditional, so several nodes can run the schedule safely.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from jitprov.core.audit import AuditEvent
from jitprov.core.errors import InvalidInput
from jitprov.services.accounts import announce_status
from jitprov.services.context import ServiceContext
from jitprov.store.records import TenantRecord
from jitprov.store.unit_of_work import UnitOfWork

ACTOR = "lifecycle:dormant"
MIN_AUDIT_RETENTION_DAYS = 30  # a policy cannot be used to erase recent history
MAX_POLICY_DAYS = 36_500  # a hundred years: beyond it a date cannot be computed


@dataclass(frozen=True, slots=True)
class DormantPolicy:
    warn_days: int | None = None
    deactivate_days: int | None = None
    #: grace period: accounts deactivated (by anyone) this long ago are deleted
    delete_after_days: int | None = None

    @property
    def enabled(self) -> bool:
        return any(d is not None for d in (self.warn_days, self.deactivate_days,
                                           self.delete_after_days))


@dataclass(slots=True)
class SweepReport:
    tenant: str
    policy: DormantPolicy
    dry_run: bool
    warned: list[str] = field(default_factory=list)
    deactivated: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    never_signed_in: list[str] = field(default_factory=list)
    skipped: bool = False  # another node holds this tenant's sweep
    audit_pruned: int = 0


def set_dormant_policy(ctx: ServiceContext, tenant: str, *, warn_days: int | None,
                       deactivate_days: int | None, delete_after_days: int | None = None,
                       actor: str = "cli") -> DormantPolicy:
    """Set (or, with all None, turn off) the tenant's account lifecycle policy."""
    return _write_dormant_policy(ctx, tenant, actor, lambda _current: DormantPolicy(
        warn_days, deactivate_days, delete_after_days))


def change_dormant_policy(ctx: ServiceContext, tenant: str, *, warn_days: int | None = None,
                          deactivate_days: int | None = None,
                          delete_after_days: int | None = None,
                          actor: str = "cli") -> DormantPolicy:
    """Change only the options given (``0`` turns one off; ``None`` keeps the stored value),
    checking the policy they make together with the kept ones."""
    def merged(current: DormantPolicy) -> DormantPolicy:
        def pick(given: int | None, kept: int | None) -> int | None:
            return kept if given is None else (None if given == 0 else given)
        return DormantPolicy(pick(warn_days, current.warn_days),
                             pick(deactivate_days, current.deactivate_days),
                             pick(delete_after_days, current.delete_after_days))
    return _write_dormant_policy(ctx, tenant, actor, merged)


def _write_dormant_policy(ctx: ServiceContext, tenant: str, actor: str,
                          make: Callable[[DormantPolicy], DormantPolicy]) -> DormantPolicy:
    now = ctx.clock()
    with UnitOfWork(ctx.db) as uow:
        ten = uow.config.tenants.get(tenant)
        settings = uow.config.tenants.settings(ten.id)
        policy = make(_policy(settings))
        _check_dormant(policy)
        settings["dormant"] = {"warn_days": policy.warn_days,
                               "deactivate_days": policy.deactivate_days,
                               "delete_after_days": policy.delete_after_days}
        uow.config.tenants.set_settings(ten.id, settings)
        uow.audit.append(ten.id, ten.slug, AuditEvent(
            "tenant.policy_changed", actor, {"dormant": settings["dormant"]}), now)
        uow.commit()
    return policy


def _check_dormant(policy: DormantPolicy) -> None:
    for name, days in (("warn", policy.warn_days), ("deactivate", policy.deactivate_days),
                       ("delete-after", policy.delete_after_days)):
        if days is not None and not 1 <= days <= MAX_POLICY_DAYS:
            raise InvalidInput(f"{name} days must be from 1 to {MAX_POLICY_DAYS}")
    if (policy.warn_days is not None and policy.deactivate_days is not None
            and policy.warn_days >= policy.deactivate_days):
        raise InvalidInput(f"the warning ({policy.warn_days} days) must come before the "
                           f"deactivation ({policy.deactivate_days} days)")


def lifecycle_policy(ctx: ServiceContext, tenant: str) -> tuple[DormantPolicy, int | None]:
    """The tenant's stored lifecycle policy and audit retention in days (None: forever)."""
    with UnitOfWork(ctx.db, readonly=True) as uow:
        settings = uow.config.tenants.settings(uow.config.tenants.get(tenant).id)
    retention = settings.get("audit_retention_days")
    return _policy(settings), retention if isinstance(retention, int) else None


def set_audit_retention(ctx: ServiceContext, tenant: str, days: int | None, *,
                        actor: str = "cli") -> None:
    """Keep the tenant's audit events this many days (None: forever). Pruning keeps the chain
    verifiable: the last removed event's hash becomes the anchor the kept chain starts from."""
    if days is not None and not MIN_AUDIT_RETENTION_DAYS <= days <= MAX_POLICY_DAYS:
        raise InvalidInput(f"audit retention must be from {MIN_AUDIT_RETENTION_DAYS} to "
                           f"{MAX_POLICY_DAYS} days")
    now = ctx.clock()
    with UnitOfWork(ctx.db) as uow:
        ten = uow.config.tenants.get(tenant)
        settings = uow.config.tenants.settings(ten.id)
        settings["audit_retention_days"] = days
        uow.config.tenants.set_settings(ten.id, settings)
        uow.audit.append(ten.id, ten.slug, AuditEvent(
            "tenant.policy_changed", actor, {"audit_retention_days": days}), now)
        uow.commit()


def _policy(settings: dict[str, object]) -> DormantPolicy:
    raw = settings.get("dormant")
    if not isinstance(raw, dict):
        return DormantPolicy()
    return DormantPolicy(raw.get("warn_days"), raw.get("deactivate_days"),
                         raw.get("delete_after_days"))


def sweep(ctx: ServiceContext, tenant: str | None = None, *,
          dry_run: bool = False) -> list[SweepReport]:
    """Apply each tenant's policy (or only report, with ``dry_run``)."""
    with UnitOfWork(ctx.db, readonly=True) as uow:
        tenants = [uow.config.tenants.get(tenant)] if tenant else uow.config.tenants.list()
    return [_sweep_tenant(ctx, ten, dry_run) for ten in tenants]


#: changes written per transaction: a sweep never holds the tenant's audit head (and, on
#: SQLite, the database's one writer) for longer than one batch, so sign-ins go on meanwhile
BATCH = 200


@dataclass(frozen=True, slots=True)
class _Work:
    action: str  # delete | deactivate | warn
    account_id: str
    email: str | None
    label: str
    since: datetime  # deactivated_at (delete) or last_login_at


def _sweep_tenant(ctx: ServiceContext, ten: TenantRecord, dry_run: bool) -> SweepReport:
    now = ctx.clock()
    with UnitOfWork(ctx.db, readonly=True) as uow:
        settings = uow.config.tenants.settings(ten.id)
    policy = _policy(settings)
    report = SweepReport(ten.slug, policy, dry_run)
    retention = settings.get("audit_retention_days")
    if isinstance(retention, int) and not dry_run:
        _prune_audit(ctx, ten, retention, report, now)
    if not policy.enabled:
        return report
    days = [d for d in (policy.warn_days, policy.deactivate_days) if d]
    horizon = min(days) if days else None
    work: list[_Work] = []
    with UnitOfWork(ctx.db, readonly=True) as uow:  # the plan: reads only
        if policy.delete_after_days:
            cutoff = now - timedelta(days=policy.delete_after_days)
            for account_id, email, since in uow.accounts.deactivated_before(ten.id, cutoff):
                work.append(_Work("delete", account_id, email, f"{email or account_id} "
                                  f"(deactivated {(now - since).days} days ago)", since))
        if horizon:
            for account_id, email, last_login, warned in uow.accounts.inactive_since(
                    ten.id, now - timedelta(days=horizon)):
                idle = now - last_login
                label = f"{email or account_id} (last sign-in {idle.days} days ago)"
                if policy.deactivate_days and idle >= timedelta(days=policy.deactivate_days):
                    work.append(_Work("deactivate", account_id, email, label, last_login))
                elif policy.warn_days and warned is None:
                    work.append(_Work("warn", account_id, email, label, last_login))
            report.never_signed_in = [
                f"{email or account_id} ({how}, created {created.date().isoformat()})"
                for account_id, email, how, created in uow.accounts.never_signed_in(
                    ten.id, now - timedelta(days=horizon))]
    done = {"delete": report.deleted, "deactivate": report.deactivated, "warn": report.warned}
    if dry_run:
        for item in work:
            done[item.action].append(item.label)
        return report
    # every write below is conditional (a sign-in or reactivation that commits meanwhile
    # wins, and a second node re-running a batch changes nothing), so batches may commit
    # one by one
    for first in range(0, len(work), BATCH):
        with UnitOfWork(ctx.db) as uow:
            if not uow.config.jobs.try_lock(f"dormant-sweep\0{ten.id}"):
                report.skipped = True  # another node is sweeping this tenant
                break
            for item in work[first:first + BATCH]:
                if _apply(uow, ten, policy, item, now):
                    done[item.action].append(item.label)
            uow.commit()
    return report


def _apply(uow: UnitOfWork, ten: TenantRecord, policy: DormantPolicy, item: _Work,
           now: datetime) -> bool:
    """Write one planned change if it still holds; its audit and outbox events with it."""
    if item.action == "delete":
        assert policy.delete_after_days is not None  # noqa: S101 - planned only then
        if not uow.accounts.delete_if_deactivated_before(
                item.account_id, now - timedelta(days=policy.delete_after_days)):
            return False
        _announce_deletion(uow, ten, item.account_id, item.email, policy, now)
        return True
    idle = now - item.since
    if item.action == "deactivate":
        assert policy.deactivate_days is not None  # noqa: S101 - planned only then
        if not uow.accounts.deactivate_if_idle(
                item.account_id, now - timedelta(days=policy.deactivate_days), now):
            return False
        announce_status(uow, ten, item.account_id, "active", "deactivated",
                        reason=f"no sign-in for {idle.days} days (policy: "
                               f"{policy.deactivate_days})", actor=ACTOR, now=now)
        return True
    assert policy.warn_days is not None  # noqa: S101 - planned only then
    if not uow.accounts.warn_if_idle(item.account_id,
                                     now - timedelta(days=policy.warn_days), now):
        return False
    data = {"last_login_at": item.since.isoformat(),
            "deactivate_days": policy.deactivate_days}
    uow.audit.append(ten.id, ten.slug, AuditEvent("account.dormant", ACTOR, data,
                                                  account_id=item.account_id), now)
    uow.outbox.add(ten.id, "account.dormant", {"account_id": item.account_id,
                                               "tenant": ten.slug, **data}, now)
    return True


def _prune_audit(ctx: ServiceContext, ten: TenantRecord, retention: int, report: SweepReport,
                 now: datetime) -> None:
    with UnitOfWork(ctx.db) as uow:
        report.audit_pruned = uow.audit.prune(ten.id, now - timedelta(days=retention))
        if report.audit_pruned:
            # in the chain itself, so a forged anchor without this event is caught
            through = uow.audit.anchor(ten.id)
            uow.audit.append(ten.id, ten.slug, AuditEvent(
                "audit.pruned", "lifecycle:retention",
                {"through_seq": through[0], "through_hash": through[1],
                 "events": report.audit_pruned, "retention_days": retention}), now)
        uow.commit()


def _announce_deletion(uow: UnitOfWork, tenant: TenantRecord, account_id: str,
                       email: str | None, policy: DormantPolicy, now: datetime) -> None:
    data = {"email": email, "reason": f"deactivated for {policy.delete_after_days} days "
                                      "(grace period)"}
    uow.audit.append(tenant.id, tenant.slug, AuditEvent("account.deleted", ACTOR, data,
                                                        account_id=account_id), now)
    uow.outbox.add(tenant.id, "account.deleted", {"account_id": account_id,
                                                  "tenant": tenant.slug}, now)
