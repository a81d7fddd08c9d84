"""Pending links: a first login whose email belongs to an existing account, under
``linking.by_email: pending``, waits here for an admin. ``uow.identities.links``.

A link is ``pending`` until an admin approves it (``approved``: the identity is then bound to
the account, as a verified-email link binds it) or refuses it (``refused``). A refusal holds:
the identity's logins are refused until an admin clears it (``cleared``), after which its next
login asks again. The unique partial index on (connection, subject) over ``pending`` and
``refused`` rows keeps one open or refused link per identity; decided rows stay as history.

Same contract as every repository here: narrow methods over one open transaction, copies out,
``NotFound``/``Conflict`` for what is missing or already decided.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from jitprov.core.errors import Conflict, NotFound
from jitprov.store import tables as t
from jitprov.store._common import opt_utc, utc
from jitprov.store.fast import Prepared

_L = t.pending_link.c
_A = t.account.c
_SELECT = (sa.select(t.pending_link, t.connection.c.slug.label("connection_slug"),
                     _A.email.label("account_email"), _A.status.label("account_status"),
                     _A.kind.label("account_kind"))
           .join(t.connection, t.connection.c.id == _L.connection_id)
           .join(t.account, _A.id == _L.account_id))
# the first login of an identity asks this: through the partial unique index (its predicate
# spelled as the index's, so SQLite sees the index applies)
_REFUSED = Prepared(sa.select(_L.id, _L.account_id)
            .where(_L.connection_id == sa.bindparam("connection_id"),
                   _L.subject == sa.bindparam("subject"),
                   sa.text("pending_link.status IN ('pending', 'refused')"),
                   _L.status == sa.literal_column("'refused'")))

#: what each decision moves a link from
DECIDABLE = {"approved": "pending", "refused": "pending", "cleared": "refused"}


@dataclass(frozen=True, slots=True)
class PendingLinkRecord:
    """A link an identity asked for, with the account it would join and who decided it."""

    id: int
    tenant_id: int
    connection_id: int
    connection: str
    subject: str
    issuer: str
    account_id: str
    email: str | None  # the login's (verified) email, which the account had when it asked
    account_email: str | None
    account_status: str
    account_kind: str
    claims: Mapping[str, Any]  # the login's, redacted as recorded claims are
    status: str
    created_at: datetime
    decided_at: datetime | None
    decided_by: str | None
    reason: str | None


def _record(row: Any) -> PendingLinkRecord:
    return PendingLinkRecord(
        id=row.id, tenant_id=row.tenant_id, connection_id=row.connection_id,
        connection=row.connection_slug, subject=row.subject, issuer=row.issuer,
        account_id=row.account_id, email=row.email, account_email=row.account_email,
        account_status=row.account_status, account_kind=row.account_kind,
        claims=dict(row.claims) if isinstance(row.claims, Mapping) else {},
        status=row.status, created_at=utc(row.created_at), decided_at=opt_utc(row.decided_at),
        decided_by=row.decided_by, reason=row.reason)


class PendingLinkRepository:
    def __init__(self, conn: sa.Connection) -> None:
        self._c = conn

    def queue(self, *, tenant_id: int, connection_id: int, subject: str, issuer: str,
              account_id: str, email: str | None, claims: Mapping[str, object],
              now: datetime) -> int | None:
        """Queue a pending link; its id, or None when one is already open (or refused) for
        this identity."""
        try:
            with self._c.begin_nested():
                new_id = self._c.execute(t.pending_link.insert().values(
                    tenant_id=tenant_id, connection_id=connection_id, subject=subject,
                    issuer=issuer, account_id=account_id, email=email, claims=dict(claims),
                    status="pending", created_at=now).returning(_L.id)).scalar_one()
        except sa.exc.IntegrityError:
            return None
        return int(new_id)

    def of_tenant(self, tenant_id: int, *, statuses: tuple[str, ...] = ("pending",)
             ) -> list[PendingLinkRecord]:
        """The tenant's links in these statuses, oldest first."""
        rows = self._c.execute(_SELECT.where(_L.tenant_id == tenant_id,
                                             _L.status.in_(statuses)).order_by(_L.id))
        return [_record(r) for r in rows]

    def get(self, link_id: int) -> PendingLinkRecord:
        """Raises NotFound."""
        row = self._c.execute(_SELECT.where(_L.id == link_id)).first()
        if row is None:
            raise NotFound(f"no pending link {link_id}")
        return _record(row)

    def refused(self, connection_id: int, subject: str) -> tuple[int, str] | None:
        """(link id, account id) of the identity's refused link, if one holds."""
        row = _REFUSED.first(self._c, {"connection_id": connection_id, "subject": subject})
        return None if row is None else (int(row.id), str(row.account_id))

    def purge_claims(self, tenant_id: int, before: datetime) -> int:
        """Clear the claims of the tenant's links still waiting that were asked for before
        ``before`` (the claims' retention holds for them as for recorded claims); returns how
        many were cleared. The links stay, decidable."""
        result = self._c.execute(
            t.pending_link.update()
            .where(_L.tenant_id == tenant_id, _L.status == "pending", _L.created_at < before,
                   sa.cast(_L.claims, sa.Text) != "{}")
            .values(claims={}))
        return int(result.rowcount or 0)

    def decide(self, link_id: int, status: str, *, decided_by: str, reason: str,
               now: datetime) -> None:
        """Move a link to ``approved``/``refused`` (from pending) or ``cleared`` (from
        refused), keeping no claims once decided (an approved link's claims live on as the
        identity's recorded claims). Raises Conflict if it is not in the state the decision
        needs: two admins cannot both act on one link."""
        result = self._c.execute(
            t.pending_link.update().where(_L.id == link_id, _L.status == DECIDABLE[status])
            .values(status=status, decided_at=now, decided_by=decided_by, reason=reason,
                    claims={}))
        if not result.rowcount:
            raise Conflict(f"pending link {link_id} is not {DECIDABLE[status]}")
