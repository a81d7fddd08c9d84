"""Errors of the SCIM store; the SCIM service answers each with its ``scimType``."""

from __future__ import annotations

from collections.abc import Sequence

from jitprov.core.errors import Conflict, InvalidInput


class Uniqueness(Conflict):
    """A userName (or a group's displayName) already taken in the tenant, case-insensitively.
    The service answers 409 ``scimType: uniqueness``."""

    code = "uniqueness"


class VersionMismatch(Conflict):
    """``expected_version`` is not the stored version (If-Match: 412 Precondition Failed)."""

    code = "version_mismatch"


class InvalidFilter(InvalidInput):
    """A filter or sortBy the store cannot translate: an unknown attribute, or an operator or
    value that does not fit the attribute's type. 400 ``scimType: invalidFilter``."""

    code = "invalid_filter"


class UnknownMembers(InvalidInput):
    """Account ids that are not users of the group's tenant; ``account_ids`` lists them."""

    code = "unknown_members"

    def __init__(self, account_ids: Sequence[str]) -> None:
        self.account_ids = tuple(account_ids)
        super().__init__(f"not users of this tenant: {', '.join(self.account_ids)}")
