"""The mapping editor's use cases: validate a mapping's text, test it against claims or a
recorded login, and preview its impact on the people who recently signed in.

Nothing here writes, except :func:`set_claims_retention`. Saving a mapping stays
``admin.set_mapping`` (compiled again and audited there).

Recorded claims are the redacted claims of each identity's most recent login (see
``core/recorded_claims.py``), kept for the tenant's retention (:func:`claims_retention`,
default :data:`DEFAULT_CLAIMS_RETENTION`) and cleared by ``jobs/purge.py``. Only logins that
reached an account record claims (a refused first login has no identity to hold them).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from jitprov.core.audit import AuditEvent
from jitprov.core.errors import InvalidInput, MappingError, NotFound
from jitprov.core.identity import ExternalIdentity
from jitprov.core.mapping import Policy, load_policy
from jitprov.core.mapping.expressions import MAX_CLAIMS_BYTES
from jitprov.core.mapping.impact import ImpactReport, RecordedLogin, compare_policies
from jitprov.services.context import ServiceContext
from jitprov.services.login.flow import DryRun, dry_run_login
from jitprov.store.devices import HealthRecord
from jitprov.store.records import ConnectionRecord
from jitprov.store.unit_of_work import UnitOfWork

DEFAULT_PREVIEW_LIMIT = 200
MAX_PREVIEW_LIMIT = 1000
DEFAULT_CLAIMS_RETENTION = timedelta(days=30)
MAX_CLAIMS_RETENTION_DAYS = 3650
RETENTION_SETTING = "claims_retention_days"  # in the tenant's settings


@dataclass(frozen=True, slots=True)
class MappingProblem:
    """One problem of a mapping's text: 1-based ``line`` (None: the whole file), the rule or
    field it belongs to, what is wrong."""

    message: str
    line: int | None = None
    rule: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {"line": self.line, "rule": self.rule, "message": self.message}

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line is not None else ""
        return f"{where}{self.rule + ': ' if self.rule else ''}{self.message}"


@dataclass(frozen=True, slots=True)
class ConnectionOverview:
    """A connection as the console lists it: its record, creation time, IdP health (last
    success, last failure and why) and how many recorded logins a preview can replay."""

    connection: ConnectionRecord
    created_at: datetime
    health: HealthRecord
    recorded_logins: int
    last_recorded_at: datetime | None


def connections_overview(ctx: ServiceContext, tenant: str) -> list[ConnectionOverview]:
    """The tenant's connections, by slug. Raises NotFound."""
    with UnitOfWork(ctx.db, readonly=True) as uow:
        ten = uow.config.tenants.get(tenant)
        activity = uow.identities.claims.activity(ten.id)
        out: list[ConnectionOverview] = []
        for conn in uow.config.connections.list(ten.id):
            seen = activity.get(conn.id)
            out.append(ConnectionOverview(
                connection=conn, created_at=seen.created_at if seen else conn.updated_at,
                health=uow.devices.health.get(conn.id),
                recorded_logins=seen.recorded_logins if seen else 0,
                last_recorded_at=seen.last_recorded_at if seen else None))
    return sorted(out, key=lambda o: o.connection.slug)


def validate_mapping(text: str, source: str = "mapping") -> list[MappingProblem]:
    """The problems of a mapping's text, empty when it compiles. The compiler stops at the
    first problem, so there is at most one; each names its line and rule. Never raises."""
    try:
        load_policy(text, source)
    except MappingError as err:
        return [MappingProblem(err.message, err.line, err.rule)]
    return []


def parse_claims(text: str, source: str = "claims") -> dict[str, object]:
    """A JSON object of claims from text (pasted in the console, read from a file). Raises
    InvalidInput naming the line of a JSON error, or what else is wrong."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_CLAIMS_BYTES:
        raise InvalidInput(f"{source}: claims are larger than {MAX_CLAIMS_BYTES} bytes")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{source}:{exc.lineno}: not valid JSON: {exc.msg} "
                           f"(column {exc.colno})") from None
    except RecursionError:
        raise InvalidInput(f"{source}: JSON nested too deeply") from None
    if not isinstance(data, dict):
        raise InvalidInput(f"{source}: the claims must be one JSON object, like "
                           '{"email": "ana@example.org", "groups": ["Nurses"]}')
    return data


def recent_logins(ctx: ServiceContext, connection: str, *,
                  limit: int = 20) -> list[RecordedLogin]:
    """The connection's most recent recorded logins, newest first. Raises NotFound."""
    limit = _check_limit(limit)
    with UnitOfWork(ctx.db, readonly=True) as uow:
        conn = uow.config.connections.get(connection)
        return uow.identities.claims.latest(conn.id, limit=limit)


def recorded_login(ctx: ServiceContext, connection: str, subject: str) -> RecordedLogin:
    """The recorded login of one identity. Raises NotFound (no such connection or identity,
    or its claims were not recorded or already purged)."""
    with UnitOfWork(ctx.db, readonly=True) as uow:
        conn = uow.config.connections.get(connection)
        found = uow.identities.claims.get(conn.id, subject)
    if found is None:
        raise NotFound(f"no recorded login of {subject!r} through {connection}")
    return found


def test_mapping(ctx: ServiceContext, connection: str, *,
                 claims: Mapping[str, object] | None = None, subject: str | None = None,
                 recorded_subject: str | None = None, mapping: str | None = None,
                 source: str = "editor") -> DryRun:
    """Dry run of a login through ``connection``: with ``claims`` (subject: ``subject``, else
    the claims' ``sub``), or with the recorded claims of ``recorded_subject``; under
    ``mapping`` (unsaved text) or, without it, the mapping in force. The decision says which
    rule granted what and which denied why (the trace); nothing is written. Raises
    MappingError (the mapping), InvalidInput (neither or both claims sources), NotFound."""
    if (claims is None) == (recorded_subject is None):
        raise InvalidInput("give either claims or a recorded login to test with")
    policy = load_policy(mapping, source) if mapping is not None else None
    if recorded_subject is not None:
        recorded = recorded_login(ctx, connection, recorded_subject)
        claims, sub = recorded.claims, recorded.subject
    else:
        assert claims is not None  # noqa: S101 - checked above
        raw = subject or claims.get("sub")
        sub = raw if isinstance(raw, str) and raw else "dry-run"
    return dry_run_login(ctx, connection, ExternalIdentity(
        issuer="dry-run", subject=sub, claims=claims), policy=policy)


def preview_impact(ctx: ServiceContext, connection: str, mapping: str, source: str = "editor",
                   *, limit: int = DEFAULT_PREVIEW_LIMIT) -> ImpactReport:
    """Replay the connection's last ``limit`` (1-1000) recorded logins through the mapping in
    force and through ``mapping``, and report who would gain or lose which role, whose profile
    fields change, who would become denied or stop being denied. Writes nothing. Raises
    MappingError (the proposed mapping), InvalidInput (the limit), NotFound."""
    limit = _check_limit(limit)
    proposed = load_policy(mapping, source)
    with UnitOfWork(ctx.db, readonly=True) as uow:
        conn = uow.config.connections.get(connection)
        logins = uow.identities.claims.latest(conn.id, limit=limit)
    current: Policy = ctx.policies.get(conn)
    return compare_policies(current, proposed, logins)


def _check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_PREVIEW_LIMIT:
        raise InvalidInput(f"the number of recorded logins must be 1-{MAX_PREVIEW_LIMIT}, "
                           f"not {limit}")
    return limit


def claims_retention(settings: Mapping[str, object]) -> timedelta:
    """How long a tenant keeps recorded claims (its settings, else 30 days)."""
    days = settings.get(RETENTION_SETTING)
    if isinstance(days, int) and not isinstance(days, bool) and days >= 0:
        return timedelta(days=days)
    return DEFAULT_CLAIMS_RETENTION


def claims_retention_days(ctx: ServiceContext, tenant: str) -> int:
    """How many days the tenant keeps each identity's last login claims. Raises NotFound."""
    with UnitOfWork(ctx.db, readonly=True) as uow:
        settings = uow.config.tenants.settings(uow.config.tenants.get(tenant).id)
    return claims_retention(settings).days


def set_claims_retention(ctx: ServiceContext, tenant: str, days: int, *,
                         actor: str = "cli") -> None:
    """Keep the tenant's recorded claims ``days`` days (0: cleared at the next purge, kept no
    longer than the purge period). Audited. Raises InvalidInput, NotFound."""
    if not 0 <= days <= MAX_CLAIMS_RETENTION_DAYS:
        raise InvalidInput(f"the retention must be 0-{MAX_CLAIMS_RETENTION_DAYS} days")
    now = ctx.clock()
    with UnitOfWork(ctx.db) as uow:
        ten = uow.config.tenants.get(tenant)
        settings = uow.config.tenants.settings(ten.id)
        before = settings.get(RETENTION_SETTING)
        uow.config.tenants.set_settings(ten.id, {**settings, RETENTION_SETTING: days})
        uow.audit.append(ten.id, ten.slug, AuditEvent(
            "tenant.claims_retention_changed", actor, {"before": before, "after": days}), now)
        uow.commit()


def purge_recorded_claims(ctx: ServiceContext) -> int:
    """Clear recorded claims older than each tenant's retention, and the claims of pending
    links asked for before it (kept with the link for the admin who decides, under the same
    retention); returns how many."""
    now = ctx.clock()
    cleared = 0
    with UnitOfWork(ctx.db) as uow:
        for ten in uow.config.tenants.list():
            keep = claims_retention(uow.config.tenants.settings(ten.id))
            cleared += uow.identities.claims.purge(ten.id, now - keep)
            cleared += uow.identities.links.purge_claims(ten.id, now - keep)
        uow.commit()
    return cleared
