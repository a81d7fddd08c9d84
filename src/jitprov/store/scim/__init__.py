"""The SCIM store (RFC 7643/7644): users (the same ``account`` rows JIT login writes), groups
and their members, SCIM client tokens; and the translation of a filter AST to SQL.

``uow.scim`` is a :class:`ScimStore` with three narrow repositories over the unit of work's
transaction: ``uow.scim.users``, ``uow.scim.groups``, ``uow.scim.tokens``. Their writes are
plain statements: the service composes them with ``uow.accounts.set_status``,
``uow.sessions.revoke_all``, ``uow.audit`` and ``uow.outbox`` in one transaction.

- ``errors.py``: what the service answers with a ``scimType``;
- ``records.py``: the frozen copies handed out, the schema URNs, the filter AST's shape;
- ``filters.py``: filter to SQL; ``filter_cost.py``: its cost budget and the AST's shapes;
  ``paging.py``: ``sortBy``, ordering and pages;
- ``users.py``, ``groups.py``, ``tokens.py``: the three repositories.

Filters are translated to one SQL WHERE clause (never evaluated in Python over rows). The AST is
the one ``jitprov.protocols.scim.filter`` builds, read structurally through its ``kind`` field
(``store/`` and ``protocols/`` do not import each other): see :class:`FilterNode`.

Schema decisions (see ``tables.py``):

- **userName of a JIT account.** JIT login does not set ``user_name``; wherever SCIM reads or
  filters userName, an account with no ``user_name`` shows its ``email`` instead
  (:attr:`ScimUser.effective_user_name`).
- **emails of a JIT account.** An account SCIM never wrote (``scim`` is NULL) has one email:
  ``[{"value": <email>, "primary": true}]``. Once SCIM wrote it, its emails are ``scim["emails"]``.
- **displayName of a group is unique per tenant**, case-insensitively: :class:`Uniqueness`.
- Only accounts of kind ``user`` are SCIM users; admin, break-glass and service accounts are
  invisible here.

The ``scim`` JSON of an account holds the SCIM attributes that have no column, in the canonical
form (RFC 7643 attribute names and casing; the enterprise extension under its URN key), without
``id``, ``userName``, ``externalId``, ``active``, ``meta``, ``groups``, ``schemas``, ``password``.
"""

from __future__ import annotations

import sqlalchemy as sa

from jitprov.store.scim.errors import InvalidFilter, Uniqueness, UnknownMembers, VersionMismatch
from jitprov.store.scim.groups import ScimGroupRepository
from jitprov.store.scim.records import (
    ENTERPRISE_SCHEMA,
    GROUP_SCHEMA,
    USER_SCHEMA,
    ActiveScimToken,
    AttrPathNode,
    FilterNode,
    GroupMember,
    ScimGroup,
    ScimTokenRecord,
    ScimUser,
)
from jitprov.store.scim.tokens import ScimTokenRepository
from jitprov.store.scim.users import ScimUserRepository

__all__ = [
    "ENTERPRISE_SCHEMA",
    "GROUP_SCHEMA",
    "USER_SCHEMA",
    "ActiveScimToken",
    "AttrPathNode",
    "FilterNode",
    "GroupMember",
    "InvalidFilter",
    "ScimGroup",
    "ScimGroupRepository",
    "ScimStore",
    "ScimTokenRecord",
    "ScimTokenRepository",
    "ScimUser",
    "ScimUserRepository",
    "Uniqueness",
    "UnknownMembers",
    "VersionMismatch",
]


class ScimStore:
    """``uow.scim``: the SCIM repositories over one transaction."""

    def __init__(self, conn: sa.Connection) -> None:
        self.users = ScimUserRepository(conn)
        self.groups = ScimGroupRepository(conn)
        self.tokens = ScimTokenRepository(conn)
