"""SCIM users: the tenant's ``account`` rows of kind ``user`` (the same rows JIT login
writes), read, queried by filter, created, replaced and deleted. ``uow.scim.users``.

An account JIT created has no ``user_name``: wherever SCIM reads or filters userName it shows
its ``email`` instead (:attr:`ScimUser.effective_user_name`), so an IdP's
``userName eq "alice@x.org"`` before its POST finds that account and the POST gets 409
uniqueness. Both lookups use an index: (tenant_id, user_name_lower) and
(tenant_id, email_lower).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from jitprov.core.errors import NotFound
from jitprov.store import tables as t
from jitprov.store._common import opt_utc, utc
from jitprov.store.fast import Prepared
from jitprov.store.scim.errors import Uniqueness, VersionMismatch
from jitprov.store.scim.filter_cost import drives_by_ids
from jitprov.store.scim.filters import (
    NO_USER_NAME,
    Translator,
    prepare,
    user_attributes,
)
from jitprov.store.scim.paging import order_by, page, paginate, sort_key, tiebreak
from jitprov.store.scim.records import FilterNode, ScimUser

A = t.account
_E = sa.ColumnElement[Any]
_USER_COLUMNS = (A.c.id, A.c.tenant_id, A.c.user_name, A.c.external_id, A.c.status, A.c.email,
                 A.c.scim, A.c.profile, A.c.provisioned_by, A.c.version, A.c.created_at,
                 A.c.updated_at, A.c.last_login_at, A.c.deactivated_at)
_IS_USER = A.c.kind == "user"
# an account deleted for SCIM (``scim_delete: deactivate``) is no SCIM user any more: every
# read here leaves it out (the listing's index, ix_account_tenant_kind_id, is partial on it)
_LIVE = A.c.scim_deleted_at.is_(None)
# the same test, hidden from the planner: next to an email or userName lookup, SQLite (no
# statistics) would otherwise walk (tenant_id, kind, id), every user of the tenant
_IS_USER_UNINDEXED = A.c.kind.concat("") == "user"
_B = sa.bindparam
_GET_USER = sa.select(*_USER_COLUMNS).where(A.c.id == _B("account_id"),
                                            A.c.tenant_id == _B("tenant_id"), _IS_USER, _LIVE)
_BY_USER_NAME = (
    # an IN over two index lookups (as the userName filter): an OR of the two would make
    # SQLite walk every account of the tenant
    sa.select(*_USER_COLUMNS)
    .where(A.c.id.in_(sa.union_all(
        sa.select(A.c.id).where(A.c.tenant_id == _B("tenant_id"),
                                A.c.user_name_lower == _B("lowered")),
        sa.select(A.c.id).where(A.c.tenant_id == _B("tenant_id"), NO_USER_NAME,
                                A.c.email_lower == _B("lowered")))),
           _IS_USER_UNINDEXED, _LIVE)
    .order_by(A.c.user_name_lower.is_(None), A.c.id).limit(1))


def _user_name_taken(excluding: bool) -> Prepared:
    """Ids of the tenant's accounts whose effective userName is ``lowered``: a stored userName,
    or the email of an account without one (``excluding``: other than ``account_id``)."""
    taken = sa.union_all(
        sa.select(A.c.id).where(A.c.tenant_id == _B("tenant_id"),
                                A.c.user_name_lower == _B("lowered")),
        sa.select(A.c.id).where(A.c.tenant_id == _B("tenant_id"), NO_USER_NAME,
                                A.c.email_lower == _B("lowered"), _IS_USER_UNINDEXED, _LIVE)
    ).subquery()
    query = sa.select(taken.c.id)
    return Prepared((query.where(taken.c.id != _B("account_id")) if excluding else query)
                    .limit(1))


_USER_NAME_TAKEN = {False: _user_name_taken(False), True: _user_name_taken(True)}
_INSERT_USER = Prepared(A.insert().values({c.name: _B(c.name) for c in A.columns}))


def _user(row: Any) -> ScimUser:
    return ScimUser(
        id=row.id, tenant_id=row.tenant_id, user_name=row.user_name,
        external_id=row.external_id, status=row.status, email=row.email,
        scim=None if row.scim is None else dict(row.scim), profile=dict(row.profile),
        provisioned_by=row.provisioned_by, version=row.version, created_at=utc(row.created_at),
        updated_at=utc(row.updated_at), last_login_at=opt_utc(row.last_login_at),
        deactivated_at=opt_utc(row.deactivated_at))


class ScimUserRepository:
    """SCIM users: the tenant's accounts of kind ``user``."""

    def __init__(self, conn: sa.Connection) -> None:
        self._c = conn

    def get_user(self, tenant_id: int, account_id: str) -> ScimUser | None:
        """The user, or None (also for an account of another tenant)."""
        row = self._c.execute(_GET_USER, {"account_id": account_id,
                                          "tenant_id": tenant_id}).first()
        return None if row is None else _user(row)

    def find_by_user_name(self, tenant_id: int, user_name: str) -> ScimUser | None:
        """The user whose effective userName is ``user_name``, case-insensitively (a stored
        userName wins over a JIT account's email)."""
        row = self._c.execute(_BY_USER_NAME, {"tenant_id": tenant_id,
                                              "lowered": user_name.lower()}).first()
        return None if row is None else _user(row)

    def query_users(self, tenant_id: int, filter_ast: FilterNode | None, *,
                    sort_by: str | None = None, descending: bool = False,
                    start_index: int = 1, count: int = 100) -> tuple[int, list[ScimUser]]:
        """(totalResults, the page): the users matching ``filter_ast``, ordered by ``sort_by``
        (an attribute path such as ``userName``, ``meta.lastModified``, ``name.familyName``;
        None: by id) then by id, from the 1-based ``start_index``, at most ``count`` (0: only
        the total). Raises InvalidFilter for an attribute or comparison it cannot translate."""
        dialect = prepare(self._c)
        resolve = user_attributes(dialect, tenant_id)
        where = [A.c.tenant_id == tenant_id, _IS_USER, _LIVE]
        if filter_ast is not None:
            if dialect == "sqlite":
                # SQLite, without statistics, would take (tenant_id, kind, id) over the
                # filter's own index (externalId eq: (tenant_id, external_id)): hide kind;
                # and a userName eq or a groups term (an IN over ids found by index) is the
                # best start of all: hide tenant_id too
                where[1] = A.c.kind.concat("") == "user"
                if drives_by_ids(filter_ast):
                    where[0] = A.c.tenant_id + 0 == tenant_id
            where.append(Translator(dialect, resolve).where(filter_ast))
        key = None if sort_by is None else sort_key(sort_by, resolve, A.c.email_lower, dialect)
        order = order_by(key, descending, tiebreak(A.c.id, filtered=filter_ast is not None,
                                                     dialect=dialect))
        offset, limit = page(start_index, count)

        def fetch(order_by: list[_E], skip: int, take: int) -> list[Any]:
            # the page's ids first (an index-only scan when nothing else is needed), then
            # their rows: OFFSET skips index entries, not table rows
            ids = (sa.select(A.c.id).where(*where).order_by(*order_by).limit(take)
                   .offset(skip).subquery("page"))
            return list(self._c.execute(sa.select(*_USER_COLUMNS)
                                        .join(ids, ids.c.id == A.c.id).order_by(*order_by)))

        def total() -> int:
            return int(self._c.execute(sa.select(sa.func.count()).select_from(A)
                                       .where(*where)).scalar_one())

        count_, rows = paginate(total, fetch, order, offset, limit)
        return count_, [_user(r) for r in rows]

    def _check_user_name(self, tenant_id: int, user_name: str,
                         account_id: str | None = None) -> None:
        """Raises Uniqueness if another user of the tenant has ``user_name`` as its effective
        userName (a stored userName, or the email of an account without one)."""
        clash = _USER_NAME_TAKEN[bool(account_id)].first(self._c, {
            "tenant_id": tenant_id, "lowered": user_name.lower(), "account_id": account_id})
        if clash is not None:
            raise Uniqueness(f"userName {user_name!r} is already taken")

    def create_user(self, tenant_id: int, *, user_name: str, external_id: str | None,
                    external_id_connection_id: int | None, active: bool, email: str | None,
                    scim: Mapping[str, object], profile: Mapping[str, object],
                    now: datetime) -> ScimUser:
        """Insert an account (provisioned_by ``scim``, kind ``user``, version 1). Raises
        Uniqueness when an account of the tenant has this effective userName."""
        self._check_user_name(tenant_id, user_name)
        account_id = str(uuid.uuid4())
        status = "active" if active else "suspended"
        _INSERT_USER.rowcount(self._c, {
            "id": account_id, "tenant_id": tenant_id, "status": status, "kind": "user",
            "provisioned_by": "scim", "external_id": external_id,
            "external_id_connection_id": external_id_connection_id, "email": email,
            "email_lower": email.lower() if email else None, "profile": dict(profile),
            "profile_sources": {k: "scim" for k in profile}, "idp_groups": [],
            "created_at": now, "updated_at": now, "last_login_at": None,
            "deactivated_at": None, "version": 1, "user_name": user_name,
            "user_name_lower": user_name.lower(), "scim": dict(scim)})
        return ScimUser(
            id=account_id, tenant_id=tenant_id, user_name=user_name, external_id=external_id,
            status=status, email=email, scim=dict(scim), profile=dict(profile),
            provisioned_by="scim", version=1, created_at=now, updated_at=now,
            last_login_at=None, deactivated_at=None)

    def replace_user(self, account_id: str, *, expected_version: int | None, user_name: str,
                     external_id: str | None, email: str | None, scim: Mapping[str, object],
                     profile: Mapping[str, object], now: datetime,
                     status: str | None = None,
                     writer_connection_id: int | None = None) -> ScimUser:
        """Overwrite the SCIM-held fields and bump ``version``. ``status`` None leaves it
        as is (else as ``AccountRepository.set_status``: ``deactivated_at`` follows). Raises
        NotFound, VersionMismatch (``expected_version`` given and not the stored one), Uniqueness.
        ``profile`` replaces the profile; its sources become ``scim``. A changed ``external_id``
        names subjects of the writer's connection (``writer_connection_id``, None for a client
        bound to none): no client can point another connection's logins at an account."""
        current = self._c.execute(
            sa.select(A.c.tenant_id, A.c.version, A.c.status, A.c.profile_sources,
                      A.c.external_id)
            .where(A.c.id == account_id, _IS_USER, _LIVE)).first()
        if current is None:
            raise NotFound(f"no user {account_id!r}")
        if expected_version is not None and current.version != expected_version:
            raise VersionMismatch(f"user {account_id!r} is at version {current.version}, "
                                  f"not {expected_version}")
        self._check_user_name(current.tenant_id, user_name, account_id)
        values: dict[str, object] = {
            "user_name": user_name, "user_name_lower": user_name.lower(),
            "external_id": external_id, "email": email,
            "email_lower": email.lower() if email else None, "scim": dict(scim),
            "profile": dict(profile), "profile_sources": {k: "scim" for k in profile},
            "updated_at": now, "version": A.c.version + 1}
        if status is not None and status != current.status:
            values.update(status=status, deactivated_at=now if status == "deactivated" else None)
        if external_id != current.external_id:
            values["external_id_connection_id"] = writer_connection_id
        row = self._c.execute(
            A.update().where(A.c.id == account_id, A.c.version == current.version)
            .values(**values).returning(*_USER_COLUMNS)).first()
        if row is None:  # a concurrent write between our read and this update
            raise VersionMismatch(f"user {account_id!r} changed concurrently")
        return _user(row)

    def delete_user(self, account_id: str) -> None:
        """Delete the account (its identities, sessions, grants and memberships cascade).
        Raises NotFound."""
        result = self._c.execute(A.delete().where(A.c.id == account_id, _IS_USER))
        if not result.rowcount:
            raise NotFound(f"no user {account_id!r}")

    def mark_deleted(self, account_id: str, now: datetime) -> None:
        """Delete the user for SCIM and keep the account: ``scim_deleted_at`` set, its
        userName released (``user_name`` stays for the record, ``user_name_lower``, the
        uniqueness key, is cleared), ``version`` bumped. Raises NotFound."""
        result = self._c.execute(
            A.update().where(A.c.id == account_id, _IS_USER, _LIVE)
            .values(scim_deleted_at=now, user_name_lower=None, updated_at=now,
                    version=A.c.version + 1))
        if not result.rowcount:
            raise NotFound(f"no user {account_id!r}")
