"""What every service needs: the database, the clock, caches. Built once by the composition
root (``web/app.py`` or the CLI) and shared by all requests."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from jitprov.core.mapping import Policy, load_policy
from jitprov.services.secretbox import SecretBox
from jitprov.settings import Settings
from jitprov.store.database import Database
from jitprov.store.records import ConnectionRecord


def utc_now() -> datetime:
    return datetime.now(UTC)


class PolicyCache:
    """Compiled mapping policies keyed by (connection id, version).

    A mapping changed by the CLI or API bumps the connection's version, so every node compiles
    the new policy at its next login: no restart, no stale rules.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._policies: dict[int, tuple[int, Policy]] = {}

    def get(self, connection: ConnectionRecord) -> Policy:
        cached = self._policies.get(connection.id)
        if cached is not None and cached[0] == connection.version:
            return cached[1]
        policy = load_policy(connection.mapping, connection.mapping_source)
        with self._lock:
            self._policies[connection.id] = (connection.version, policy)
        return policy


@dataclass
class ServiceContext:
    db: Database
    secretbox: SecretBox
    clock: Callable[[], datetime] = utc_now
    session_ttl: timedelta = timedelta(hours=12)
    login_request_ttl: timedelta = timedelta(minutes=10)
    policies: PolicyCache = field(default_factory=PolicyCache)


def build_context(settings: Settings, db: Database) -> ServiceContext:
    """The context of a process, from its settings."""
    return ServiceContext(db=db, secretbox=SecretBox(settings.secret_key),
                          session_ttl=settings.session_ttl,
                          login_request_ttl=settings.login_request_ttl)
