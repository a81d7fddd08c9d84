"""Tolerated deviations of real SCIM clients from RFC 7643/7644, each a named flag in the
vendor's words (conventions #7). All are on by default: none of them can make a conforming
request mean something else. ``Quirks.strict()`` is the RFC as written.

Microsoft Entra ID (https://learn.microsoft.com/entra/identity/app-provisioning/
application-provisioning-config-problem-scim-compatibility and the SCIM validator):

- ``op_any_case``: ``"op": "Replace"`` / ``"Add"`` / ``"Remove"`` -- "the op values are
  not case-insensitive in Microsoft Entra ID" ... it sends them capitalised.
- ``boolean_strings``: ``{"op": "Replace", "path": "active", "value": "False"}`` -- booleans
  sent as the strings "True"/"False".
- ``dotted_keys``: a PATCH without ``path`` whose value keys are paths,
  ``{"op": "Replace", "value": {"name.givenName": "Ana",
  "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department": "Ward 3"}}``.
- ``remove_value_list``: ``{"op": "Remove", "path": "members", "value": [{"value": "<id>"}]}``
  -- the value selects what to remove (RFC 7644 section 3.5.2.2 reads a remove's target from
  its path only); applied to other multi-valued attributes too.
- ``create_unmatched_filter``: ``{"op": "Add", "path": "emails[type eq \\"work\\"].value", ...}``
  to a user without a work email expects the entry created; an ``eq``-only filter then
  describes it (RFC: ``noTarget``).
- ``manager_without_ref``: the enterprise ``manager`` sent as ``{"value": "<id>"}`` without
  the ``$ref`` RFC 7643 section 4.3 requires.

Entra's own schema URNs next to the core one (``schemas: ["urn:ietf:params:scim:schemas:core:
2.0:Group", "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"]``) need
no flag: RFC 7643 section 3 lets a server ignore extensions it does not support, which
``resources.drop_unknown_extensions`` does for every client.

Okta (https://developer.okta.com/docs/api/openapi/okta-scim/guides/scim-20) needs no flag: it
updates users with PUT, deactivates with ``active: false`` by PUT or PATCH, and removes group
members with the RFC path ``members[value eq "<id>"]``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Quirks:
    """Which vendor deviations are tolerated (see the module docstring)."""

    op_any_case: bool = True
    boolean_strings: bool = True
    dotted_keys: bool = True
    remove_value_list: bool = True
    create_unmatched_filter: bool = True
    manager_without_ref: bool = True

    @classmethod
    def strict(cls) -> Quirks:
        """The RFC as written, nothing tolerated."""
        return cls(False, False, False, False, False, False)
