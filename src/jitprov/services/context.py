"""What every service needs: the database, the clock, caches. Built once by the composition
root (``web/app.py`` or the CLI) and shared by all requests."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx

from jitprov.core.mapping import Policy, load_policy
from jitprov.protocols.oidc.provider import Providers
from jitprov.services.outbound import OutboundPolicy, async_twin, guarded_client, policy_from
from jitprov.services.secretbox import SecretBox
from jitprov.services.session_cache import SessionCache
from jitprov.settings import Settings
from jitprov.store.database import Database, DatabaseLimits
from jitprov.store.records import ConnectionRecord
from jitprov.store.unit_of_work import UnitOfWork


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


class ConnectionCache:
    """Connection records by slug, re-read from the database after ``ttl``.

    The contract lets configuration changes reach running nodes "within seconds"; a short TTL
    keeps the connection read out of every login's write transaction.
    """

    def __init__(self, db: Database, ttl: timedelta = timedelta(seconds=2)) -> None:
        self._db = db
        self._ttl = ttl.total_seconds()
        self._entries: dict[str, tuple[float, ConnectionRecord]] = {}

    def get(self, slug: str) -> ConnectionRecord:
        """Raises NotFound (not cached: a new connection shows at once)."""
        now = time.monotonic()
        cached = self._entries.get(slug)
        if cached is not None and now - cached[0] < self._ttl:
            return cached[1]
        with UnitOfWork(self._db, readonly=True) as uow:
            record = uow.config.connections.get(slug)
        self._entries[slug] = (now, record)
        return record

    def peek(self, slug: str) -> ConnectionRecord | None:
        """The cached record while fresh, else None (then :meth:`get`, which may read): lets
        an async caller skip a thread hand-off on a hit."""
        cached = self._entries.get(slug)
        if cached is not None and time.monotonic() - cached[0] < self._ttl:
            return cached[1]
        return None

    def forget(self, slug: str) -> None:
        """Drop a slug this process just changed, so its own next read is fresh."""
        self._entries.pop(slug, None)


@dataclass
class ServiceContext:
    db: Database
    secretbox: SecretBox
    clock: Callable[[], datetime] = utc_now
    session_ttl: timedelta = timedelta(hours=12)
    login_request_ttl: timedelta = timedelta(minutes=10)
    policies: PolicyCache = field(default_factory=PolicyCache)
    #: webhooks may go to private and loopback addresses (dev, tests, on-premises receivers)
    webhook_allow_private: bool = False
    #: hosts an absolute ``return_to`` may lead to (``JITPROV_ALLOWED_RETURN_HOSTS``, see
    #: ``sessions.safe_return_to``); empty: local paths only
    return_hosts: tuple[str, ...] = ()
    #: where server-side requests may go (services/outbound.py); ``build_context`` sets it
    #: from the settings and guards ``http`` with it
    outbound: OutboundPolicy = field(default_factory=OutboundPolicy)
    #: a SCIM membership change touching at most this many accounts re-evaluates their rule
    #: grants in its own transaction; a larger one queues them for the job (entitlements.py)
    reevaluation_inline_max: int = 200
    #: outbound HTTP (SAML metadata, OIDC discovery, JWKS, token and userinfo endpoints, IdP
    #: probes); ``build_context`` gives it the outbound guard (services/outbound.py); tests
    #: that build a context by hand inject their own
    http: httpx.Client = field(default_factory=lambda: httpx.Client(
        timeout=httpx.Timeout(10.0), follow_redirects=False))
    connections: ConnectionCache = field(init=False)
    oidc: Providers = field(init=False)
    #: signed-in sessions in memory (services/session_cache.py); None: read at each request
    session_cache: SessionCache | None = None
    #: per-process caches of other services, keyed by their name (e.g. the signing key)
    caches: dict[str, object] = field(init=False, default_factory=dict)
    _http_async: tuple[httpx.Client, httpx.AsyncClient | None] | None = field(
        init=False, default=None, repr=False)

    def __post_init__(self) -> None:
        self.connections = ConnectionCache(self.db)
        self.oidc = Providers(self.http)

    @property
    def http_async(self) -> httpx.AsyncClient | None:
        """``http`` for an event loop: the same transport (and so the same outbound guard and
        policy); None when that transport sends only from threads."""
        twin = self._http_async
        if twin is None or twin[0] is not self.http:  # made again when a test replaces http
            twin = self._http_async = (self.http, async_twin(self.http))
        return twin[1]

    async def close_async(self) -> None:
        """Close the connections ``http_async`` opened from the running event loop (its
        server stopping); a later request opens new ones."""
        transport = getattr(self.http, "_transport", None)
        if isinstance(transport, httpx.AsyncBaseTransport):
            await transport.aclose()


def database_limits(settings: Settings) -> DatabaseLimits:
    """The time limits toward the database, from the settings (``JITPROV_DB_*_TIMEOUT``)."""
    return DatabaseLimits(connect_timeout=settings.db_connect_timeout,
                          statement_timeout=settings.db_statement_timeout,
                          pool_timeout=settings.db_pool_timeout,
                          busy_timeout=settings.db_busy_timeout)


def open_database(settings: Settings, *, pool_size: int | None = None) -> Database:
    """The settings' database, with the settings' time limits, pool size (``pool_size`` wins
    when given) and transaction-pooler mode."""
    return Database.connect(settings.database_url,
                            pool_size=settings.db_pool_size if pool_size is None else pool_size,
                            max_overflow=settings.db_max_overflow if pool_size is None
                            else pool_size,
                            limits=database_limits(settings),
                            pooling=settings.db_transaction_pooling)


def build_context(settings: Settings, db: Database) -> ServiceContext:
    """The context of a process, from its settings. Without a secret key this refuses with
    :class:`~jitprov.settings.SettingsError` saying how to set one: nothing runs that could
    seal a value under a key made up on the spot."""
    settings.require_key()
    outbound = policy_from(settings.outbound_allow, allow_private=settings.dev_mode)
    return ServiceContext(db=db, secretbox=SecretBox(settings.secret_key,
                                                     settings.previous_secret_keys),
                          session_ttl=settings.session_ttl,
                          login_request_ttl=settings.login_request_ttl,
                          webhook_allow_private=settings.webhook_allow_private,
                          return_hosts=settings.allowed_return_hosts,
                          session_cache=SessionCache(db) if settings.ops.session_cache
                          else None,
                          outbound=outbound, http=guarded_client(outbound))
