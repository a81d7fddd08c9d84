"""One transaction, with every repository bound to it.

``with UnitOfWork(db) as uow: ...; uow.commit()``: leaving the block without ``commit()``
rolls back. Read-only units (``readonly=True``) take no write lock on SQLite.
"""

from __future__ import annotations

import threading
from types import TracebackType

import sqlalchemy as sa

from jitprov.core.errors import InvalidInput
from jitprov.store.admin_console import AdminConsoleStore
from jitprov.store.database import Database, DatabaseNotReady
from jitprov.store.frontline import (
    ChallengeRepository,
    DeviceRepository,
    FrontlineAccounts,
    HealthRepository,
    PasskeyRepository,
)
from jitprov.store.recorded_claims import RecordedClaimsRepository
from jitprov.store.repositories import (
    AccountRepository,
    AdminTokenRepository,
    AuditLog,
    BreakGlassRepository,
    ConnectionRepository,
    LoginRequestRepository,
    Outbox,
    PendingGrantRepository,
    RaceLost,
    SessionRepository,
    SigningKeyRepository,
    TenantRepository,
    WebhookRepository,
)
from jitprov.store.saml_replay import (
    SamlConnectionConfigRepository,
    SamlLoginRequestReader,
    SamlReplayRepository,
)
from jitprov.store.scim import ScimStore


class UnitOfWork:
    tenants: TenantRepository
    connections: ConnectionRepository
    accounts: AccountRepository
    sessions: SessionRepository
    login_requests: LoginRequestRepository
    audit: AuditLog
    outbox: Outbox
    admin_tokens: AdminTokenRepository
    pending_grants: PendingGrantRepository
    signing_keys: SigningKeyRepository
    webhooks: WebhookRepository
    break_glass: BreakGlassRepository
    saml_replay: SamlReplayRepository
    saml_config: SamlConnectionConfigRepository
    saml_login_requests: SamlLoginRequestReader
    passkeys: PasskeyRepository
    devices: DeviceRepository
    challenges: ChallengeRepository
    frontline: FrontlineAccounts
    idp_health: HealthRepository
    scim: ScimStore
    admin_console: AdminConsoleStore
    recorded_claims: RecordedClaimsRepository

    def __init__(self, db: Database, *, readonly: bool = False) -> None:
        self._db = db
        self._readonly = readonly
        self._conn: sa.Connection | None = None
        self._tx: sa.RootTransaction | None = None
        self._lock: threading.RLock | None = None

    def __enter__(self) -> UnitOfWork:
        self._lock = None if self._readonly else self._db.write_lock
        if self._lock is not None:
            self._lock.acquire()
        try:
            return self._begin()
        except BaseException:
            self._release()
            raise

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def _begin(self) -> UnitOfWork:
        try:
            conn = self._db.engine.connect()
        except sa.exc.OperationalError as exc:
            raise DatabaseNotReady(f"cannot reach the database: {_first_line(exc)}") from exc
        if self._readonly:
            conn = conn.execution_options(readonly=True)
        self._conn = conn
        try:
            self._tx = conn.begin()
        except sa.exc.OperationalError as exc:
            conn.close()
            raise _translate(exc) from exc
        self.tenants = TenantRepository(conn)
        self.connections = ConnectionRepository(conn)
        self.accounts = AccountRepository(conn)
        self.sessions = SessionRepository(conn)
        self.login_requests = LoginRequestRepository(conn)
        self.audit = AuditLog(conn)
        self.outbox = Outbox(conn)
        self.admin_tokens = AdminTokenRepository(conn)
        self.pending_grants = PendingGrantRepository(conn)
        self.signing_keys = SigningKeyRepository(conn)
        self.webhooks = WebhookRepository(conn)
        self.break_glass = BreakGlassRepository(conn)
        self.saml_replay = SamlReplayRepository(conn)
        self.saml_config = SamlConnectionConfigRepository(conn)
        self.saml_login_requests = SamlLoginRequestReader(conn)
        self.passkeys = PasskeyRepository(conn)
        self.devices = DeviceRepository(conn)
        self.challenges = ChallengeRepository(conn)
        self.frontline = FrontlineAccounts(conn)
        self.idp_health = HealthRepository(conn)
        self.scim = ScimStore(conn)
        self.admin_console = AdminConsoleStore(conn)
        self.recorded_claims = RecordedClaimsRepository(conn)
        return self

    def commit(self) -> None:
        assert self._tx is not None  # noqa: S101
        try:
            self._tx.commit()
        except sa.exc.IntegrityError as exc:
            raise RaceLost("commit lost a unique-key race") from exc

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        assert self._conn is not None  # noqa: S101
        try:
            if self._tx is not None and self._tx.is_active:
                self._tx.rollback()
        finally:
            self._conn.close()
            self._release()
        if isinstance(exc, sa.exc.IntegrityError):
            raise RaceLost("a unique key was written concurrently") from exc
        if isinstance(exc, sa.exc.DataError):
            raise InvalidInput(f"a value does not fit the database: {_first_line(exc)}") from exc
        if isinstance(exc, sa.exc.OperationalError | sa.exc.ProgrammingError):
            raise _translate(exc) from exc


def _first_line(exc: sa.exc.DBAPIError) -> str:
    return str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)


def _translate(exc: sa.exc.DBAPIError) -> Exception:
    message = _first_line(exc)
    if "no such table" in message or "does not exist" in message:
        return DatabaseNotReady(f"the database is not migrated ({message}); "
                                "run `jitprov db upgrade`")
    if "database is locked" in message or "deadlock" in message or \
            "could not serialize" in message:
        return RaceLost(message)
    return DatabaseNotReady(message)
