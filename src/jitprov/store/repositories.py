"""Narrow repositories over one open transaction (see ``unit_of_work.py``).

Each method states its contract; every return value is a copy (a core value or a record from
``records.py``). Methods raise :class:`jitprov.core.errors.NotFound` or
:class:`jitprov.core.errors.Conflict`, never SQLAlchemy exceptions, except that a lost
unique-key race surfaces as :class:`RaceLost` for the service to retry.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, cast

import sqlalchemy as sa

from jitprov.core.audit import GENESIS_HASH, AuditEvent, ChainedEvent, chain
from jitprov.core.errors import Conflict, JitprovError, NotFound
from jitprov.core.identity import (
    Account,
    AccountKind,
    AccountStatus,
    PendingGrant,
    ProvisionedBy,
    RoleGrant,
)
from jitprov.core.provisioning import PROFILE_SOURCE_PREFIX, Changes
from jitprov.store import tables as t
from jitprov.store.fast import Prepared
from jitprov.store.frontline import SessionState
from jitprov.store.records import (
    AccountView,
    BreakGlassRecord,
    ConnectionRecord,
    DeliveryRecord,
    DueDelivery,
    IdentityLink,
    LoginRequestRecord,
    PendingGrantRecord,
    SessionRecord,
    TenantRecord,
    WebhookEndpointRecord,
)

MatchedBy = Literal["email", "external_id"]


class RaceLost(JitprovError):
    """Another transaction wrote the same unique key first; retry the whole unit of work."""

    code = "race_lost"


def _lock_key(text: str) -> int:
    """A signed 64-bit advisory-lock key for ``text`` (a collision only serializes more)."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big", signed=True)


def utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything we store is UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _opt_utc(value: datetime | None) -> datetime | None:
    return None if value is None else utc(value)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else utc(value).isoformat()


# Statements of the login hot path, built once: SQLAlchemy then reuses their compiled form and
# skips building and cache-keying a new statement per call (most of a login's CPU otherwise).
_B = sa.bindparam
_ACCOUNT_COLUMNS = (t.account, t.tenant.c.slug.label("tenant_slug"))
_FIND_BY_IDENTITY = Prepared(
    sa.select(*_ACCOUNT_COLUMNS)
    .join(t.identity, t.identity.c.account_id == t.account.c.id)
    .join(t.tenant, t.tenant.c.id == t.account.c.tenant_id)
    .where(t.identity.c.connection_id == _B("connection_id"),
           t.identity.c.subject == _B("subject")))
_GET_ACCOUNT = (sa.select(*_ACCOUNT_COLUMNS)
                .join(t.tenant, t.tenant.c.id == t.account.c.tenant_id)
                .where(t.account.c.id == _B("account_id")))


def _candidate_ids(by_id: bool, by_email: bool) -> sa.SelectBase:
    """Ids of the accounts a login may link to: one indexed lookup per criterion, united.
    (A single ``tenant AND (external id OR email)`` makes SQLite walk every account of the
    tenant: that was O(accounts) per first login.)"""
    lookups = []
    if by_id:
        lookups.append(sa.select(t.account.c.id).where(
            t.account.c.tenant_id == _B("tenant_id"),
            t.account.c.external_id == _B("external_id"),
            t.account.c.external_id_connection_id == _B("connection_id")))
    if by_email:
        lookups.append(sa.select(t.account.c.id).where(
            t.account.c.tenant_id == _B("tenant_id"),
            t.account.c.email_lower == _B("email_lower")))
    return sa.union(*lookups) if len(lookups) > 1 else lookups[0]


_CANDIDATES = {
    (by_id, by_email): Prepared(
        sa.select(*_ACCOUNT_COLUMNS)
        .join(t.tenant, t.tenant.c.id == t.account.c.tenant_id)
        .where(t.account.c.id.in_(_candidate_ids(by_id, by_email)))
        .order_by(t.account.c.created_at, t.account.c.id)
        .limit(10))
    for by_id in (True, False) for by_email in (True, False) if by_id or by_email
}
_TOUCH_ACCOUNT = Prepared(t.account.update().where(t.account.c.id == _B("b_account_id"))
                  .values(last_login_at=_B("b_now"), dormant_warned_at=None))
_TOUCH_IDENTITY = Prepared(t.identity.update()
                   .where(t.identity.c.connection_id == _B("b_connection_id"),
                          t.identity.c.subject == _B("b_subject"))
                   .values(last_login_at=_B("b_now"), claims=_B("b_claims", type_=sa.JSON),
                           claims_at=_B("b_claims_at", type_=t.TS)))
_AUDIT_HEAD = Prepared(sa.select(t.audit_head.c.seq, t.audit_head.c.hash)
               .where(t.audit_head.c.tenant_id == _B("tenant_id")).with_for_update())
_MOVE_AUDIT_HEAD = Prepared(t.audit_head.update()
                            .where(t.audit_head.c.tenant_id == _B("b_tenant_id"))
                            .values(seq=_B("b_seq"), hash=_B("b_hash")))
_CONSUME_LOGIN = Prepared(
    t.login_request.update()
    .where(t.login_request.c.id == _B("b_id"), t.login_request.c.consumed_at.is_(None),
           t.login_request.c.expires_at > _B("b_now"))
    .values(consumed_at=_B("b_now"))
    .returning(t.login_request.c.connection_id, t.login_request.c.return_to,
               t.login_request.c.data, t.login_request.c.expires_at))


def _insert(table: sa.Table) -> Prepared:
    """INSERT of one row with every column but an integer primary key as a named bind."""
    return Prepared(table.insert().values({
        c.name: _B(c.name) for c in table.columns
        if not (c.primary_key and isinstance(c.type, sa.Integer))}))


_INSERT_ACCOUNT = _insert(t.account)
_INSERT_IDENTITY = _insert(t.identity)
_INSERT_AUDIT_EVENT = _insert(t.audit_event)
_INSERT_ROLE_GRANT = _insert(t.role_grant)
_INSERT_PENDING_GRANT = _insert(t.pending_grant)
_INSERT_SESSION = _insert(t.session)
_INSERT_OUTBOX_EVENT = _insert(t.outbox_event)
_ACTIVE_SESSION = (
    sa.select(t.session, t.connection.c.slug.label("connection_slug"),
              t.connection_health.c.last_success_at.label("idp_ok_at"))
    .join(t.account, t.account.c.id == t.session.c.account_id)
    .outerjoin(t.connection, t.connection.c.id == t.session.c.connection_id)
    .outerjoin(t.connection_health,
               t.connection_health.c.connection_id == t.session.c.connection_id)
    .where(t.session.c.id == _B("session_id"), t.session.c.revoked_at.is_(None),
           t.session.c.expires_at > _B("now"), t.account.c.status == "active"))
_IDENTITIES = (
    sa.select(t.connection.c.slug, t.identity.c.subject, t.identity.c.issuer)
    .join(t.connection, t.connection.c.id == t.identity.c.connection_id)
    .where(t.identity.c.account_id == _B("account_id")).order_by(t.identity.c.id))
_TOUCH_SESSION = (t.session.update().where(t.session.c.id == _B("b_id"))
                  .values(last_seen_at=_B("b_now")))
_REVOKE_SESSION = (t.session.update()
                   .where(t.session.c.id == _B("b_id"), t.session.c.revoked_at.is_(None))
                   .values(revoked_at=_B("b_now")))


class TenantRepository:
    def __init__(self, conn: sa.Connection) -> None:
        self._c = conn

    def create(self, slug: str, name: str, now: datetime) -> TenantRecord:
        """Insert a tenant. Raises Conflict if the slug is taken."""
        if self._c.execute(sa.select(t.tenant.c.id).where(t.tenant.c.slug == slug)).first():
            raise Conflict(f"tenant {slug!r} already exists")
        new_id = self._c.execute(t.tenant.insert().values(
            slug=slug, name=name, settings={}, created_at=now)).inserted_primary_key
        assert new_id is not None  # noqa: S101
        return TenantRecord(id=int(new_id[0]), slug=slug, name=name, created_at=now)

    def get(self, slug: str) -> TenantRecord:
        """Raises NotFound."""
        row = self._c.execute(sa.select(t.tenant).where(t.tenant.c.slug == slug)).first()
        if row is None:
            raise NotFound(f"no tenant {slug!r}")
        return TenantRecord(id=row.id, slug=row.slug, name=row.name,
                            created_at=utc(row.created_at))

    def get_by_id(self, tenant_id: int) -> TenantRecord:
        """Raises NotFound."""
        row = self._c.execute(sa.select(t.tenant).where(t.tenant.c.id == tenant_id)).first()
        if row is None:
            raise NotFound(f"no tenant {tenant_id}")
        return TenantRecord(id=row.id, slug=row.slug, name=row.name,
                            created_at=utc(row.created_at))

    def settings(self, tenant_id: int) -> dict[str, object]:
        """The tenant's policy settings (a copy)."""
        value = self._c.execute(sa.select(t.tenant.c.settings)
                                .where(t.tenant.c.id == tenant_id)).scalar_one()
        return dict(value)

    def set_settings(self, tenant_id: int, settings: Mapping[str, object]) -> None:
        self._c.execute(t.tenant.update().where(t.tenant.c.id == tenant_id)
                        .values(settings=dict(settings)))

    def list(self) -> list[TenantRecord]:
        rows = self._c.execute(sa.select(t.tenant).order_by(t.tenant.c.slug))
        return [TenantRecord(id=r.id, slug=r.slug, name=r.name, created_at=utc(r.created_at))
                for r in rows]


_CONNECTION_COLUMNS = (*t.connection.c, t.tenant.c.slug.label("tenant_slug"))


def _connection(row: sa.Row[Any]) -> ConnectionRecord:
    return ConnectionRecord(
        id=row.id, tenant_id=row.tenant_id, tenant_slug=row.tenant_slug, slug=row.slug,
        kind=row.kind, config=row.config, secrets=row.secrets, mapping=row.mapping,
        mapping_source=row.mapping_source, enabled=row.enabled, version=row.version,
        updated_at=utc(row.updated_at))


class ConnectionRepository:
    def __init__(self, conn: sa.Connection) -> None:
        self._c = conn

    def add(self, *, tenant_id: int, slug: str, kind: str, config: Mapping[str, object],
            secrets: str | None, mapping: str, mapping_source: str,
            now: datetime) -> ConnectionRecord:
        """Insert a connection. Raises Conflict if the slug is taken (slugs are global)."""
        if self._c.execute(sa.select(t.connection.c.id)
                           .where(t.connection.c.slug == slug)).first():
            raise Conflict(f"connection {slug!r} already exists")
        self._c.execute(t.connection.insert().values(
            tenant_id=tenant_id, slug=slug, kind=kind, config=dict(config), secrets=secrets,
            mapping=mapping, mapping_source=mapping_source, enabled=True, version=1,
            created_at=now, updated_at=now))
        return self.get(slug)

    def get(self, slug: str) -> ConnectionRecord:
        """Raises NotFound. Reads the current row: changes by other nodes show at once."""
        row = self._c.execute(
            sa.select(*_CONNECTION_COLUMNS).join(t.tenant)
            .where(t.connection.c.slug == slug)).first()
        if row is None:
            raise NotFound(f"no connection {slug!r}")
        return _connection(row)

    def list(self, tenant_id: int | None = None) -> list[ConnectionRecord]:
        query = sa.select(*_CONNECTION_COLUMNS).join(t.tenant).order_by(t.connection.c.slug)
        if tenant_id is not None:
            query = query.where(t.connection.c.tenant_id == tenant_id)
        return [_connection(r) for r in self._c.execute(query)]

    def set_mapping(self, slug: str, mapping: str, source: str, now: datetime) -> int:
        """Replace the mapping and bump the version; returns the new version. NotFound."""
        result = self._c.execute(
            t.connection.update().where(t.connection.c.slug == slug)
            .values(mapping=mapping, mapping_source=source, updated_at=now,
                    version=t.connection.c.version + 1)
            .returning(t.connection.c.version))
        row = result.first()
        if row is None:
            raise NotFound(f"no connection {slug!r}")
        return int(row[0])


    def set_enabled(self, slug: str, enabled: bool, now: datetime) -> None:
        """Raises NotFound."""
        result = self._c.execute(t.connection.update().where(t.connection.c.slug == slug)
                                 .values(enabled=enabled, updated_at=now,
                                         version=t.connection.c.version + 1))
        if not result.rowcount:
            raise NotFound(f"no connection {slug!r}")


class AccountRepository:
    """Accounts with their grants, pending grants and identities."""

    def __init__(self, conn: sa.Connection) -> None:
        self._c = conn

    def lock_identity(self, connection_id: int, subject: str) -> None:
        """Serialize, until commit, the logins of one (connection, subject) across all nodes,
        so the reads that follow see what a concurrent first login committed. Take it before
        :meth:`lock_email` (a fixed order cannot deadlock). PostgreSQL: a transaction-scoped
        advisory lock; SQLite: a no-op, as write transactions run one at a time."""
        self._advisory_lock(f"identity\0{connection_id}\0{subject}")

    def lock_email(self, tenant_id: int, email: str) -> None:
        """Serialize, until commit, the logins that would create or take ``email`` in a tenant."""
        self._advisory_lock(f"email\0{tenant_id}\0{email.lower()}")

    def _advisory_lock(self, text: str) -> None:
        if self._c.dialect.name == "postgresql":
            self._c.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"),
                            {"key": _lock_key(text)})

    def find_by_identity(self, connection_id: int, subject: str) -> Account | None:
        """The account this (connection, subject) signs in to, or None."""
        row = _FIND_BY_IDENTITY.first(self._c, {"connection_id": connection_id,
                                                "subject": subject})
        return None if row is None else self._account(row)

    def get(self, account_id: str) -> Account:
        """Raises NotFound."""
        row = self._c.execute(_GET_ACCOUNT, {"account_id": account_id}).first()
        if row is None:
            raise NotFound(f"no account {account_id!r}")
        return self._account(row)

    def find_link_candidates(self, tenant_id: int, *, connection_id: int, email: str | None,
                             external_id: str | None) -> list[tuple[Account, MatchedBy]]:
        """Accounts of the tenant a login might belong to, or whose email it would take:
        (account, matched_by), at most 10.

        ``external_id`` matches only accounts whose external id was issued for this very
        connection (``external_id_connection_id``: a SCIM client bound to it), so another IdP of
        the tenant cannot claim them by choosing a subject; ``email`` matches any account,
        case-insensitively.
        """
        if not external_id and not email:
            return []
        params: dict[str, object] = {"tenant_id": tenant_id}
        if external_id:
            params.update(external_id=external_id, connection_id=connection_id)
        if email:
            params["email_lower"] = email.lower()
        rows = _CANDIDATES[bool(external_id), bool(email)].all(self._c, params)
        out: list[tuple[Account, MatchedBy]] = []
        for row in rows:
            by_id = (external_id is not None and row.external_id == external_id
                     and row.external_id_connection_id == connection_id)
            out.append((self._account(row), "external_id" if by_id else "email"))
        return out

    def create(self, *, tenant_id: int, changes: Changes, provisioned_by: ProvisionedBy,
               now: datetime, kind: AccountKind = "user", external_id: str | None = None,
               external_id_connection_id: int | None = None,
               granted_by: str = "login") -> str:
        """Insert an account with the profile, groups, grants and pending grants of
        ``changes``; returns its new id."""
        account_id = str(uuid.uuid4())
        profile = {k: after for k, (_, after) in changes.profile.items()}
        email = profile.get("email")
        _INSERT_ACCOUNT.rowcount(self._c, {
            "id": account_id, "tenant_id": tenant_id, "status": "active", "kind": kind,
            "provisioned_by": provisioned_by, "external_id": external_id,
            "external_id_connection_id": external_id_connection_id, "email": email,
            "email_lower": email.lower() if email else None, "profile": profile,
            "profile_sources": {k: f"{PROFILE_SOURCE_PREFIX}{k}" for k in profile},
            "idp_groups": sorted(changes.groups_added), "created_at": now, "updated_at": now,
            "last_login_at": now if provisioned_by == "jit" else None, "deactivated_at": None,
            "version": 1})
        self._write_grants(account_id, changes, now, granted_by)
        return account_id

    def apply(self, account: Account, changes: Changes, now: datetime,
              granted_by: str = "login") -> None:
        """Write ``changes`` onto ``account`` (as read in this transaction)."""
        values: dict[str, object] = {}
        if changes.profile:
            profile = dict(account.profile)
            sources = dict(account.profile_sources)
            for name, (_, after) in changes.profile.items():
                profile[name] = after
                sources[name] = f"{PROFILE_SOURCE_PREFIX}{name}"
            values.update(profile=profile, profile_sources=sources)
            if "email" in changes.profile:
                email = profile["email"]
                values.update(email=email, email_lower=email.lower())
        if changes.groups_added or changes.groups_removed:
            groups = (account.groups | changes.groups_added) - changes.groups_removed
            values["idp_groups"] = sorted(groups)
        if not changes.is_empty:
            values.update(updated_at=now, version=t.account.c.version + 1)
        if values:
            self._c.execute(t.account.update().where(t.account.c.id == account.id)
                            .values(**values))
        for g in changes.grants_revoked:
            self._c.execute(t.role_grant.delete().where(
                t.role_grant.c.account_id == account.id, t.role_grant.c.role == g.role,
                t.role_grant.c.source == g.source))
        for p in changes.pending_withdrawn:
            self._c.execute(t.pending_grant.update().where(
                t.pending_grant.c.account_id == account.id, t.pending_grant.c.role == p.role,
                t.pending_grant.c.source == p.source, t.pending_grant.c.status == "pending")
                .values(status="withdrawn", decided_at=now, decided_by=granted_by,
                        reason="rule no longer matches"))
        self._write_grants(account.id, changes, now, granted_by)

    def grant(self, account_id: str, grant: RoleGrant, now: datetime, granted_by: str) -> None:
        """Add one grant (replacing the same role and source, e.g. a renewed approval)."""
        self._c.execute(t.role_grant.delete().where(
            t.role_grant.c.account_id == account_id, t.role_grant.c.role == grant.role,
            t.role_grant.c.source == grant.source))
        self._c.execute(t.role_grant.insert(), {
            "account_id": account_id, "role": grant.role, "source": grant.source,
            "granted_at": now, "granted_by": granted_by, "expires_at": grant.expires_at})

    def _write_grants(self, account_id: str, changes: Changes, now: datetime,
                      granted_by: str) -> None:
        if changes.grants_added:
            _INSERT_ROLE_GRANT.many(self._c, [
                {"account_id": account_id, "role": g.role, "source": g.source,
                 "granted_at": now, "granted_by": granted_by, "expires_at": g.expires_at}
                for g in sorted(changes.grants_added)])
        if changes.pending_added:
            _INSERT_PENDING_GRANT.many(self._c, [
                {"account_id": account_id, "role": p.role, "source": p.source,
                 "status": "pending", "requested_at": now}
                for p in sorted(changes.pending_added)])

    def set_status(self, account_id: str, status: AccountStatus, now: datetime) -> None:
        """Set active, suspended or deactivated (``deactivated_at`` follows). NotFound."""
        result = self._c.execute(
            t.account.update().where(t.account.c.id == account_id)
            .values(status=status, updated_at=now, version=t.account.c.version + 1,
                    deactivated_at=now if status == "deactivated" else None))
        if not result.rowcount:
            raise NotFound(f"no account {account_id!r}")

    def add_identity(self, *, account_id: str, connection_id: int, subject: str, issuer: str,
                     now: datetime, claims: Mapping[str, object] | None = None) -> None:
        """Bind (connection, subject) to the account, recording ``claims`` (already redacted)
        as its latest login's. Raises RaceLost if it is already bound;
        the transaction is then unusable and the unit of work must be run again."""
        try:
            _INSERT_IDENTITY.rowcount(self._c, {
                "connection_id": connection_id, "subject": subject, "issuer": issuer,
                "account_id": account_id, "created_at": now, "last_login_at": now,
                "claims": claims, "claims_at": None if claims is None else now})
        except sa.exc.IntegrityError as exc:
            raise RaceLost("identity already bound") from exc

    def record_login(self, *, account_id: str, connection_id: int, subject: str,
                     now: datetime, claims: Mapping[str, object] | None = None) -> None:
        """Move last_login_at; the identity's recorded claims become ``claims`` (already
        redacted; None clears them), in the same UPDATE."""
        _TOUCH_ACCOUNT.rowcount(self._c, {"b_account_id": account_id, "b_now": now})
        _TOUCH_IDENTITY.rowcount(self._c, {"b_connection_id": connection_id,
                                          "b_subject": subject, "b_now": now,
                                          "b_claims": claims,
                                          "b_claims_at": None if claims is None else now})

    def queue_link(self, *, tenant_id: int, connection_id: int, subject: str, issuer: str,
                   account_id: str, claims: Mapping[str, object], now: datetime) -> bool:
        """Queue a pending link; returns False when one is already open for this identity."""
        try:
            with self._c.begin_nested():
                self._c.execute(t.pending_link.insert().values(
                    tenant_id=tenant_id, connection_id=connection_id, subject=subject,
                    issuer=issuer, account_id=account_id, claims=dict(claims),
                    status="pending", created_at=now))
        except sa.exc.IntegrityError:
            return False
        return True

    def list(self, tenant_id: int, *, limit: int = 1000, offset: int = 0) -> list[AccountView]:
        """Accounts of a tenant, oldest first, with their identities."""
        rows = self._c.execute(
            sa.select(t.account, t.tenant.c.slug.label("tenant_slug"))
            .join(t.tenant, t.tenant.c.id == t.account.c.tenant_id)
            .where(t.account.c.tenant_id == tenant_id)
            .order_by(t.account.c.created_at, t.account.c.id).limit(limit).offset(offset)).all()
        return [self._view(r) for r in rows]

    def view(self, account_id: str) -> AccountView:
        """One account with identities. Raises NotFound."""
        row = self._c.execute(_GET_ACCOUNT, {"account_id": account_id}).first()
        if row is None:
            raise NotFound(f"no account {account_id!r}")
        return self._view(row)

    def inactive_since(self, tenant_id: int, before: datetime,
                       ) -> Sequence[tuple[str, str | None, datetime, datetime | None]]:
        """Active ordinary user accounts whose last sign-in is before ``before``: (id, email,
        last_login_at, dormant_warned_at). Break-glass, admin and service accounts, and
        accounts that never signed in, are not in it."""
        rows = self._c.execute(
            sa.select(t.account.c.id, t.account.c.email, t.account.c.last_login_at,
                      t.account.c.dormant_warned_at)
            .where(t.account.c.tenant_id == tenant_id, t.account.c.status == "active",
                   t.account.c.kind == "user", t.account.c.last_login_at < before)
            .order_by(t.account.c.last_login_at))
        return [(r.id, r.email, utc(r.last_login_at), _opt_utc(r.dormant_warned_at))
                for r in rows]

    def never_signed_in(self, tenant_id: int, created_before: datetime,
                        ) -> Sequence[tuple[str, str | None, str, datetime]]:
        """Active user accounts created before ``created_before`` that never signed in
        (typically pre-provisioned by SCIM): (id, email, provisioned_by, created_at)."""
        rows = self._c.execute(
            sa.select(t.account.c.id, t.account.c.email, t.account.c.provisioned_by,
                      t.account.c.created_at)
            .where(t.account.c.tenant_id == tenant_id, t.account.c.status == "active",
                   t.account.c.kind == "user", t.account.c.last_login_at.is_(None),
                   t.account.c.created_at < created_before)
            .order_by(t.account.c.created_at))
        return [(r.id, r.email, r.provisioned_by, utc(r.created_at)) for r in rows]

    def deactivated_before(self, tenant_id: int,
                           before: datetime) -> Sequence[tuple[str, str | None, datetime]]:
        """Accounts deactivated before ``before``: (id, email, deactivated_at)."""
        rows = self._c.execute(
            sa.select(t.account.c.id, t.account.c.email, t.account.c.deactivated_at)
            .where(t.account.c.tenant_id == tenant_id, t.account.c.status == "deactivated",
                   t.account.c.deactivated_at < before)
            .order_by(t.account.c.deactivated_at))
        return [(r.id, r.email, utc(r.deactivated_at)) for r in rows]

    def deactivate_if_idle(self, account_id: str, idle_before: datetime,
                           now: datetime) -> bool:
        """Deactivate the account only if it is still active and still has not signed in
        since ``idle_before`` (a sign-in that committed meanwhile wins). True if it did."""
        result = self._c.execute(
            t.account.update().where(t.account.c.id == account_id,
                                     t.account.c.status == "active",
                                     t.account.c.last_login_at < idle_before)
            .values(status="deactivated", deactivated_at=now, updated_at=now,
                    version=t.account.c.version + 1))
        return bool(result.rowcount)

    def delete_if_deactivated_before(self, account_id: str, before: datetime) -> bool:
        """Delete the account with its identities, grants, pending grants and sessions, only
        if it is still deactivated since before ``before`` (a reactivation meanwhile wins).
        The audit log keeps its history. True if it did."""
        result = self._c.execute(t.account.delete().where(
            t.account.c.id == account_id, t.account.c.status == "deactivated",
            t.account.c.deactivated_at < before))
        return bool(result.rowcount)

    def warn_if_idle(self, account_id: str, idle_before: datetime, now: datetime) -> bool:
        """Mark the account warned of dormancy only if it is still active, not yet warned and
        still has not signed in since ``idle_before``. True if it did."""
        result = self._c.execute(
            t.account.update().where(t.account.c.id == account_id,
                                     t.account.c.status == "active",
                                     t.account.c.dormant_warned_at.is_(None),
                                     t.account.c.last_login_at < idle_before)
            .values(dormant_warned_at=now))
        return bool(result.rowcount)

    def try_lock_job(self, name: str) -> bool:
        """Take a job's lock until commit, if no other node holds it (PostgreSQL: advisory
        try-lock; SQLite: always, as writers run one at a time)."""
        if self._c.dialect.name != "postgresql":
            return True
        return bool(self._c.execute(sa.text("SELECT pg_try_advisory_xact_lock(:key)"),
                                    {"key": _lock_key(f"job\0{name}")}).scalar_one())

    def access_review(self, tenant_id: int) -> Sequence[dict[str, object]]:
        """Who holds which role, from where, since when, and when they last signed in: one
        row per grant, plus one row with no role for each account holding none."""
        rows = self._c.execute(
            sa.select(t.account.c.id, t.account.c.email, t.account.c.profile,
                      t.account.c.status, t.account.c.kind, t.account.c.provisioned_by,
                      t.account.c.last_login_at, t.role_grant.c.role, t.role_grant.c.source,
                      t.role_grant.c.granted_at, t.role_grant.c.granted_by,
                      t.role_grant.c.expires_at)
            .outerjoin(t.role_grant, t.role_grant.c.account_id == t.account.c.id)
            .where(t.account.c.tenant_id == tenant_id)
            .order_by(t.account.c.email, t.account.c.id, t.role_grant.c.role,
                      t.role_grant.c.source))
        return [{"account_id": r.id, "email": r.email, "name": r.profile.get("name"),
                 "status": r.status, "kind": r.kind, "provisioned_by": r.provisioned_by,
                 "role": r.role, "source": r.source,
                 "granted_at": _iso(r.granted_at), "granted_by": r.granted_by,
                 "expires_at": _iso(r.expires_at), "last_login_at": _iso(r.last_login_at)}
                for r in rows]

    def _view(self, row: sa.Row[Any]) -> AccountView:
        idents = self._c.execute(_IDENTITIES, {"account_id": row.id}).all()
        return AccountView(
            account=self._account(row), tenant_slug=row.tenant_slug,
            created_at=utc(row.created_at), updated_at=utc(row.updated_at),
            last_login_at=_opt_utc(row.last_login_at),
            identities=tuple(IdentityLink(i.slug, i.subject, i.issuer) for i in idents))

    def _account(self, row: Any) -> Account:  # a Core row or a fast.Row
        grants: set[RoleGrant] = set()
        pending: set[PendingGrant] = set()
        for kind, role, source, expires_at in _GRANTS_AND_PENDING.all(
                self._c, {"account_id": row.id}):
            if kind == "g":
                grants.add(RoleGrant(role, source, _opt_utc(expires_at)))
            else:
                pending.add(PendingGrant(role, source))
        return Account(
            id=row.id, tenant=row.tenant_slug, status=cast(AccountStatus, row.status),
            kind=cast(AccountKind, row.kind), profile=dict(row.profile),
            profile_sources=dict(row.profile_sources), groups=frozenset(row.idp_groups),
            grants=frozenset(grants), pending=frozenset(pending),
            provisioned_by=cast(ProvisionedBy, row.provisioned_by), external_id=row.external_id)


# One round trip for an account's grants and open pending grants.
_GRANTS_AND_PENDING = Prepared(sa.union_all(
    sa.select(sa.literal("g").label("kind"), t.role_grant.c.role, t.role_grant.c.source,
              t.role_grant.c.expires_at)
    .where(t.role_grant.c.account_id == sa.bindparam("account_id")),
    sa.select(sa.literal("p").label("kind"), t.pending_grant.c.role, t.pending_grant.c.source,
              sa.null().label("expires_at"))
    .where(t.pending_grant.c.account_id == sa.bindparam("account_id"),
           t.pending_grant.c.status == "pending"),
))


class PendingGrantRepository:
    """Roles waiting for approval, and the approvers' decisions."""

    def __init__(self, conn: sa.Connection) -> None:
        self._c = conn

    def list(self, tenant_id: int, *, status: str = "pending") -> list[PendingGrantRecord]:
        """Requests of a tenant in that status, oldest first."""
        rows = self._c.execute(
            sa.select(t.pending_grant, t.account.c.email)
            .join(t.account, t.account.c.id == t.pending_grant.c.account_id)
            .where(t.account.c.tenant_id == tenant_id, t.pending_grant.c.status == status)
            .order_by(t.pending_grant.c.requested_at, t.pending_grant.c.id))
        return [self._record(r) for r in rows]

    def get(self, pending_id: int) -> tuple[PendingGrantRecord, int]:
        """The request and its account's tenant id. Raises NotFound."""
        row = self._c.execute(
            sa.select(t.pending_grant, t.account.c.email, t.account.c.tenant_id)
            .join(t.account, t.account.c.id == t.pending_grant.c.account_id)
            .where(t.pending_grant.c.id == pending_id)).first()
        if row is None:
            raise NotFound(f"no approval request {pending_id}")
        return self._record(row), row.tenant_id

    def decide(self, pending_id: int, *, approved: bool, decided_by: str, reason: str,
               now: datetime) -> None:
        """Close an open request. Raises Conflict if it is no longer pending (decided,
        withdrawn): two approvers cannot both act on one request."""
        result = self._c.execute(
            t.pending_grant.update().where(t.pending_grant.c.id == pending_id,
                                           t.pending_grant.c.status == "pending")
            .values(status="approved" if approved else "denied", decided_at=now,
                    decided_by=decided_by, reason=reason))
        if not result.rowcount:
            raise Conflict(f"approval request {pending_id} is no longer pending")

    @staticmethod
    def _record(row: sa.Row[Any]) -> PendingGrantRecord:
        return PendingGrantRecord(id=row.id, account_id=row.account_id, email=row.email,
                                  role=row.role, source=row.source, status=row.status,
                                  requested_at=utc(row.requested_at))


class SessionRepository:
    def __init__(self, conn: sa.Connection) -> None:
        self._c = conn

    def create(self, *, session_id: str, account_id: str, connection_id: int | None,
               subject: str | None, now: datetime, expires_at: datetime,
               user_agent: str | None, device_id: int | None = None, method: str | None = None,
               offline: bool = False, idle_seconds: int | None = None,
               passkey_id: int | None = None) -> None:
        """``session_id`` is the SHA-256 of the cookie value, never the value itself.
        ``method`` defaults to ``sso`` with a connection, ``break_glass`` without one;
        ``idle_seconds`` (device sessions) makes ``get_active`` callers apply an idle lock."""
        _INSERT_SESSION.rowcount(self._c, {
            "id": session_id, "account_id": account_id, "connection_id": connection_id,
            "subject": subject, "created_at": now, "expires_at": expires_at, "revoked_at": None,
            "user_agent": (user_agent or "")[:300] or None, "device_id": device_id,
            "method": method or ("sso" if connection_id is not None else "break_glass"),
            "offline": offline, "last_seen_at": now, "idle_seconds": idle_seconds,
            "passkey_id": passkey_id})

    def get_active(self, session_id: str, now: datetime) -> SessionRecord | None:
        """The session if it exists, is not revoked, not expired and its account is active."""
        state = self.get_active_state(session_id, now)
        if state is None:
            return None
        return SessionRecord(id=state.id, account_id=state.account_id,
                             connection_slug=state.connection_slug, subject=state.subject,
                             created_at=state.created_at, expires_at=state.expires_at)

    def get_active_state(self, session_id: str, now: datetime) -> SessionState | None:
        """``get_active`` with what the frontline checks need (one indexed read): the idle
        lock and the offline re-check are the caller's, from ``last_seen_at``,
        ``idle_seconds`` and ``idp_back``."""
        row = self._c.execute(_ACTIVE_SESSION, {"session_id": session_id, "now": now}).first()
        if row is None:
            return None
        created_at = utc(row.created_at)
        return SessionState(id=row.id, account_id=row.account_id,
                            connection_slug=row.connection_slug, subject=row.subject,
                            created_at=created_at, expires_at=utc(row.expires_at),
                            device_id=row.device_id, method=row.method,
                            offline=bool(row.offline), last_seen_at=_opt_utc(row.last_seen_at),
                            idle_seconds=row.idle_seconds,
                            idp_back=bool(row.offline) and row.idp_ok_at is not None
                            and utc(row.idp_ok_at) > created_at)

    def touch(self, session_id: str, now: datetime) -> None:
        """Record activity on the session (the idle lock's clock)."""
        self._c.execute(_TOUCH_SESSION, {"b_id": session_id, "b_now": now})

    def revoke(self, session_id: str, now: datetime) -> bool:
        """Revoke one session; True if it was active."""
        result = self._c.execute(_REVOKE_SESSION, {"b_id": session_id, "b_now": now})
        return bool(result.rowcount)

    def revoke_all(self, account_id: str, now: datetime) -> int:
        """Revoke every unrevoked session of an account (expired ones too); returns how many."""
        result = self._c.execute(t.session.update().where(
            t.session.c.account_id == account_id, t.session.c.revoked_at.is_(None))
            .values(revoked_at=now))
        return int(result.rowcount)

    def purge_expired(self, before: datetime) -> int:
        result = self._c.execute(t.session.delete().where(t.session.c.expires_at < before))
        return int(result.rowcount)


class LoginRequestRepository:
    """Server-side state of logins in flight: single use, expiring, shared by all nodes."""

    def __init__(self, conn: sa.Connection) -> None:
        self._c = conn

    def create(self, *, state_id: str, connection_id: int, return_to: str,
               data: Mapping[str, object], now: datetime, expires_at: datetime) -> None:
        self._c.execute(t.login_request.insert().values(
            id=state_id, connection_id=connection_id, return_to=return_to, data=dict(data),
            created_at=now, expires_at=expires_at, consumed_at=None))

    def consume(self, state_id: str, now: datetime) -> LoginRequestRecord | None:
        """Mark the request used and return it; None if unknown, expired or already used.

        Exactly one of any number of concurrent callers gets the record."""
        row = _CONSUME_LOGIN.first(self._c, {"b_id": state_id, "b_now": now})
        if row is None:
            return None
        return LoginRequestRecord(connection_id=row.connection_id, return_to=row.return_to,
                                  data=row.data, expires_at=utc(row.expires_at))

    def purge_expired(self, before: datetime) -> int:
        result = self._c.execute(t.login_request.delete()
                                 .where(t.login_request.c.expires_at < before))
        return int(result.rowcount)


class AuditLog:
    """The append-only, hash-chained audit log (one chain per tenant)."""

    def __init__(self, conn: sa.Connection) -> None:
        self._c = conn

    def append(self, tenant_id: int, tenant_slug: str, event: AuditEvent,
               now: datetime) -> ChainedEvent:
        """Chain and insert ``event``. Locks the tenant's chain head until commit, so events of
        one tenant are numbered without gaps even across nodes. Raises RaceLost when the
        tenant's first event is written concurrently (run the unit of work again)."""
        head = _AUDIT_HEAD.first(self._c, {"tenant_id": tenant_id})
        seq, prev = (head.seq, head.hash) if head else (0, GENESIS_HASH)
        chained = chain(event, tenant=tenant_slug, seq=seq + 1, prev_hash=prev, occurred_at=now)
        _INSERT_AUDIT_EVENT.rowcount(self._c, {
            "tenant_id": tenant_id, "seq": chained.seq, "occurred_at": now, "type": chained.type,
            "actor": chained.actor, "account_id": chained.account_id,
            "request_id": chained.request_id, "data": chained.data,
            "prev_hash": chained.prev_hash, "hash": chained.hash})
        if head is None:
            try:
                self._c.execute(t.audit_head.insert(), {
                    "tenant_id": tenant_id, "seq": chained.seq, "hash": chained.hash,
                    "anchor_seq": 0, "anchor_hash": GENESIS_HASH})
            except sa.exc.IntegrityError as exc:
                raise RaceLost("audit chain head created concurrently") from exc
        else:
            _MOVE_AUDIT_HEAD.rowcount(self._c, {"b_tenant_id": tenant_id, "b_seq": chained.seq,
                                                "b_hash": chained.hash})
        return chained

    def events(self, tenant_id: int, *, after_seq: int = 0,
               batch: int = 1000) -> Iterator[ChainedEvent]:
        """Events of one tenant in chain order, read in batches."""
        while True:
            rows = self._c.execute(
                sa.select(t.audit_event, t.tenant.c.slug.label("tenant_slug"))
                .join(t.tenant, t.tenant.c.id == t.audit_event.c.tenant_id)
                .where(t.audit_event.c.tenant_id == tenant_id, t.audit_event.c.seq > after_seq)
                .order_by(t.audit_event.c.seq).limit(batch)).all()
            for r in rows:
                yield ChainedEvent(tenant=r.tenant_slug, seq=r.seq,
                                   occurred_at=utc(r.occurred_at), type=r.type, actor=r.actor,
                                   account_id=r.account_id, request_id=r.request_id,
                                   data=r.data, prev_hash=r.prev_hash, hash=r.hash)
            if len(rows) < batch:
                return
            after_seq = rows[-1].seq

    def anchor(self, tenant_id: int) -> tuple[int, str]:
        """(seq, hash) of the last event the retention policy removed; (0, genesis) if none."""
        row = self._c.execute(sa.select(t.audit_head.c.anchor_seq, t.audit_head.c.anchor_hash)
                              .where(t.audit_head.c.tenant_id == tenant_id)).first()
        return (0, GENESIS_HASH) if row is None else (row.anchor_seq, row.anchor_hash)

    def prune(self, tenant_id: int, before: datetime) -> int:
        """Remove the events that occurred before ``before`` (retention), keeping the chain
        verifiable: the last removed event becomes the anchor. Returns how many went."""
        _AUDIT_HEAD.first(self._c, {"tenant_id": tenant_id})  # lock out appends
        last = self._c.execute(
            sa.select(t.audit_event.c.seq, t.audit_event.c.hash)
            .where(t.audit_event.c.tenant_id == tenant_id,
                   t.audit_event.c.occurred_at < before)
            .order_by(t.audit_event.c.seq.desc()).limit(1)).first()
        if last is None:
            return 0
        result = self._c.execute(t.audit_event.delete().where(
            t.audit_event.c.tenant_id == tenant_id, t.audit_event.c.seq <= last.seq))
        self._c.execute(t.audit_head.update().where(t.audit_head.c.tenant_id == tenant_id)
                        .values(anchor_seq=last.seq, anchor_hash=last.hash))
        return int(result.rowcount)

    def head(self, tenant_id: int) -> tuple[int, str] | None:
        row = self._c.execute(sa.select(t.audit_head.c.seq, t.audit_head.c.hash)
                              .where(t.audit_head.c.tenant_id == tenant_id)).first()
        return None if row is None else (row.seq, row.hash)


class Outbox:
    """Events for webhooks, written in the same transaction as the change they announce."""

    def __init__(self, conn: sa.Connection) -> None:
        self._c = conn

    def add(self, tenant_id: int, type: str, payload: Mapping[str, object],
            now: datetime) -> None:
        self._c.execute(t.outbox_event.insert(), {
            "tenant_id": tenant_id, "type": type, "payload": dict(payload), "created_at": now,
            "delivered_at": None, "attempts": 0})

    def add_many(self, tenant_id: int, events: Sequence[tuple[str, Mapping[str, object]]],
                 now: datetime) -> None:
        """Several (type, payload) events in one statement."""
        _INSERT_OUTBOX_EVENT.many(self._c, [
            {"tenant_id": tenant_id, "type": kind, "payload": dict(payload),
             "created_at": now, "delivered_at": None, "attempts": 0}
            for kind, payload in events])

    def pending(self, limit: int = 100) -> Sequence[tuple[int, str, Mapping[str, object]]]:
        """Undelivered events, oldest first: (id, type, payload)."""
        rows = self._c.execute(sa.select(t.outbox_event.c.id, t.outbox_event.c.type,
                                         t.outbox_event.c.payload)
                               .where(t.outbox_event.c.delivered_at.is_(None))
                               .order_by(t.outbox_event.c.id).limit(limit))
        return [(r.id, r.type, r.payload) for r in rows]


class AdminTokenRepository:
    """Admin API bearer tokens, stored as SHA-256 hashes."""

    def __init__(self, conn: sa.Connection) -> None:
        self._c = conn

    def create(self, name: str, token_hash: str, now: datetime,
               expires_at: datetime | None) -> int:
        new_id = self._c.execute(t.admin_token.insert().values(
            name=name, token_hash=token_hash, created_at=now, expires_at=expires_at,
            revoked_at=None, last_used_at=None)).inserted_primary_key
        assert new_id is not None  # noqa: S101
        return int(new_id[0])

    def find_active(self, token_hash: str, now: datetime) -> tuple[int, str] | None:
        """(id, name) of the unrevoked, unexpired token with this hash, or None."""
        row = self._c.execute(
            sa.select(t.admin_token.c.id, t.admin_token.c.name, t.admin_token.c.token_hash)
            .where(t.admin_token.c.token_hash == token_hash,
                   t.admin_token.c.revoked_at.is_(None),
                   sa.or_(t.admin_token.c.expires_at.is_(None),
                          t.admin_token.c.expires_at > now))).first()
        if row is None or not hmac.compare_digest(row.token_hash, token_hash):
            return None
        return row.id, row.name

    def list(self) -> list[tuple[int, str, datetime, datetime | None, datetime | None]]:
        """(id, name, created_at, expires_at, revoked_at) of every token."""
        rows = self._c.execute(sa.select(t.admin_token).order_by(t.admin_token.c.id))
        return [(r.id, r.name, utc(r.created_at), _opt_utc(r.expires_at),
                 _opt_utc(r.revoked_at)) for r in rows]

    def revoke(self, token_id: int, now: datetime) -> None:
        """Raises NotFound."""
        result = self._c.execute(t.admin_token.update().where(
            t.admin_token.c.id == token_id, t.admin_token.c.revoked_at.is_(None))
            .values(revoked_at=now))
        if not result.rowcount:
            raise NotFound(f"no active admin token {token_id}")


class SigningKeyRepository:
    """Keys that sign identity tokens for applications. One is active (signs); one may be
    staged (published, signs from the next rotation on, so apps hold it before they meet it:
    ``active`` false, ``retire_after`` null); keys rotated out stay published until their
    ``retire_after``."""

    def __init__(self, conn: sa.Connection) -> None:
        self._c = conn

    def add(self, *, kid: str, sealed_private: str, public_jwk: Mapping[str, object],
            now: datetime, active: bool) -> None:
        """Add a key: the active one (the caller retires the previous one) or the staged one."""
        self._c.execute(t.signing_key.insert(), {
            "kid": kid, "private_jwk": sealed_private, "public_jwk": dict(public_jwk),
            "created_at": now, "active": active, "retire_after": None})

    def active(self) -> tuple[str, str] | None:
        """(kid, sealed private JWK) of the key that signs, or None before the first."""
        row = self._c.execute(sa.select(t.signing_key.c.kid, t.signing_key.c.private_jwk)
                              .where(t.signing_key.c.active.is_(True))).first()
        return None if row is None else (row.kid, row.private_jwk)

    def staged(self) -> str | None:
        """The kid of the staged key (published, not yet signing), if any."""
        return self._c.execute(sa.select(t.signing_key.c.kid).where(
            t.signing_key.c.active.is_(False), t.signing_key.c.retire_after.is_(None),
        ).order_by(t.signing_key.c.created_at.desc())).scalar()

    def promote(self, kid: str, *, retire_previous_after: datetime) -> None:
        """Make ``kid`` the active key; the previous active key stays published until
        ``retire_previous_after``."""
        self._c.execute(t.signing_key.update().where(t.signing_key.c.active.is_(True))
                        .values(active=False, retire_after=retire_previous_after))
        self._c.execute(t.signing_key.update().where(t.signing_key.c.kid == kid)
                        .values(active=True, retire_after=None))

    def published(self, now: datetime) -> list[dict[str, object]]:
        """Public JWKs of the active key, the staged one and the keys not yet retired,
        newest first."""
        rows = self._c.execute(
            sa.select(t.signing_key.c.public_jwk)
            .where(sa.or_(t.signing_key.c.retire_after.is_(None),
                          t.signing_key.c.retire_after > now))
            .order_by(t.signing_key.c.created_at.desc()))
        return [dict(r.public_jwk) for r in rows]


class WebhookRepository:
    """Webhook endpoints, and deliveries fanned out from the outbox.

    Several nodes may run the worker at once: the outbox fan-out and the claim of due
    deliveries take their rows with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL (SQLite runs one
    writer at a time), and a claim leases the row by moving ``next_attempt_at``, so the HTTP
    call happens outside any transaction and no other worker takes it meanwhile.
    """

    def __init__(self, conn: sa.Connection) -> None:
        self._c = conn

    def add_endpoint(self, *, tenant_id: int, url: str, sealed_secret: str,
                     event_types: Sequence[str], now: datetime) -> int:
        new_id = self._c.execute(t.webhook_endpoint.insert().values(
            tenant_id=tenant_id, url=url, secret=sealed_secret, event_types=list(event_types),
            enabled=True, created_at=now)).inserted_primary_key
        assert new_id is not None  # noqa: S101
        return int(new_id[0])

    def endpoints(self, tenant_id: int) -> list[WebhookEndpointRecord]:
        rows = self._c.execute(sa.select(t.webhook_endpoint)
                               .where(t.webhook_endpoint.c.tenant_id == tenant_id)
                               .order_by(t.webhook_endpoint.c.id))
        return [WebhookEndpointRecord(r.id, r.tenant_id, r.url, tuple(r.event_types), r.enabled,
                                      utc(r.created_at)) for r in rows]

    def fan_out(self, now: datetime, *, limit: int = 500) -> int:
        """Turn undispatched outbox events into one delivery per subscribed endpoint; returns
        how many events were dispatched."""
        events = self._c.execute(
            sa.select(t.outbox_event.c.id, t.outbox_event.c.tenant_id, t.outbox_event.c.type)
            .where(t.outbox_event.c.delivered_at.is_(None))
            .order_by(t.outbox_event.c.id).limit(limit)
            .with_for_update(skip_locked=True)).all()
        if not events:
            return 0
        tenants = {e.tenant_id for e in events}
        subscribed: dict[int, list[tuple[int, tuple[str, ...]]]] = {}
        for row in self._c.execute(
                sa.select(t.webhook_endpoint.c.id, t.webhook_endpoint.c.tenant_id,
                          t.webhook_endpoint.c.event_types)
                .where(t.webhook_endpoint.c.enabled.is_(True),
                       t.webhook_endpoint.c.tenant_id.in_(tenants))):
            subscribed.setdefault(row.tenant_id, []).append((row.id, tuple(row.event_types)))
        deliveries = [
            {"outbox_id": e.id, "endpoint_id": endpoint_id, "event_type": e.type,
             "status": "pending", "attempts": 0, "next_attempt_at": now, "created_at": now}
            for e in events for endpoint_id, types in subscribed.get(e.tenant_id, [])
            if "*" in types or e.type in types]
        if deliveries:
            self._c.execute(t.webhook_delivery.insert(), deliveries)
        self._c.execute(t.outbox_event.update()
                        .where(t.outbox_event.c.id.in_([e.id for e in events]))
                        .values(delivered_at=now))
        return len(events)

    def claim_due(self, now: datetime, *, lease: timedelta, claim: str,
                  limit: int = 50) -> list[DueDelivery]:
        """Due pending deliveries, leased to this worker pass (``claim``) until
        ``now + lease``; only the holder of the claim can record their result."""
        ids = [r.id for r in self._c.execute(
            sa.select(t.webhook_delivery.c.id)
            .where(t.webhook_delivery.c.status == "pending",
                   t.webhook_delivery.c.next_attempt_at <= now)
            .order_by(t.webhook_delivery.c.next_attempt_at, t.webhook_delivery.c.id)
            .limit(limit).with_for_update(skip_locked=True))]
        if not ids:
            return []
        self._c.execute(t.webhook_delivery.update().where(t.webhook_delivery.c.id.in_(ids))
                        .values(next_attempt_at=now + lease, claim=claim))
        rows = self._c.execute(
            sa.select(t.webhook_delivery.c.id, t.webhook_delivery.c.outbox_id,
                      t.webhook_delivery.c.event_type, t.webhook_delivery.c.attempts,
                      t.webhook_endpoint.c.url, t.webhook_endpoint.c.secret,
                      t.outbox_event.c.payload, t.outbox_event.c.created_at)
            .join(t.webhook_endpoint,
                  t.webhook_endpoint.c.id == t.webhook_delivery.c.endpoint_id)
            .join(t.outbox_event, t.outbox_event.c.id == t.webhook_delivery.c.outbox_id)
            .where(t.webhook_delivery.c.id.in_(ids)).order_by(t.webhook_delivery.c.id))
        return [DueDelivery(id=r.id, outbox_id=r.outbox_id, url=r.url, sealed_secret=r.secret,
                            event_type=r.event_type, payload=r.payload, attempts=r.attempts,
                            created_at=utc(r.created_at), claim=claim) for r in rows]

    def renew_claim(self, delivery_id: int, *, claim: str, until: datetime) -> bool:
        """Extend this pass's lease on one delivery right before its send; False when the
        lease ran out and another pass took it meanwhile (then this pass must not send)."""
        result = self._c.execute(
            t.webhook_delivery.update()
            .where(t.webhook_delivery.c.id == delivery_id,
                   t.webhook_delivery.c.claim == claim,
                   t.webhook_delivery.c.status == "pending")
            .values(next_attempt_at=until))
        return bool(result.rowcount)

    def record_attempt(self, delivery_id: int, *, claim: str, delivered: bool,
                       status_code: int | None, error: str | None, now: datetime,
                       next_attempt_at: datetime | None) -> bool:
        """After one attempt: delivered, retry at ``next_attempt_at``, or dead (None). Only
        the pass still holding the claim writes (a late result never undoes another
        worker's delivery); returns whether it did."""
        status = "delivered" if delivered else "pending" if next_attempt_at else "dead"
        result = self._c.execute(
            t.webhook_delivery.update()
            .where(t.webhook_delivery.c.id == delivery_id,
                   t.webhook_delivery.c.claim == claim,
                   t.webhook_delivery.c.status == "pending")
            .values(status=status, attempts=t.webhook_delivery.c.attempts + 1, claim=None,
                                last_status=status_code,
                                last_error=(error or "")[:500] or None,
                                next_attempt_at=next_attempt_at or now,
                                delivered_at=now if delivered else None))
        return bool(result.rowcount)

    def backlog(self) -> int:
        """Deliveries waiting (pending) plus outbox events not yet fanned out."""
        pending = self._c.execute(sa.select(sa.func.count()).select_from(t.webhook_delivery)
                                  .where(t.webhook_delivery.c.status == "pending")).scalar_one()
        undispatched = self._c.execute(
            sa.select(sa.func.count()).select_from(t.outbox_event)
            .where(t.outbox_event.c.delivered_at.is_(None))).scalar_one()
        return int(pending) + int(undispatched)

    def deliveries(self, tenant_id: int, *, status: str | None = None,
                   limit: int = 100) -> list[DeliveryRecord]:
        """Newest first."""
        query = (sa.select(t.webhook_delivery)
                 .join(t.webhook_endpoint,
                       t.webhook_endpoint.c.id == t.webhook_delivery.c.endpoint_id)
                 .where(t.webhook_endpoint.c.tenant_id == tenant_id)
                 .order_by(t.webhook_delivery.c.id.desc()).limit(limit))
        if status:
            query = query.where(t.webhook_delivery.c.status == status)
        return [DeliveryRecord(r.id, r.outbox_id, r.endpoint_id, r.event_type, r.status,
                               r.attempts, utc(r.next_attempt_at), r.last_status, r.last_error,
                               _opt_utc(r.delivered_at)) for r in self._c.execute(query)]

    def replay(self, delivery_id: int, now: datetime) -> int:
        """Send a dead (or delivered) delivery again, from a fresh retry budget; returns its
        tenant id. Raises NotFound, or Conflict for one still pending."""
        row = self._c.execute(
            sa.select(t.webhook_endpoint.c.tenant_id)
            .join(t.webhook_delivery,
                  t.webhook_delivery.c.endpoint_id == t.webhook_endpoint.c.id)
            .where(t.webhook_delivery.c.id == delivery_id)).first()
        if row is None:
            raise NotFound(f"no webhook delivery {delivery_id}")
        result = self._c.execute(
            t.webhook_delivery.update()
            .where(t.webhook_delivery.c.id == delivery_id,
                   t.webhook_delivery.c.status.in_(["dead", "delivered"]))
            .values(status="pending", attempts=0, next_attempt_at=now, delivered_at=None,
                    claim=None))
        if not result.rowcount:
            raise Conflict(f"webhook delivery {delivery_id} is still being delivered")
        return int(row.tenant_id)


class BreakGlassRepository:
    """Emergency access credentials: requested by one admin, issued by another, used once."""

    def __init__(self, conn: sa.Connection) -> None:
        self._c = conn

    def request(self, *, tenant_id: int, roles: Sequence[str], reason: str, valid_minutes: int,
                requested_by: str, now: datetime) -> int:
        new_id = self._c.execute(t.break_glass.insert().values(
            tenant_id=tenant_id, roles=list(roles), reason=reason, valid_minutes=valid_minutes,
            requested_by=requested_by, requested_at=now, status="requested")
        ).inserted_primary_key
        assert new_id is not None  # noqa: S101
        return int(new_id[0])

    def get(self, request_id: int) -> BreakGlassRecord:
        """Raises NotFound."""
        row = self._c.execute(sa.select(t.break_glass)
                              .where(t.break_glass.c.id == request_id)).first()
        if row is None:
            raise NotFound(f"no break-glass request {request_id}")
        return self._record(row)

    def issue(self, request_id: int, *, approved_by: str, code_hash: str, now: datetime,
              expires_at: datetime) -> None:
        """Raises Conflict unless the request is still waiting."""
        result = self._c.execute(
            t.break_glass.update().where(t.break_glass.c.id == request_id,
                                         t.break_glass.c.status == "requested")
            .values(status="issued", approved_by=approved_by, approved_at=now,
                    code_hash=code_hash, expires_at=expires_at))
        if not result.rowcount:
            raise Conflict(f"break-glass request {request_id} is not waiting for approval")

    def redeem(self, code_hash: str, now: datetime) -> BreakGlassRecord | None:
        """Spend an issued, unexpired credential (single use: one caller wins)."""
        result = self._c.execute(
            t.break_glass.update().where(t.break_glass.c.code_hash == code_hash,
                                         t.break_glass.c.status == "issued",
                                         t.break_glass.c.expires_at > now)
            .values(status="used", used_at=now).returning(*t.break_glass.c))
        row = result.first()
        return None if row is None else self._record(row)

    def attach_account(self, request_id: int, account_id: str) -> None:
        self._c.execute(t.break_glass.update().where(t.break_glass.c.id == request_id)
                        .values(account_id=account_id))

    @staticmethod
    def _record(row: sa.Row[Any]) -> BreakGlassRecord:
        return BreakGlassRecord(
            id=row.id, tenant_id=row.tenant_id, roles=tuple(row.roles), reason=row.reason,
            valid_minutes=row.valid_minutes, requested_by=row.requested_by,
            requested_at=utc(row.requested_at), approved_by=row.approved_by,
            expires_at=_opt_utc(row.expires_at), used_at=_opt_utc(row.used_at),
            account_id=row.account_id, status=row.status)
