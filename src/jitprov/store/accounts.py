"""Accounts: the login's reads (by identity, link candidates) and writes (create, apply a
``Changes`` with its grants and pending grants, status), the tenant's account list, and the
queries and guarded writes of the dormancy lifecycle. ``uow.accounts``.

Same contract as every repository here: narrow methods over one open transaction (see
``unit_of_work.py``), copies out (core values or ``records.py`` records), ``NotFound`` for
what is missing, never a SQLAlchemy exception.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from jitprov.core.errors import NotFound
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
from jitprov.store._common import opt_utc, prepared_insert, utc
from jitprov.store.fast import Claim, Prepared, WithCommit, first_after
from jitprov.store.records import AccountView, IdentityLink

MatchedBy = Literal["email", "external_id"]

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
_INSERT_ACCOUNT = prepared_insert(t.account)
_INSERT_ROLE_GRANT = prepared_insert(t.role_grant)
_INSERT_PENDING_GRANT = prepared_insert(t.pending_grant)
_IDENTITIES = (
    sa.select(t.connection.c.slug, t.identity.c.subject, t.identity.c.issuer)
    .join(t.connection, t.connection.c.id == t.identity.c.connection_id)
    .where(t.identity.c.account_id == _B("account_id")).order_by(t.identity.c.id))


class AccountRepository:
    """Accounts with their grants and pending grants."""

    def __init__(self, conn: sa.Connection, later: WithCommit) -> None:
        self._c = conn
        self._later = later

    def find_by_identity(self, connection_id: int, subject: str, *,
                         after: Sequence[tuple[Prepared, Mapping[str, object]]] = (),
                         claims: Sequence[Claim] = ()) -> Account | None:
        """The account this (connection, subject) signs in to, or None (one statement on
        PostgreSQL, with its grants; two on SQLite). ``after``: statements to run first, in
        the same round trip (``IdentityRepository.identity_locks``; empty on SQLite), after
        ``claims`` (``WithNextRead.take``; empty on SQLite, which answers them at once)."""
        params = {"connection_id": connection_id, "subject": subject}
        if self._c.dialect.name == "postgresql":
            row = (first_after(self._c, after, _FIND_WITH_GRANTS, params, claims=claims)
                   if after or claims else _FIND_WITH_GRANTS.first(self._c, params))
            return None if row is None else self._account(row, _json_entries(row.entries))
        assert not after and not claims  # noqa: S101 - SQLite: no lock, claims answered
        row = _FIND_BY_IDENTITY.first(self._c, params)
        return None if row is None else self._account(row)

    def get(self, account_id: str) -> Account:
        """Raises NotFound."""
        row = self._c.execute(_GET_ACCOUNT, {"account_id": account_id}).first()
        if row is None:
            raise NotFound(f"no account {account_id!r}")
        return self._account(row)

    def lock(self, account_id: str) -> None:
        """Lock the account row until commit (``SELECT ... FOR UPDATE``), so the admin writes
        of its grants and blocks run one at a time and each reads what the previous one
        committed. Take it before reading the account. SQLite: no FOR UPDATE; its write
        transactions already run one at a time (``database.py``)."""
        self._c.execute(sa.select(t.account.c.id).where(t.account.c.id == account_id)
                        .with_for_update())

    def find_link_candidates(self, tenant_id: int, *, connection_id: int, email: str | None,
                             external_id: str | None) -> list[tuple[Account, MatchedBy]]:
        """Accounts of the tenant a login might belong to, or whose email it would take:
        (account, matched_by), at most 10.

        ``external_id`` matches only accounts whose external id was issued for this very
        connection (``external_id_connection_id``: a SCIM client bound to it), so another IdP of
        the tenant cannot claim them by choosing a subject; ``email`` matches any account,
        case-insensitively.

        An account SCIM deleted (kept deactivated under ``scim_delete: deactivate``) stays a
        candidate, so a first login with a new subject and its email is refused
        (``account_inactive``) rather than given a fresh account: a deletion never turns into a
        re-creation by JIT. It is left out only when a live account matches too (the person as
        SCIM re-created them), which then stands for that person alone.
        """
        if not external_id and not email:
            return []
        params: dict[str, object] = {"tenant_id": tenant_id}
        if external_id:
            params.update(external_id=external_id, connection_id=connection_id)
        if email:
            params["email_lower"] = email.lower()
        rows = _CANDIDATES[bool(external_id), bool(email)].all(self._c, params)
        if any(row.scim_deleted_at is None for row in rows):
            rows = [row for row in rows if row.scim_deleted_at is None]
        out: list[tuple[Account, MatchedBy]] = []
        for row in rows:
            by_id = (external_id is not None and row.external_id == external_id
                     and row.external_id_connection_id == connection_id)
            out.append((self._account(row), "external_id" if by_id else "email"))
        return out

    def create(self, *, tenant_id: int, changes: Changes, provisioned_by: ProvisionedBy,
               now: datetime, kind: AccountKind = "user", external_id: str | None = None,
               external_id_connection_id: int | None = None,
               granted_by: str = "login", with_commit: bool = False) -> str:
        """Insert an account with the profile, groups, grants and pending grants of
        ``changes``; returns its new id. One statement on PostgreSQL (rows of the three
        tables in a data-modifying CTE; ``with_commit``: written with the unit's commit);
        SQLite inserts the account, then its grants."""
        account_id = str(uuid.uuid4())
        profile = {k: after for k, (_, after) in changes.profile.items()}
        email = profile.get("email")
        account = {
            "id": account_id, "tenant_id": tenant_id, "status": "active", "kind": kind,
            "provisioned_by": provisioned_by, "external_id": external_id,
            "external_id_connection_id": external_id_connection_id, "email": email,
            "email_lower": email.lower() if email else None, "profile": profile,
            "profile_sources": {k: f"{PROFILE_SOURCE_PREFIX}{k}" for k in profile},
            "idp_groups": sorted(changes.groups_added), "created_at": now, "updated_at": now,
            "last_login_at": now if provisioned_by == "jit" else None, "deactivated_at": None,
            "version": 1}
        if self._c.dialect.name == "postgresql":
            grants = sorted(changes.grants_added)
            pending = sorted(changes.pending_added)
            row = {
                **account,
                "g_role": [g.role for g in grants], "g_source": [g.source for g in grants],
                "g_expires_at": [g.expires_at for g in grants], "g_at": now,
                "g_by": granted_by,
                "p_role": [p.role for p in pending], "p_source": [p.source for p in pending],
                "p_at": now}
            self._later.write(_CREATE_WITH_GRANTS, row, with_commit=with_commit)
            return account_id
        _INSERT_ACCOUNT.rowcount(self._c, account)
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

    def list(self, tenant_id: int, *, limit: int = 1000, offset: int = 0) -> list[AccountView]:
        """Accounts of a tenant, oldest first, with their identities."""
        rows = self._c.execute(
            sa.select(t.account, t.tenant.c.slug.label("tenant_slug"))
            .join(t.tenant, t.tenant.c.id == t.account.c.tenant_id)
            .where(t.account.c.tenant_id == tenant_id)
            .order_by(t.account.c.created_at, t.account.c.id).limit(limit).offset(offset)).all()
        return [self._view(r) for r in rows]

    def scim_deleted_at(self, account_id: str) -> datetime | None:
        """When SCIM deleted the account (kept under ``scim_delete: deactivate``), or None."""
        return opt_utc(self._c.execute(sa.select(t.account.c.scim_deleted_at)
                                       .where(t.account.c.id == account_id)).scalar())

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
        return [(r.id, r.email, utc(r.last_login_at), opt_utc(r.dormant_warned_at))
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

    def _view(self, row: sa.Row[Any]) -> AccountView:
        idents = self._c.execute(_IDENTITIES, {"account_id": row.id}).all()
        return AccountView(
            account=self._account(row), tenant_slug=row.tenant_slug,
            created_at=utc(row.created_at), updated_at=utc(row.updated_at),
            last_login_at=opt_utc(row.last_login_at),
            identities=tuple(IdentityLink(i.slug, i.subject, i.issuer) for i in idents))

    def get_many(self, account_ids: Sequence[str]) -> dict[str, Account]:
        """:meth:`get` for several accounts in two statements (a batch re-evaluation): id ->
        account, unknown ids left out."""
        ids = list(dict.fromkeys(account_ids))
        rows = self._c.execute(sa.select(*_ACCOUNT_COLUMNS)
                               .join(t.tenant, t.tenant.c.id == t.account.c.tenant_id)
                               .where(t.account.c.id.in_(ids))).all() if ids else []
        entries: dict[str, list[Any]] = {r.id: [] for r in rows}
        if rows:
            for e in self._c.execute(_grants_and_pending_of(list(entries))):
                entries[e.account_id].append((e.kind, e.role, e.source, e.expires_at))
        return {r.id: self._account(r, entries[r.id]) for r in rows}

    def _account(self, row: Any,  # a Core row or a fast.Row
                 entries: Sequence[Any] | None = None) -> Account:
        grants: set[RoleGrant] = set()
        pending: set[PendingGrant] = set()
        blocked: set[str] = set()
        for kind, role, source, expires_at in entries if entries is not None else \
                _GRANTS_AND_PENDING.all(self._c, {"account_id": row.id}):
            if kind == "g":
                grants.add(RoleGrant(role, source, opt_utc(expires_at)))
            elif kind == "p":
                pending.add(PendingGrant(role, source))
            else:
                blocked.add(role)
        return Account(
            id=row.id, tenant=row.tenant_slug, status=cast(AccountStatus, row.status),
            kind=cast(AccountKind, row.kind), profile=dict(row.profile),
            profile_sources=dict(row.profile_sources), groups=frozenset(row.idp_groups),
            grants=frozenset(grants), pending=frozenset(pending),
            provisioned_by=cast(ProvisionedBy, row.provisioned_by), external_id=row.external_id,
            blocked=frozenset(blocked))


def _grants_and_pending_of(account_ids: list[str]) -> sa.CompoundSelect[Any]:
    """``_GRANTS_AND_PENDING`` for several accounts, with their ``account_id``."""
    g, p, b = t.role_grant.c, t.pending_grant.c, t.role_block.c
    return sa.union_all(
        sa.select(g.account_id, sa.literal("g").label("kind"), g.role, g.source, g.expires_at)
        .where(g.account_id.in_(account_ids)),
        sa.select(p.account_id, sa.literal("p").label("kind"), p.role, p.source,
                  sa.null().label("expires_at"))
        .where(p.account_id.in_(account_ids), p.status == "pending"),
        sa.select(b.account_id, sa.literal("b").label("kind"), b.role, sa.null().label("source"),
                  sa.null().label("expires_at"))
        .where(b.account_id.in_(account_ids)))


def _grants_and_pending(account_id: sa.ColumnElement[Any],
                        correlate: tuple[sa.Table, ...] = ()) -> sa.CompoundSelect[Any]:
    """An account's grants (expired ones included: readers filter them with ``Account.at``,
    the sweep deletes them), open pending grants and blocked roles: (kind, role, source,
    expires_at), kind ``g``, ``p`` or ``b``."""
    return sa.union_all(
        sa.select(sa.literal("g").label("kind"), t.role_grant.c.role, t.role_grant.c.source,
                  t.role_grant.c.expires_at)
        .where(t.role_grant.c.account_id == account_id).correlate(*correlate),
        sa.select(sa.literal("p").label("kind"), t.pending_grant.c.role,
                  t.pending_grant.c.source, sa.null().label("expires_at"))
        .where(t.pending_grant.c.account_id == account_id,
               t.pending_grant.c.status == "pending").correlate(*correlate),
        sa.select(sa.literal("b").label("kind"), t.role_block.c.role,
                  sa.null().label("source"), sa.null().label("expires_at"))
        .where(t.role_block.c.account_id == account_id).correlate(*correlate))


# One round trip for an account's grants, open pending grants and blocked roles.
_GRANTS_AND_PENDING = Prepared(_grants_and_pending(sa.bindparam("account_id")))


def _find_with_grants() -> sa.Select[Any]:
    """PostgreSQL: ``_FIND_BY_IDENTITY`` with the account's ``_GRANTS_AND_PENDING`` as one
    JSON array column ``entries`` ([kind, role, source, expires_at], in one statement)."""
    entries = _grants_and_pending(t.account.c.id, (t.account,)).subquery("entries")
    agg = (sa.select(sa.func.coalesce(
        sa.func.json_agg(sa.func.json_build_array(entries.c.kind, entries.c.role,
                                                  entries.c.source, entries.c.expires_at)),
        sa.literal_column("'[]'::json")))
        .scalar_subquery())
    return (sa.select(*_ACCOUNT_COLUMNS, sa.type_coerce(agg, sa.JSON).label("entries"))
            .join(t.identity, t.identity.c.account_id == t.account.c.id)
            .join(t.tenant, t.tenant.c.id == t.account.c.tenant_id)
            .where(t.identity.c.connection_id == _B("connection_id"),
                   t.identity.c.subject == _B("subject")))


_FIND_WITH_GRANTS = Prepared(_find_with_grants())


def _create_with_grants() -> sa.Insert:
    """PostgreSQL: ``_INSERT_ACCOUNT`` and its role grants and pending grants in one
    statement. The account row is inserted by a data-modifying CTE whose ``RETURNING id`` the
    grant rows take their ``account_id`` from (so the foreign keys hold within the
    statement); the grant rows come from parallel arrays (``unnest``): ``g_role``,
    ``g_source``, ``g_expires_at`` with ``g_at``/``g_by``, and ``p_role``, ``p_source`` with
    ``p_at``. Empty arrays insert no rows, so one plan serves every account."""
    array = postgresql.ARRAY
    new_account = (cast(sa.Insert, _INSERT_ACCOUNT.stmt).returning(t.account.c.id)
                   .cte("new_account"))
    g = (sa.func.unnest(_B("g_role", type_=array(sa.String)),
                        _B("g_source", type_=array(sa.String)),
                        _B("g_expires_at", type_=array(t.TS)))
         .table_valued("role", "source", "expires_at").render_derived(name="g"))
    grants = (t.role_grant.insert().from_select(
        ["account_id", "role", "source", "granted_at", "granted_by", "expires_at"],
        sa.select(new_account.c.id, g.c.role, g.c.source, _B("g_at", type_=t.TS),
                  _B("g_by", type_=sa.String), g.c.expires_at)
        .select_from(new_account).join(g, sa.true()))
        .cte("new_grants"))
    p = (sa.func.unnest(_B("p_role", type_=array(sa.String)),
                        _B("p_source", type_=array(sa.String)))
         .table_valued("role", "source").render_derived(name="p"))
    return (t.pending_grant.insert().from_select(
        ["account_id", "role", "source", "status", "requested_at"],
        sa.select(new_account.c.id, p.c.role, p.c.source, sa.literal_column("'pending'"),
                  _B("p_at", type_=t.TS))
        .select_from(new_account).join(p, sa.true()))
        .add_cte(new_account, grants))


_CREATE_WITH_GRANTS = Prepared(_create_with_grants())


def _json_entries(entries: Sequence[Sequence[Any]]) -> list[tuple[Any, ...]]:
    """The rows of ``_FIND_WITH_GRANTS.entries`` as ``_GRANTS_AND_PENDING`` gives them (its
    ``expires_at`` is ISO 8601 text in JSON)."""
    return [(kind, role, source, None if expires_at is None
             else datetime.fromisoformat(expires_at))
            for kind, role, source, expires_at in entries]
