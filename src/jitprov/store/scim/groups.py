"""SCIM groups and their members: read, queried by filter, created, replaced, deleted, and
membership changes that cost the same whatever the group's size. ``uow.scim.groups``.

A group's displayName is unique per tenant, case-insensitively (Entra and Okta match groups
by it; a retried POST must not create a second group): :class:`Uniqueness`.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from jitprov.core.errors import NotFound
from jitprov.store import tables as t
from jitprov.store._common import utc
from jitprov.store.scim.errors import Uniqueness, UnknownMembers, VersionMismatch
from jitprov.store.scim.filters import (
    Multi,
    Translator,
    group_attributes,
    member_display,
    member_element,
    no_attribute,
    prepare,
)
from jitprov.store.scim.paging import order_by, page, paginate, sort_key, tiebreak
from jitprov.store.scim.records import FilterNode, GroupMember, ScimGroup

A = t.account
G = t.scim_group
M = t.scim_group_member
_IS_USER = A.c.kind == "user"
_E = sa.ColumnElement[Any]
_GROUP_COLUMNS = (G.c.id, G.c.tenant_id, G.c.display_name, G.c.external_id, G.c.version,
                  G.c.created_at, G.c.updated_at)
#: member ids per statement (SQLite allows 32,766 bound values; PostgreSQL 65,535)
_BATCH = 1000


def _group(row: Any, members: tuple[GroupMember, ...] | None = None) -> ScimGroup:
    return ScimGroup(id=row.id, tenant_id=row.tenant_id, display_name=row.display_name,
                     external_id=row.external_id, version=row.version,
                     created_at=utc(row.created_at), updated_at=utc(row.updated_at),
                     members=members)


def _batches(ids: Sequence[str]) -> list[list[str]]:
    unique = list(dict.fromkeys(ids))
    return [unique[i:i + _BATCH] for i in range(0, len(unique), _BATCH)]


class ScimGroupRepository:
    """SCIM groups and their members."""

    def __init__(self, conn: sa.Connection) -> None:
        self._c = conn

    def get_group(self, tenant_id: int, group_id: str, *,
                  with_members: bool = True) -> ScimGroup | None:
        """The group, or None. ``with_members=False`` reads no member row."""
        row = self._c.execute(sa.select(*_GROUP_COLUMNS).where(
            G.c.id == group_id, G.c.tenant_id == tenant_id)).first()
        if row is None:
            return None
        return _group(row, tuple(self.members(group_id)) if with_members else None)

    def query_groups(self, tenant_id: int, filter_ast: FilterNode | None, *,
                     sort_by: str | None = None, descending: bool = False,
                     start_index: int = 1, count: int = 100,
                     with_members: bool = False) -> tuple[int, list[ScimGroup]]:
        """As ``query_users``, for groups; members loaded only ``with_members``. Raises
        InvalidFilter."""
        dialect = prepare(self._c)
        resolve = group_attributes(dialect)
        where = [G.c.tenant_id == tenant_id]
        if filter_ast is not None:
            where.append(Translator(dialect, resolve).where(filter_ast))
        key = None if sort_by is None else sort_key(sort_by, resolve, None, dialect)
        order = order_by(key, descending, tiebreak(G.c.id, filtered=filter_ast is not None,
                                                     dialect=dialect))
        offset, limit = page(start_index, count)

        def fetch(order_by: list[_E], skip: int, take: int) -> list[Any]:
            return list(self._c.execute(sa.select(*_GROUP_COLUMNS).where(*where)
                                        .order_by(*order_by).limit(take).offset(skip)))

        def count_groups() -> int:
            return int(self._c.execute(sa.select(sa.func.count()).select_from(G)
                                       .where(*where)).scalar_one())

        total, rows = paginate(count_groups, fetch, order, offset, limit)
        members: dict[str, list[GroupMember]] = {r.id: [] for r in rows}
        if with_members and rows:
            for m in self._c.execute(self._members_query().where(M.c.group_id.in_(members))
                                     .order_by(M.c.group_id, M.c.account_id)):
                members[m.group_id].append(GroupMember(m.account_id, m.display))
        return total, [_group(r, tuple(members[r.id]) if with_members else None)
                       for r in rows]

    def _check_display_name(self, tenant_id: int, display_name: str,
                            group_id: str | None = None) -> None:
        taken = self._c.execute(sa.select(G.c.id).where(
            G.c.tenant_id == tenant_id,
            G.c.display_name_lower == display_name.lower())).scalar()
        if taken is not None and taken != group_id:
            raise Uniqueness(f"displayName {display_name!r} is already taken")

    def create_group(self, tenant_id: int, *, display_name: str, external_id: str | None,
                     now: datetime) -> ScimGroup:
        """Insert an empty group (version 1). Raises Uniqueness (displayName taken)."""
        self._check_display_name(tenant_id, display_name)
        group_id = str(uuid.uuid4())
        self._c.execute(G.insert(), {
            "id": group_id, "tenant_id": tenant_id, "display_name": display_name,
            "display_name_lower": display_name.lower(), "external_id": external_id,
            "version": 1, "created_at": now, "updated_at": now})
        return ScimGroup(id=group_id, tenant_id=tenant_id, display_name=display_name,
                         external_id=external_id, version=1, created_at=now, updated_at=now,
                         members=())

    def replace_group(self, group_id: str, *, expected_version: int | None, display_name: str,
                      external_id: str | None, now: datetime) -> ScimGroup:
        """Set displayName and externalId and bump ``version`` (members untouched, returned as
        None). Raises NotFound, VersionMismatch, Uniqueness."""
        current = self._c.execute(sa.select(G.c.tenant_id, G.c.version)
                                  .where(G.c.id == group_id)).first()
        if current is None:
            raise NotFound(f"no group {group_id!r}")
        if expected_version is not None and current.version != expected_version:
            raise VersionMismatch(f"group {group_id!r} is at version {current.version}, "
                                  f"not {expected_version}")
        self._check_display_name(current.tenant_id, display_name, group_id)
        row = self._c.execute(
            G.update().where(G.c.id == group_id, G.c.version == current.version)
            .values(display_name=display_name, display_name_lower=display_name.lower(),
                    external_id=external_id, updated_at=now, version=G.c.version + 1)
            .returning(*_GROUP_COLUMNS)).first()
        if row is None:
            raise VersionMismatch(f"group {group_id!r} changed concurrently")
        return _group(row)

    def touch_group(self, group_id: str, now: datetime) -> int:
        """Bump ``version`` and ``updated_at`` (after a membership change); the new version.
        Raises NotFound."""
        version = self._c.execute(
            G.update().where(G.c.id == group_id)
            .values(updated_at=now, version=G.c.version + 1).returning(G.c.version)).scalar()
        if version is None:
            raise NotFound(f"no group {group_id!r}")
        return int(version)

    def delete_group(self, group_id: str) -> None:
        """Delete the group and its memberships. Raises NotFound."""
        self._c.execute(M.delete().where(M.c.group_id == group_id))
        if not self._c.execute(G.delete().where(G.c.id == group_id)).rowcount:
            raise NotFound(f"no group {group_id!r}")

    def _new_members(self, group_id: str, ids: Sequence[str]) -> list[str]:
        """Of ``ids`` (one batch), those not yet members; raises UnknownMembers for ids that
        are not users of the group's tenant. Reads only the batch's rows (primary keys)."""
        tenant = sa.select(G.c.tenant_id).where(G.c.id == group_id).scalar_subquery()
        rows = self._c.execute(
            sa.select(A.c.id, M.c.account_id.label("member"))
            .outerjoin(M, sa.and_(M.c.group_id == group_id, M.c.account_id == A.c.id))
            .where(A.c.id.in_(ids), A.c.tenant_id == tenant, _IS_USER,
                   A.c.scim_deleted_at.is_(None))).all()
        known = {r.id for r in rows}
        unknown = [i for i in ids if i not in known]
        if unknown:
            raise UnknownMembers(unknown)
        return [r.id for r in rows if r.member is None]

    def _insert_members(self, group_id: str, ids: Sequence[str], now: datetime) -> list[str]:
        if not ids:
            return []
        insert = (postgresql.insert if self._c.dialect.name == "postgresql" else sqlite.insert)
        stmt = (insert(M).values([{"group_id": group_id, "account_id": i, "created_at": now}
                                  for i in ids])
                .on_conflict_do_nothing(index_elements=["group_id", "account_id"])
                .returning(M.c.account_id))
        return list(self._c.execute(stmt).scalars())

    def add_members(self, group_id: str, account_ids: Sequence[str], *,
                    now: datetime) -> list[str]:
        """Add users to the group; the ids newly added (already members are skipped). Costs
        the same whatever the group's size: per batch of 1,000 ids, one read of those ids and
        one ``INSERT ... ON CONFLICT DO NOTHING``. Raises UnknownMembers when an id is not a
        user of the group's tenant (in the first batch that holds one; earlier batches stay
        written until the transaction rolls back)."""
        added: list[str] = []
        for batch in _batches(account_ids):
            added += self._insert_members(group_id, self._new_members(group_id, batch), now)
        return added

    def remove_members(self, group_id: str, account_ids: Sequence[str]) -> list[str]:
        """Remove these members; the ids actually removed."""
        removed: list[str] = []
        for batch in _batches(account_ids):
            removed += self._c.execute(
                M.delete().where(M.c.group_id == group_id, M.c.account_id.in_(batch))
                .returning(M.c.account_id)).scalars()
        return removed

    def remove_members_where(self, group_id: str, filter_ast: FilterNode) -> list[str]:
        """Remove the members a PATCH value filter selects (``members[value eq "x"]``: its
        paths are ``value``, ``display`` and ``type``); the ids removed. Raises
        InvalidFilter."""
        dialect = prepare(self._c)
        element = member_element(dialect)
        multi = Multi("members", lambda cond: cond(element), sa.true(),
                       {"value": "value", "display": "display", "type": "type"})
        translator = Translator(dialect, no_attribute)
        cond = translator.node(
            filter_ast, False, lambda path: translator.sub(multi, element, path))
        chosen = (sa.select(M.c.account_id).join(A, A.c.id == M.c.account_id)
                  .where(M.c.group_id == group_id, cond))
        return list(self._c.execute(
            M.delete().where(M.c.group_id == group_id, M.c.account_id.in_(chosen))
            .returning(M.c.account_id)).scalars())

    def replace_members(self, group_id: str, account_ids: Sequence[str], *,
                        now: datetime) -> tuple[list[str], list[str]]:
        """Make the members exactly ``account_ids``: (added, removed). Reads the current
        member ids (a PUT names them all anyway). Raises UnknownMembers."""
        wanted = list(dict.fromkeys(account_ids))
        current = set(self._c.execute(sa.select(M.c.account_id)
                                      .where(M.c.group_id == group_id)).scalars())
        keep = set(wanted)
        removed = self.remove_members(group_id, sorted(current - keep))
        added = self.add_members(group_id, [i for i in wanted if i not in current], now=now)
        return added, removed

    @staticmethod
    def _members_query() -> sa.Select[Any]:
        dialect_free = sa.func.coalesce(A.c.user_name, A.c.email)
        return (sa.select(M.c.group_id, M.c.account_id, dialect_free.label("display"))
                .join(A, A.c.id == M.c.account_id))

    def members(self, group_id: str, *, limit: int | None = None,
                offset: int = 0) -> list[GroupMember]:
        """Members ordered by account id; ``display`` is the account's displayName, else
        userName, else email."""
        display = member_display(prepare(self._c))
        query = (sa.select(M.c.account_id, display.label("display"))
                 .join(A, A.c.id == M.c.account_id).where(M.c.group_id == group_id)
                 .order_by(M.c.account_id).offset(offset))
        if limit is not None:
            query = query.limit(limit)
        return [GroupMember(r.account_id, r.display) for r in self._c.execute(query)]

    def count_members(self, group_id: str) -> int:
        return int(self._c.execute(sa.select(sa.func.count()).select_from(M)
                                   .where(M.c.group_id == group_id)).scalar_one())

    def groups_of_many(self, account_ids: Sequence[str]) -> dict[str, list[tuple[str, str]]]:
        """``groups_of`` for a page of users in one statement: account id -> its groups (every
        id a key, an empty list for no group)."""
        out: dict[str, list[tuple[str, str]]] = {i: [] for i in account_ids}
        for batch in _batches(account_ids):
            rows = self._c.execute(
                sa.select(M.c.account_id, G.c.id, G.c.display_name)
                .join(M, M.c.group_id == G.c.id).where(M.c.account_id.in_(batch))
                .order_by(M.c.account_id, G.c.display_name_lower, G.c.id))
            for r in rows:
                out[r.account_id].append((r.id, r.display_name))
        return out

    def groups_of(self, account_id: str) -> list[tuple[str, str]]:
        """(group id, displayName) of the groups the account is a member of, by displayName."""
        rows = self._c.execute(
            sa.select(G.c.id, G.c.display_name).join(M, M.c.group_id == G.c.id)
            .where(M.c.account_id == account_id).order_by(G.c.display_name_lower, G.c.id))
        return [(r.id, r.display_name) for r in rows]
