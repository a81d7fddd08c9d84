"""The catalogue of events announced to webhooks (the outbox's event types).

An endpoint subscribes to some of these (or ``*``); a name outside the catalogue is refused
when the endpoint is added, so a misspelt subscription cannot sit silent forever. The outbox
refuses to record a type that is not here, so the catalogue cannot fall behind the code.
"""

from __future__ import annotations

WEBHOOK_EVENTS: dict[str, str] = {
    "account.created": "an account was created (first login, SCIM)",
    "account.updated": "an account's profile or roles changed",
    "account.linked": "a login was linked to an existing account",
    "account.deleted": "an account was deleted (SCIM erase, retention)",
    "account.dormant": "an account has not signed in for the tenant's warning period",
    "account.suspended": "an account was suspended",
    "account.deactivated": "an account was deactivated (admin, SCIM, dormant sweep)",
    "account.reactivated": "an account was reactivated",
    "role.granted": "a role was granted (rule, IdP group, admin, approval)",
    "role.revoked": "a role was revoked (rule, admin, expiry)",
    "approval.requested": "a role that needs approval is waiting for an approver",
    "grant.approved": "an approver granted a waiting role",
    "grant.denied": "an approver refused a waiting role",
    "link.requested": "a first login asks to link to an existing account",
    "link.approved": "an admin approved a waiting link",
    "link.refused": "an admin refused a waiting link",
    "link.cleared": "a waiting link was cleared",
    "group.created": "a SCIM group was created",
    "group.updated": "a SCIM group was renamed or changed",
    "group.deleted": "a SCIM group was deleted",
    "group.members_changed": "a SCIM group's members changed",
    "session.revoked": "sessions were revoked by a logout at the IdP",
    "session.switched": "a shared device switched to another person",
    "login.offline": "a passkey sign-in while the IdP is down",
    "passkey.registered": "a passkey was registered",
    "passkey.revoked": "a passkey was revoked",
    "device.registered": "a shared device was registered",
    "device.revoked": "a shared device was revoked",
    "break_glass.requested": "a break-glass credential was requested",
    "break_glass.issued": "a break-glass credential was issued",
    "break_glass.used": "a break-glass credential was used",
}


def unknown_event_types(types: list[str] | tuple[str, ...]) -> list[str]:
    """The names in ``types`` that are neither ``*`` nor in :data:`WEBHOOK_EVENTS`."""
    return [name for name in types if name != "*" and name not in WEBHOOK_EVENTS]
