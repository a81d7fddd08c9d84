"""Facts of this installation that every process and command on the database shares.

The public base URL: ``serve`` and ``dev`` record the one they run under at start, so a
command run later against the same database (``admin bootstrap``, ``device register``,
``connection add-oidc|add-saml``) prints links and redirect URIs that match the running server
without ``JITPROV_BASE_URL`` being exported to it too. ``JITPROV_BASE_URL``, when set, wins.
"""

from __future__ import annotations

from jitprov.services.context import ServiceContext
from jitprov.store.unit_of_work import UnitOfWork

BASE_URL = "base_url"


def record_base_url(ctx: ServiceContext, base_url: str) -> None:
    """Remember the base URL a server runs under (written only when it changed)."""
    with UnitOfWork(ctx.db) as uow:
        if uow.config.instance.get(BASE_URL) != base_url:
            uow.config.instance.put(BASE_URL, base_url, ctx.clock())
            uow.commit()


def recorded_base_url(ctx: ServiceContext) -> str | None:
    """The base URL a server last ran under on this database, if any did."""
    with UnitOfWork(ctx.db, readonly=True) as uow:
        return uow.config.instance.get(BASE_URL)
