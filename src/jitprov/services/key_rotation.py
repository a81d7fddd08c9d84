"""Re-sealing every stored secret with the newest secret key (``jitprov secrets rotate``).

A rotation lists the new key first in ``JITPROV_SECRET_KEYS`` (the old ones after it, so
everything still opens), then walks every sealed column in key order by small batches, one
unit of work each, re-sealing what is not yet under the newest key. It is idempotent (a value
already under the newest key is left alone) and resumable (a run stopped half way has
committed its finished batches; the next run skips them). A value no configured key opens is
counted and left as it is: the run says so instead of failing half way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from jitprov.services.context import ServiceContext
from jitprov.services.secretbox import SecretsUnreadable
from jitprov.store.configuration import SEALED_COLUMNS
from jitprov.store.unit_of_work import UnitOfWork


@dataclass
class RotationCount:
    """What a rotation found for one kind of sealed value."""

    resealed: int = 0
    current: int = 0  # already sealed with the newest key
    unreadable: int = 0  # opened by no configured key: left as stored
    changed_meanwhile: int = 0  # changed by someone else during the run (so already new)


@dataclass
class RotationReport:
    kinds: dict[str, RotationCount] = field(default_factory=dict)
    dry_run: bool = False

    @property
    def unreadable(self) -> int:
        return sum(count.unreadable for count in self.kinds.values())

    @property
    def pending(self) -> int:
        """Values still sealed with an older key (after a dry run: what a run would do)."""
        return sum(count.resealed for count in self.kinds.values()) if self.dry_run else 0


def rotate_secrets(ctx: ServiceContext, *, dry_run: bool = False,
                   batch_size: int = 100) -> RotationReport:
    """Re-seal every stored secret not yet sealed with the newest key; ``dry_run`` only
    counts."""
    report = RotationReport(dry_run=dry_run)
    for kind in SEALED_COLUMNS:
        count = report.kinds.setdefault(kind, RotationCount())
        after: str | None = None
        while True:
            with UnitOfWork(ctx.db) as uow:
                rows = uow.config.sealed.batch(kind, after, batch_size)
                for key, sealed in rows:
                    _reseal_one(ctx, uow, kind, key, sealed, count, dry_run=dry_run)
                if not dry_run:
                    uow.commit()
            if len(rows) < batch_size:
                break
            after = rows[-1][0]
    return report


def _reseal_one(ctx: ServiceContext, uow: UnitOfWork, kind: str, key: str, sealed: str,
                count: RotationCount, *, dry_run: bool) -> None:
    if ctx.secretbox.is_current(sealed):
        count.current += 1
        return
    try:
        fresh = ctx.secretbox.reseal(sealed)
    except SecretsUnreadable:
        count.unreadable += 1
        return
    if dry_run or uow.config.sealed.replace(kind, key, sealed, fresh):
        count.resealed += 1
    else:
        count.changed_meanwhile += 1
