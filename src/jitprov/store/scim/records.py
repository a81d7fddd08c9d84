"""What the SCIM store hands out: frozen copies of users, groups and tokens; the schema URNs;
and the shape of the filter AST it translates, read structurally (``store/`` and
``protocols/`` do not import each other; ``jitprov.protocols.scim.filter`` builds the AST).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

ENTERPRISE_SCHEMA = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"


class AttrPathNode(Protocol):
    @property
    def attribute(self) -> str: ...
    @property
    def sub_attribute(self) -> str | None: ...
    @property
    def schema(self) -> str | None: ...


class FilterNode(Protocol):
    """Any node of ``jitprov.protocols.scim.filter.Filter``; ``kind`` names its shape:
    compare (path, op, value), present (path), and/or (left, right), not (operand),
    value_path (path, filter)."""

    @property
    def kind(self) -> str: ...



@dataclass(frozen=True, slots=True)
class ScimUser:
    """An account as SCIM sees it (a copy). ``user_name`` is the stored userName (None for an
    account SCIM never named); ``scim`` is None for an account SCIM never wrote."""

    id: str
    tenant_id: int
    user_name: str | None
    external_id: str | None
    status: str
    email: str | None
    scim: Mapping[str, object] | None
    profile: Mapping[str, object]
    provisioned_by: str
    version: int
    created_at: datetime
    updated_at: datetime
    last_login_at: datetime | None
    deactivated_at: datetime | None

    @property
    def effective_user_name(self) -> str | None:
        """The userName SCIM shows and filters on: ``user_name``, else ``email``."""
        return self.user_name if self.user_name is not None else self.email

    @property
    def active(self) -> bool:
        return self.status == "active"


@dataclass(frozen=True, slots=True)
class GroupMember:
    """``value`` is the account id; ``display`` its displayName, else userName, else email."""

    value: str
    display: str | None


@dataclass(frozen=True, slots=True)
class ScimGroup:
    """A group (a copy). ``members`` is None when not loaded (``with_members=False``)."""

    id: str
    tenant_id: int
    display_name: str
    external_id: str | None
    version: int
    created_at: datetime
    updated_at: datetime
    members: tuple[GroupMember, ...] | None = None


@dataclass(frozen=True, slots=True)
class ScimTokenRecord:
    """A SCIM client token as listed (never the token, never its hash)."""

    id: int
    tenant_id: int
    name: str
    connection_id: int | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


@dataclass(frozen=True, slots=True)
class ActiveScimToken:
    """What authenticates a SCIM request. ``token_hash`` for the caller's
    ``hmac.compare_digest``."""

    id: int
    tenant_id: int
    connection_id: int | None
    token_hash: str
