"""The admin console's store: bootstrap links and admin sessions, and the console's read models,
the queries of its pages (users search, a user's grants and sessions, the audit log by page,
the dashboard's counts) and the access-review report. ``uow.console`` groups them.

Same contract as every repository here: narrow methods over one open transaction (see
``unit_of_work.py``), copies out, ``NotFound`` for what is missing. The pages' lists are
paginated by indexed queries: nothing here loads all of a tenant's accounts or events, except
the access review, a full report by design.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from jitprov.core.audit import ChainedEvent
from jitprov.core.errors import NotFound
from jitprov.store import tables as t
from jitprov.store._common import iso, opt_utc, utc


@dataclass(frozen=True, slots=True)
class BootstrapRedemption:
    """A bootstrap link just spent: the tenant its session administers (None: every one)."""

    link_id: int
    tenant_id: int | None
    tenant_slug: str | None


@dataclass(frozen=True, slots=True)
class AdminSessionRecord:
    id: str
    kind: str  # bootstrap | sso
    account_id: str | None
    bootstrap_link_id: int | None
    tenant_id: int | None
    tenant_slug: str | None
    display_name: str
    created_at: datetime
    expires_at: datetime
    last_seen_at: datetime


@dataclass(frozen=True, slots=True)
class UserRow:
    id: str
    email: str | None
    name: str | None
    status: str
    kind: str
    provisioned_by: str
    external_id: str | None
    last_login_at: datetime | None


@dataclass(frozen=True, slots=True)
class UserPage:
    rows: tuple[UserRow, ...]
    #: the cursor of the next page (None: this is the last)
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class GrantRow:
    """A role grant with its provenance, as stored."""

    role: str
    source: str  # rule:<connection>/<id> | approval | scim | manual | ...
    granted_at: datetime
    granted_by: str
    expires_at: datetime | None


@dataclass(frozen=True, slots=True)
class OpenRequest:
    """A pending grant of one account."""

    id: int
    role: str
    source: str
    requested_at: datetime


@dataclass(frozen=True, slots=True)
class SessionRow:
    id: str  # SHA-256 of the cookie value (the cookie itself is never stored)
    method: str | None
    connection_slug: str | None
    device_id: int | None
    device_name: str | None
    user_agent: str | None
    offline: bool
    created_at: datetime
    expires_at: datetime
    last_seen_at: datetime | None


@dataclass(frozen=True, slots=True)
class AuditPage:
    events: tuple[ChainedEvent, ...]
    #: pass as ``before_seq`` for the next (older) page; None: this is the last
    next_before: int | None


@dataclass(frozen=True, slots=True)
class DailyCount:
    day: str  # YYYY-MM-DD, UTC
    type: str
    count: int


@dataclass(frozen=True, slots=True)
class AuditFilter:
    type: str | None = None  # exact type, or a prefix ending in "." (``login.``)
    actor: str | None = None  # substring
    account_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    request_id: str | None = None  # exact: the id a user quotes from an error page


# -- bootstrap links and admin sessions --------------------------------------------------------

class BootstrapLinks:
    """One-time admin links, stored by SHA-256."""

    def __init__(self, conn: sa.Connection) -> None:
        self._c = conn

    def create(self, *, token_hash: str, tenant_id: int | None, created_by: str,
               now: datetime, expires_at: datetime) -> int:
        """Store a new link; returns its id."""
        result = self._c.execute(t.admin_bootstrap_link.insert().values(
            token_hash=token_hash, tenant_id=tenant_id, created_by=created_by, created_at=now,
            expires_at=expires_at, used_at=None))
        return int(result.inserted_primary_key[0])  # type: ignore[index]

    def redeem(self, token_hash: str, now: datetime) -> BootstrapRedemption | None:
        """Spend the link: only if unused and unexpired, in one conditional UPDATE (two
        browsers racing with the same link: one wins). None if it cannot be spent."""
        lk = t.admin_bootstrap_link.c
        row = self._c.execute(
            t.admin_bootstrap_link.update()
            .where(lk.token_hash == token_hash, lk.used_at.is_(None), lk.expires_at > now)
            .values(used_at=now).returning(lk.id, lk.tenant_id)).first()
        if row is None:
            return None
        slug = None
        if row.tenant_id is not None:
            slug = self._c.execute(sa.select(t.tenant.c.slug)
                                   .where(t.tenant.c.id == row.tenant_id)).scalar_one()
        return BootstrapRedemption(row.id, row.tenant_id, slug)


_SESSION_SELECT = (
    sa.select(t.admin_session, t.tenant.c.slug.label("tenant_slug"))
    .outerjoin(t.tenant, t.tenant.c.id == t.admin_session.c.tenant_id))


class AdminSessions:
    """Admin console sessions, stored by the SHA-256 of the cookie."""

    def __init__(self, conn: sa.Connection) -> None:
        self._c = conn

    def create(self, *, session_id: str, kind: str, account_id: str | None,
               bootstrap_link_id: int | None, tenant_id: int | None, display_name: str,
               user_agent: str | None, now: datetime, expires_at: datetime) -> None:
        self._c.execute(t.admin_session.insert().values(
            id=session_id, kind=kind, account_id=account_id, bootstrap_link_id=bootstrap_link_id,
            tenant_id=tenant_id, display_name=display_name[:320],
            user_agent=(user_agent or "")[:300] or None, created_at=now, expires_at=expires_at,
            last_seen_at=now, revoked_at=None))

    def get_active(self, session_id: str, now: datetime) -> AdminSessionRecord | None:
        """The unrevoked, unexpired session, or None. (Idle time and the account's status and
        role are the service's to judge.)"""
        s = t.admin_session.c
        row = self._c.execute(_SESSION_SELECT.where(
            s.id == session_id, s.revoked_at.is_(None), s.expires_at > now)).first()
        if row is None:
            return None
        return AdminSessionRecord(
            id=row.id, kind=row.kind, account_id=row.account_id,
            bootstrap_link_id=row.bootstrap_link_id, tenant_id=row.tenant_id,
            tenant_slug=row.tenant_slug, display_name=row.display_name,
            created_at=utc(row.created_at), expires_at=utc(row.expires_at),
            last_seen_at=utc(row.last_seen_at))

    def touch(self, session_id: str, now: datetime) -> None:
        self._c.execute(t.admin_session.update().where(t.admin_session.c.id == session_id)
                        .values(last_seen_at=now))

    def revoke(self, session_id: str, now: datetime) -> bool:
        """True if it was active."""
        s = t.admin_session.c
        result = self._c.execute(t.admin_session.update()
                                 .where(s.id == session_id, s.revoked_at.is_(None))
                                 .values(revoked_at=now))
        return bool(result.rowcount)

    def revoke_all(self, now: datetime, *, account_id: str | None = None) -> int:
        """Revoke every open admin session (of one account if given); returns how many."""
        s = t.admin_session.c
        stmt = t.admin_session.update().where(s.revoked_at.is_(None), s.expires_at > now)
        if account_id is not None:
            stmt = stmt.where(s.account_id == account_id)
        return int(self._c.execute(stmt.values(revoked_at=now)).rowcount)


# -- read-only queries of the console pages ----------------------------------------------------

def _day(column: Any, dialect: str) -> Any:
    """The UTC calendar day of a timestamp, as ``YYYY-MM-DD`` text, in SQL."""
    if dialect == "postgresql":
        return sa.func.to_char(sa.func.timezone("UTC", column), "YYYY-MM-DD")
    return sa.func.strftime("%Y-%m-%d", column)


def _encode_cursor(email: str | None, account_id: str) -> str:
    return f"n:{account_id}" if email is None else f"e:{account_id}:{email}"


def _decode_cursor(cursor: str) -> tuple[str | None, str] | None:
    """(email_lower or None, id); None for a malformed cursor (read as the first page)."""
    kind, _, rest = cursor.partition(":")
    if kind == "n" and rest:
        return None, rest
    account_id, sep, email = rest.partition(":")
    if kind == "e" and sep and account_id:
        return email, account_id
    return None


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class ConsoleReads:
    """What the console's pages show. Read-only."""

    def __init__(self, conn: sa.Connection) -> None:
        self._c = conn

    def search_users(self, tenant_id: int, *, query: str | None = None,
                     status: str | None = None, role: str | None = None,
                     cursor: str | None = None, limit: int = 50,
                     now: datetime | None = None) -> UserPage:
        """Accounts of a tenant ordered by email (accounts without one last, by id), one page
        after ``cursor``. ``query`` matches an email or external id or userName by prefix
        (range scans of their indexes) or a name by substring; ``role`` an account holding
        that role from any source (a grant expired at ``now`` is not held). The walk
        follows ``ix_account_tenant_email`` and stops at ``limit`` + 1 rows."""
        a = t.account.c
        conditions: list[Any] = [a.tenant_id == tenant_id]
        if query:
            q = query.strip().lower()
            upper = q + "\U0010ffff"
            conditions.append(sa.or_(
                sa.and_(a.email_lower >= q, a.email_lower < upper),
                sa.and_(a.external_id >= query.strip(),
                        a.external_id < query.strip() + "\U0010ffff"),
                sa.and_(a.user_name_lower >= q, a.user_name_lower < upper),
                sa.func.lower(a.profile["name"].as_string()).like(
                    f"%{_like_escape(q)}%", escape="\\")))
        if status:
            conditions.append(a.status == status)
        if role:
            conditions.append(sa.exists().where(t.role_grant.c.account_id == a.id,
                                                t.role_grant.c.role == role,
                                                _in_force(now)))
        decoded = _decode_cursor(cursor) if cursor else None
        rows: list[Any] = []
        if decoded is None or decoded[0] is not None:  # the accounts with an email
            stmt = sa.select(t.account).where(*conditions, a.email_lower.is_not(None))
            if decoded is not None:
                email, after_id = decoded
                stmt = stmt.where(sa.or_(a.email_lower > email,
                                         sa.and_(a.email_lower == email, a.id > after_id)))
            rows = list(self._c.execute(stmt.order_by(a.email_lower, a.id)
                                        .limit(limit + 1)).all())
        if len(rows) <= limit:  # then those without one, by id
            stmt = sa.select(t.account).where(*conditions, a.email_lower.is_(None))
            if decoded is not None and decoded[0] is None:
                stmt = stmt.where(a.id > decoded[1])
            rows += list(self._c.execute(stmt.order_by(a.id)
                                         .limit(limit + 1 - len(rows))).all())
        page = rows[:limit]
        next_cursor = None
        if len(rows) > limit:
            last = page[-1]
            next_cursor = _encode_cursor(last.email_lower, last.id)
        return UserPage(tuple(UserRow(
            id=r.id, email=r.email, name=_text(r.profile.get("name")), status=r.status,
            kind=r.kind, provisioned_by=r.provisioned_by, external_id=r.external_id,
            last_login_at=opt_utc(r.last_login_at)) for r in page), next_cursor)

    def grants(self, account_id: str) -> list[GrantRow]:
        """The account's role grants with provenance, by role then source."""
        g = t.role_grant.c
        rows = self._c.execute(sa.select(t.role_grant).where(g.account_id == account_id)
                               .order_by(g.role, g.source)).all()
        return [GrantRow(r.role, r.source, utc(r.granted_at), r.granted_by,
                         opt_utc(r.expires_at)) for r in rows]

    def open_requests(self, account_id: str) -> list[OpenRequest]:
        """The account's pending grants (waiting for an approver), oldest first."""
        p = t.pending_grant.c
        rows = self._c.execute(sa.select(t.pending_grant)
                               .where(p.account_id == account_id, p.status == "pending")
                               .order_by(p.requested_at, p.id)).all()
        return [OpenRequest(r.id, r.role, r.source, utc(r.requested_at)) for r in rows]

    def request_tenant(self, pending_id: int) -> str:
        """The tenant slug of an approval request. Raises NotFound."""
        slug = self._c.execute(
            sa.select(t.tenant.c.slug)
            .join(t.account, t.account.c.tenant_id == t.tenant.c.id)
            .join(t.pending_grant, t.pending_grant.c.account_id == t.account.c.id)
            .where(t.pending_grant.c.id == pending_id)).scalar()
        if slug is None:
            raise NotFound(f"no approval request {pending_id}")
        return str(slug)

    def sessions(self, account_id: str, now: datetime) -> list[SessionRow]:
        """The account's active (unrevoked, unexpired) sessions, newest first."""
        s = t.session.c
        rows = self._c.execute(
            sa.select(t.session, t.connection.c.slug.label("connection_slug"),
                      t.device.c.name.label("device_name"))
            .outerjoin(t.connection, t.connection.c.id == s.connection_id)
            .outerjoin(t.device, t.device.c.id == s.device_id)
            .where(s.account_id == account_id, s.revoked_at.is_(None), s.expires_at > now)
            .order_by(s.created_at.desc(), s.id).limit(200)).all()
        return [SessionRow(id=r.id, method=r.method, connection_slug=r.connection_slug,
                           device_id=r.device_id, device_name=r.device_name,
                           user_agent=r.user_agent, offline=bool(r.offline),
                           created_at=utc(r.created_at), expires_at=utc(r.expires_at),
                           last_seen_at=opt_utc(r.last_seen_at)) for r in rows]

    def audit_page(self, tenant_id: int, flt: AuditFilter, *, before_seq: int | None = None,
                   limit: int = 50) -> AuditPage:
        """Events of a tenant, newest first, ``limit`` at a time (keyset on ``seq``, the
        ``(tenant_id, seq)`` unique index)."""
        e = t.audit_event.c
        stmt = (sa.select(t.audit_event, t.tenant.c.slug.label("tenant_slug"))
                .join(t.tenant, t.tenant.c.id == e.tenant_id).where(e.tenant_id == tenant_id))
        if before_seq is not None:
            stmt = stmt.where(e.seq < before_seq)
        if flt.type:
            stmt = stmt.where(e.type.startswith(flt.type, autoescape=True)
                              if flt.type.endswith(".") else e.type == flt.type)
        if flt.actor:
            stmt = stmt.where(e.actor.contains(flt.actor, autoescape=True))
        if flt.account_id:
            stmt = stmt.where(e.account_id == flt.account_id)
        if flt.request_id:
            stmt = stmt.where(e.request_id == flt.request_id)
        if flt.since is not None:
            stmt = stmt.where(e.occurred_at >= flt.since)
        if flt.until is not None:
            stmt = stmt.where(e.occurred_at < flt.until)
        rows = self._c.execute(stmt.order_by(e.seq.desc()).limit(limit + 1)).all()
        events = tuple(ChainedEvent(
            tenant=r.tenant_slug, seq=r.seq, occurred_at=utc(r.occurred_at), type=r.type,
            actor=r.actor, account_id=r.account_id, request_id=r.request_id, data=r.data,
            prev_hash=r.prev_hash, hash=r.hash) for r in rows[:limit])
        return AuditPage(events, events[-1].seq if len(rows) > limit else None)

    def daily_counts(self, tenant_id: int, types: Sequence[str], since: datetime,
                     ) -> list[DailyCount]:
        """How many events of each of ``types`` per UTC day since ``since`` (a range scan
        of ``ix_audit_event_tenant_occurred_at``)."""
        e = t.audit_event.c
        day = _day(e.occurred_at, self._c.dialect.name).label("day")
        rows = self._c.execute(
            sa.select(day, e.type, sa.func.count().label("n"))
            .where(e.tenant_id == tenant_id, e.occurred_at >= since, e.type.in_(list(types)))
            .group_by(day, e.type).order_by(day)).all()
        return [DailyCount(str(r.day), r.type, int(r.n)) for r in rows]

    def pending_approvals(self, tenant_id: int) -> int:
        p = t.pending_grant.c
        return int(self._c.execute(
            sa.select(sa.func.count()).select_from(t.pending_grant)
            .join(t.account, t.account.c.id == p.account_id)
            .where(t.account.c.tenant_id == tenant_id, p.status == "pending")).scalar_one())

    def dormant_accounts(self, tenant_id: int, idle_before: datetime) -> int:
        """Active accounts whose last sign-in is before ``idle_before`` (an index-only count
        on ``ix_account_tenant_status_login``)."""
        a = t.account.c
        return int(self._c.execute(
            sa.select(sa.func.count()).select_from(t.account)
            .where(a.tenant_id == tenant_id, a.status == "active",
                   a.last_login_at < idle_before)).scalar_one())

    def webhook_backlog(self, tenant_id: int) -> tuple[int, int]:
        """(pending, dead) deliveries to the tenant's endpoints."""
        d = t.webhook_delivery.c
        rows = self._c.execute(
            sa.select(d.status, sa.func.count().label("n"))
            .join(t.webhook_endpoint, t.webhook_endpoint.c.id == d.endpoint_id)
            .where(t.webhook_endpoint.c.tenant_id == tenant_id,
                   d.status.in_(["pending", "dead"]))
            .group_by(d.status)).all()
        counts = {r.status: int(r.n) for r in rows}
        return counts.get("pending", 0), counts.get("dead", 0)

    def access_review(self, tenant_id: int, now: datetime) -> Sequence[dict[str, object]]:
        """Who holds which role, from where, since when, and when they last signed in: one
        row per grant in force at ``now``, plus one row with no role for each account
        holding none (expired grants are not held, even before the sweep deletes them)."""
        rows = self._c.execute(
            sa.select(t.account.c.id, t.account.c.email, t.account.c.profile,
                      t.account.c.status, t.account.c.kind, t.account.c.provisioned_by,
                      t.account.c.last_login_at, t.role_grant.c.role, t.role_grant.c.source,
                      t.role_grant.c.granted_at, t.role_grant.c.granted_by,
                      t.role_grant.c.expires_at)
            .select_from(t.account)
            .outerjoin(t.role_grant, sa.and_(t.role_grant.c.account_id == t.account.c.id,
                                             _in_force(now)))
            .where(t.account.c.tenant_id == tenant_id)
            .order_by(t.account.c.email, t.account.c.id, t.role_grant.c.role,
                      t.role_grant.c.source))
        return [{"account_id": r.id, "email": r.email, "name": r.profile.get("name"),
                 "status": r.status, "kind": r.kind, "provisioned_by": r.provisioned_by,
                 "role": r.role, "source": r.source,
                 "granted_at": iso(r.granted_at), "granted_by": r.granted_by,
                 "expires_at": iso(r.expires_at), "last_login_at": iso(r.last_login_at)}
                for r in rows]


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _in_force(now: datetime | None) -> sa.ColumnElement[bool]:
    """A role grant held at ``now``: not expired then (every grant when ``now`` is None) and
    not of a role blocked for its account (a block wins at read time, as in
    ``Account.at``)."""
    not_blocked = ~sa.exists(
        sa.select(t.role_block.c.id)
        .where(t.role_block.c.account_id == t.role_grant.c.account_id,
               t.role_block.c.role == t.role_grant.c.role)
        .correlate(t.role_grant))
    if now is None:
        return not_blocked
    return sa.and_(sa.or_(t.role_grant.c.expires_at.is_(None), t.role_grant.c.expires_at > now),
                   not_blocked)


class ConsoleStore:
    """``uow.console``: ``links`` (bootstrap), ``sessions`` (admin sessions) and ``reads``
    (the read models)."""

    def __init__(self, conn: sa.Connection) -> None:
        self.links = BootstrapLinks(conn)
        self.sessions = AdminSessions(conn)
        self.reads = ConsoleReads(conn)
