"""Readiness (``GET /readyz``): can this process serve requests now?

Three checks, in order, each run only when the one before passed: the database answers
(within its time limits), its schema is at the revision this code needs (the Alembic head),
and the secret key opens the values sealed with it. ``/healthz`` stays a liveness check that
touches nothing. The outcome names the failing check and says what to do, never a secret or
the database URL; the detail goes to the server log.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from jitprov.core.errors import DatabaseNotReady, DatabaseTimeout
from jitprov.services.context import ServiceContext
from jitprov.services.secretbox import SecretsUnreadable
from jitprov.store.unit_of_work import UnitOfWork

log = logging.getLogger("jitprov.readiness")

CHECKS = ("database", "schema", "secret_key")


@dataclass(frozen=True)
class Readiness:
    """Each check's state: ``"ok"``, a short reason, or ``"not checked"``."""

    checks: dict[str, str]
    #: the first failing check, or None when ready
    failing: str | None = None

    @property
    def ready(self) -> bool:
        return self.failing is None

    def as_json(self) -> dict[str, object]:
        body: dict[str, object] = {"status": "ready" if self.ready else "not_ready",
                                   "checks": self.checks}
        if self.failing is not None:
            body["failing"] = self.failing
        return body


def readiness(ctx: ServiceContext) -> Readiness:
    """Run the checks; never raises for a database or key problem (it is the answer)."""
    checks = dict.fromkeys(CHECKS, "not checked")
    try:
        current = ctx.db.current_revision()
    except DatabaseTimeout as exc:
        log.error("readiness: %s", exc)
        return _failed(checks, "database", "the database did not answer in time")
    except DatabaseNotReady as exc:
        log.error("readiness: %s", exc)
        return _failed(checks, "database", "the database cannot be reached")
    checks["database"] = "ok"
    head = ctx.db.head_revision()
    if current != head:
        state = "not migrated" if current is None else f"at {current}"
        return _failed(checks, "schema", f"the schema is {state}, this version needs {head}; "
                                         "run `jitprov db upgrade`")
    checks["schema"] = "ok"
    try:
        with UnitOfWork(ctx.db, readonly=True) as uow:
            samples = uow.config.sealed_samples()
    except DatabaseNotReady as exc:
        log.error("readiness: %s", exc)
        return _failed(checks, "database", "the database cannot be read")
    try:
        for sealed in samples:
            ctx.secretbox.open(sealed)
    except SecretsUnreadable:
        return _failed(checks, "secret_key", "the secret key does not open the stored "
                                             "secrets: JITPROV_SECRET_KEY differs from the "
                                             "key that sealed them")
    checks["secret_key"] = "ok"  # noqa: S105 - a check's state, not a key
    return Readiness(checks)


def _failed(checks: dict[str, str], name: str, reason: str) -> Readiness:
    checks[name] = reason
    return Readiness(checks, failing=name)
