"""What a login's mapping may see of SCIM: the claim ``scim_groups``.

Apart from the SCIM use cases, and reading the store only, so that a login can ask for it
without depending on them. The login flow does not call it yet (docs/decisions.md, "SCIM").
"""

from __future__ import annotations

from collections.abc import Mapping

from jitprov.core.identity import ExternalIdentity
from jitprov.services.context import ServiceContext
from jitprov.store.records import ConnectionRecord
from jitprov.store.unit_of_work import UnitOfWork

SCIM_GROUPS_CLAIM = "scim_groups"


def claims_with_scim_groups(ctx: ServiceContext, conn: ConnectionRecord,
                            identity: ExternalIdentity) -> Mapping[str, object]:
    """The claims a login's mapping sees: the IdP's, plus ``scim_groups``, the displayNames
    of the SCIM groups of the account this login signs in to (the account bound to
    (connection, subject), else the SCIM-created account whose externalId is the subject).
    Free for a mapping that does not mention ``scim_groups`` (one read otherwise). An IdP
    claim named ``scim_groups`` is replaced: only SCIM decides SCIM membership."""
    if SCIM_GROUPS_CLAIM not in conn.mapping:
        return identity.claims
    with UnitOfWork(ctx.db, readonly=True) as uow:
        account = uow.accounts.find_by_identity(conn.id, identity.subject)
        account_id = account.id if account is not None else None
        if account_id is None:
            found = uow.accounts.find_link_candidates(
                conn.tenant_id, connection_id=conn.id, email=None,
                external_id=identity.subject)
            account_id = next((a.id for a, how in found if how == "external_id"), None)
        names = [name for _, name in uow.scim.groups.groups_of(account_id)] \
            if account_id is not None else []
    return {**identity.claims, SCIM_GROUPS_CLAIM: names}
