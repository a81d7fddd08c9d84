"""What the re-evaluation of rule grants reads and queues: the SCIM group names a login's
mapping sees, the recorded claims of the identities whose mapping tests ``scim_groups``, and
the queue of accounts a large SCIM change left for the job. ``uow.entitlements``.

Same contract as every repository here: narrow methods over one open transaction (see
``unit_of_work.py``), copies out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from jitprov.core.provisioning import Changes
from jitprov.store import tables as t
from jitprov.store.fast import Prepared

#: the claim a mapping tests to see SCIM membership; a mapping that never names it is never
#: re-evaluated (the same test as the login's, on the mapping's text)
SCIM_GROUPS_CLAIM = "scim_groups"

_B = sa.bindparam
_G = t.scim_group
_M = t.scim_group_member
_I = t.identity.c
_C = t.connection.c
_Q = t.reevaluation
_BATCH = 1000  # ids per statement

# The account a login signs in to: the one bound to (connection, subject), else the account a
# SCIM client of this connection created with this subject as its externalId.
_LOGIN_ACCOUNT = sa.func.coalesce(
    sa.select(_I.account_id).where(_I.connection_id == _B("connection_id"),
                                   _I.subject == _B("subject")).scalar_subquery(),
    sa.select(t.account.c.id).where(t.account.c.tenant_id == _B("tenant_id"),
                                    t.account.c.external_id == _B("subject"),
                                    t.account.c.external_id_connection_id
                                    == _B("connection_id")).limit(1).scalar_subquery())
_LOGIN_GROUPS = Prepared(
    sa.select(_G.c.display_name).join(_M, _M.c.group_id == _G.c.id)
    .where(_M.c.account_id == _LOGIN_ACCOUNT).order_by(_G.c.display_name_lower, _G.c.id))


@dataclass(frozen=True, slots=True)
class RecordedIdentity:
    """An identity whose connection's mapping tests ``scim_groups``, with its recorded
    claims (redacted, from its most recent login)."""

    account_id: str
    connection_id: int
    connection_slug: str
    subject: str
    claims: Mapping[str, object]


@dataclass(frozen=True, slots=True)
class QueuedReevaluation:
    id: int
    account_id: str
    actor: str
    request_id: str | None


class EntitlementStore:
    def __init__(self, conn: sa.Connection) -> None:
        self._c = conn

    def login_groups(self, tenant_id: int, connection_id: int, subject: str) -> list[str]:
        """displayNames of the SCIM groups of the account a login of (connection, subject)
        signs in to (see ``_LOGIN_ACCOUNT``), by name: one statement."""
        return [r[0] for r in _LOGIN_GROUPS.all(self._c, {
            "tenant_id": tenant_id, "connection_id": connection_id, "subject": subject})]

    def uses_scim_groups(self, tenant_id: int) -> bool:
        """Whether a connection of the tenant has a mapping that names ``scim_groups``."""
        return self._c.execute(sa.select(_C.id).where(
            _C.tenant_id == tenant_id, _C.mapping.contains(SCIM_GROUPS_CLAIM)).limit(1)
        ).first() is not None

    def recorded_identities(self, account_ids: Sequence[str]) -> list[RecordedIdentity]:
        """The identities of these accounts through a connection whose mapping names
        ``scim_groups`` and that have recorded claims, ordered by (connection, subject): the
        order their login locks are taken in."""
        out: list[RecordedIdentity] = []
        unique = sorted(set(account_ids))
        for i in range(0, len(unique), _BATCH):
            rows = self._c.execute(
                sa.select(_I.account_id, _I.connection_id, _C.slug, _I.subject, _I.claims)
                .join(t.connection, _C.id == _I.connection_id)
                .where(_I.account_id.in_(unique[i:i + _BATCH]), _I.claims_at.is_not(None),
                       _C.mapping.contains(SCIM_GROUPS_CLAIM)))
            out += [RecordedIdentity(r.account_id, r.connection_id, r.slug, r.subject,
                                     dict(r.claims))
                    for r in rows if isinstance(r.claims, Mapping)]
        return sorted(out, key=lambda r: (r.connection_id, r.subject))

    def apply_grants(self, changes: Sequence[tuple[str, Changes, str]],
                     now: datetime) -> None:
        """Write grant-only changes ((account id, changes, granted_by)) of a batch, as
        ``AccountRepository.apply`` writes them one account at a time (revoked grants deleted,
        withdrawn requests closed, new grants and requests inserted, the account's version
        bumped), in one statement per kind."""
        changed = [(a, c, by) for a, c, by in changes if not c.is_empty]
        if not changed:
            return
        g, p = t.role_grant.c, t.pending_grant.c
        revoked = [(a, r.role, r.source) for a, c, _ in changed for r in c.grants_revoked]
        for i in range(0, len(revoked), _BATCH):
            self._c.execute(t.role_grant.delete().where(
                sa.tuple_(g.account_id, g.role, g.source).in_(revoked[i:i + _BATCH])))
        for a, c, by in changed:  # rare: one statement per account that has any
            if c.pending_withdrawn:
                self._c.execute(t.pending_grant.update().where(
                    p.account_id == a, p.status == "pending",
                    sa.tuple_(p.role, p.source).in_(
                        [(w.role, w.source) for w in c.pending_withdrawn]))
                    .values(status="withdrawn", decided_at=now, decided_by=by,
                            reason="rule no longer matches"))
        added = [{"account_id": a, "role": r.role, "source": r.source, "granted_at": now,
                  "granted_by": by, "expires_at": r.expires_at}
                 for a, c, by in changed for r in sorted(c.grants_added)]
        if added:
            self._c.execute(t.role_grant.insert(), added)
        asked = [{"account_id": a, "role": r.role, "source": r.source, "status": "pending",
                  "requested_at": now} for a, c, _ in changed for r in sorted(c.pending_added)]
        if asked:
            self._c.execute(t.pending_grant.insert(), asked)
        ids = [a for a, _, _ in changed]
        for i in range(0, len(ids), _BATCH):
            self._c.execute(t.account.update().where(t.account.c.id.in_(ids[i:i + _BATCH]))
                            .values(updated_at=now, version=t.account.c.version + 1))

    # -- the queue ------------------------------------------------------------------------------

    def enqueue(self, tenant_id: int, account_ids: Sequence[str], *, actor: str,
                request_id: str | None, now: datetime) -> None:
        rows = [{"tenant_id": tenant_id, "account_id": a, "actor": actor,
                 "request_id": request_id, "created_at": now}
                for a in dict.fromkeys(account_ids)]
        for i in range(0, len(rows), _BATCH):
            self._c.execute(_Q.insert(), rows[i:i + _BATCH])

    def enqueue_members(self, tenant_id: int, group_id: str, *, actor: str,
                        request_id: str | None, now: datetime) -> int:
        """Queue every member of the group (one INSERT ... SELECT); how many."""
        chosen = sa.select(sa.literal(tenant_id), _M.c.account_id, sa.literal(actor),
                           sa.literal(request_id, sa.String), sa.literal(now, t.TS)
                           ).where(_M.c.group_id == group_id)
        result = self._c.execute(_Q.insert().from_select(
            ["tenant_id", "account_id", "actor", "request_id", "created_at"], chosen))
        return int(result.rowcount or 0)

    def claim(self, limit: int) -> list[QueuedReevaluation]:
        """The oldest ``limit`` queued rows, locked until this transaction ends: on
        PostgreSQL rows another node's batch holds are skipped (``SKIP LOCKED``), so nodes
        share the queue; a batch that crashes releases its rows by its rollback."""
        query = (sa.select(_Q.c.id, _Q.c.account_id, _Q.c.actor, _Q.c.request_id)
                 .order_by(_Q.c.id).limit(limit))
        if self._c.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        return [QueuedReevaluation(r.id, r.account_id, r.actor, r.request_id)
                for r in self._c.execute(query)]

    def done(self, ids: Sequence[int]) -> None:
        for i in range(0, len(ids), _BATCH):
            self._c.execute(_Q.delete().where(_Q.c.id.in_(ids[i:i + _BATCH])))

    def backlog(self) -> int:
        return int(self._c.execute(sa.select(sa.func.count()).select_from(_Q)).scalar_one())
