"""The shared-device feature's store: passkeys, shared devices and their enrolment, WebAuthn
challenges, what a passkey sign-in reads and writes about an account, and the IdPs' health
(the offline mode's clock). ``uow.devices`` groups them.

Same contract as every repository here: narrow methods over one open transaction (see
``unit_of_work.py``), copies out, ``NotFound`` for what is missing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from jitprov.core.errors import NotFound
from jitprov.store import tables as t
from jitprov.store._common import opt_utc, utc

_B = sa.bindparam
_ch = t.webauthn_challenge.c
_INSERT_CHALLENGE = t.webauthn_challenge.insert()
_CONSUME_CHALLENGE = (
    t.webauthn_challenge.update()
    .where(_ch.id == _B("b_id"), _ch.purpose == _B("b_purpose"), _ch.consumed_at.is_(None),
           _ch.expires_at > _B("b_now"))
    .values(consumed_at=_B("b_now"))
    .returning(_ch.purpose, _ch.account_id, _ch.device_id, _ch.expires_at))
_FIND_PASSKEY = sa.select(t.passkey).where(t.passkey.c.credential_id == _B("credential_id"))
_USE_PASSKEY = {
    zero: t.passkey.update()
    .where(t.passkey.c.id == _B("b_id"), t.passkey.c.revoked_at.is_(None),
           # an authenticator without a counter sends 0 every time (WebAuthn §6.1.1)
           t.passkey.c.sign_count == 0 if zero else t.passkey.c.sign_count < _B("b_count"))
    .values(sign_count=_B("b_count"), backup_state=_B("b_state"), last_used_at=_B("b_now"))
    for zero in (True, False)}
_DEVICE_BY_CREDENTIAL = (
    sa.select(t.device, t.tenant.c.slug.label("tenant_slug"))
    .join(t.tenant, t.tenant.c.id == t.device.c.tenant_id)
    .where(t.device.c.credential_hash == _B("credential_hash"), t.device.c.revoked_at.is_(None)))
_END_DEVICE_SESSIONS = (
    t.session.update()
    .where(t.session.c.device_id == _B("b_device"), t.session.c.revoked_at.is_(None),
           t.session.c.expires_at > _B("b_now"))
    .values(revoked_at=_B("b_now")).returning(t.session.c.account_id))
_DEVICE_SEEN = (t.device.update().where(t.device.c.id == _B("b_device"))
                .values(last_seen_at=_B("b_now")))
_SIGN_IN_FACTS = (
    sa.select(t.account.c.status, t.account.c.kind, t.account.c.tenant_id,
              t.tenant.c.slug, t.tenant.c.settings)
    .join(t.tenant, t.tenant.c.id == t.account.c.tenant_id)
    .where(t.account.c.id == _B("account_id")))
_CONFIRMATION = (
    sa.select(t.identity.c.connection_id, t.connection.c.slug, t.identity.c.subject,
              t.identity.c.last_login_at,
              t.connection_health.c.last_success_at, t.connection_health.c.last_failure_at,
              t.connection_health.c.last_error)
    .join(t.connection, t.connection.c.id == t.identity.c.connection_id)
    .outerjoin(t.connection_health,
               t.connection_health.c.connection_id == t.identity.c.connection_id)
    .where(t.identity.c.account_id == _B("account_id"))
    .order_by(t.identity.c.last_login_at.desc().nulls_last(), t.identity.c.id)
    .limit(1))
_TOUCH_SIGN_IN = (t.account.update().where(t.account.c.id == _B("b_account"))
                  .values(last_login_at=_B("b_now"), dormant_warned_at=None))


@dataclass(frozen=True, slots=True)
class PasskeyRecord:
    id: int
    account_id: str
    credential_id: str  # base64url
    public_key: bytes
    sign_count: int
    transports: tuple[str, ...]
    backup_eligible: bool
    backup_state: bool
    aaguid: str
    name: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    id: int
    tenant_id: int
    tenant_slug: str
    name: str
    location: str
    enrolled: bool
    created_at: datetime
    last_seen_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class ChallengeRecord:
    purpose: str
    account_id: str | None
    device_id: int | None
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class HealthRecord:
    connection_id: int
    last_success_at: datetime | None
    last_failure_at: datetime | None
    last_error: str | None

    @property
    def reachable(self) -> bool:
        """Unreachable when the last thing we heard from the IdP is a failure."""
        if self.last_failure_at is None:
            return True
        return self.last_success_at is not None and self.last_success_at > self.last_failure_at


@dataclass(frozen=True, slots=True)
class Confirmation:
    """When the IdP last confirmed an account (its identity's ``last_login_at``)."""

    connection_id: int
    connection_slug: str
    subject: str
    confirmed_at: datetime | None
    health: HealthRecord


@dataclass(frozen=True, slots=True)
class SignInFacts:
    """What a passkey sign-in checks about the account, in one read."""

    status: str
    kind: str
    tenant_id: int
    tenant_slug: str
    settings: Mapping[str, object]


class PasskeyRepository:
    def __init__(self, conn: sa.Connection) -> None:
        self._c = conn

    def add(self, *, account_id: str, credential_id: str, public_key: bytes, sign_count: int,
            transports: Sequence[str], backup_eligible: bool, backup_state: bool, aaguid: str,
            name: str, now: datetime) -> int:
        """Store a new credential; a credential id already known raises RaceLost at commit."""
        result = self._c.execute(t.passkey.insert().values(
            account_id=account_id, credential_id=credential_id, public_key=public_key,
            sign_count=sign_count, transports=list(transports), backup_eligible=backup_eligible,
            backup_state=backup_state, aaguid=aaguid, name=name, created_at=now))
        return int(result.inserted_primary_key[0])  # type: ignore[index]

    def find(self, credential_id: str) -> PasskeyRecord | None:
        """The credential with this id, revoked or not; None if unknown."""
        row = self._c.execute(_FIND_PASSKEY, {"credential_id": credential_id}).first()
        return None if row is None else _passkey(row)

    def get(self, passkey_id: int) -> PasskeyRecord:
        """Raises NotFound."""
        row = self._c.execute(sa.select(t.passkey).where(t.passkey.c.id == passkey_id)).first()
        if row is None:
            raise NotFound(f"no passkey {passkey_id}")
        return _passkey(row)

    def for_account(self, account_id: str, *, include_revoked: bool = False,
                    ) -> list[PasskeyRecord]:
        query = sa.select(t.passkey).where(t.passkey.c.account_id == account_id)
        if not include_revoked:
            query = query.where(t.passkey.c.revoked_at.is_(None))
        return [_passkey(r) for r in self._c.execute(query.order_by(t.passkey.c.id))]

    def record_use(self, passkey_id: int, *, sign_count: int, backup_state: bool,
                   now: datetime) -> bool:
        """Move the counter forward (never back: a concurrent use that got there first wins,
        and this returns False)."""
        result = self._c.execute(_USE_PASSKEY[sign_count == 0], {
            "b_id": passkey_id, "b_count": sign_count, "b_state": backup_state, "b_now": now})
        return bool(result.rowcount)

    def revoke(self, passkey_id: int, now: datetime) -> int | None:
        """Revoke the passkey and end the sessions opened with it: how many ended, or None
        if it was already revoked."""
        result = self._c.execute(t.passkey.update().where(
            t.passkey.c.id == passkey_id, t.passkey.c.revoked_at.is_(None))
            .values(revoked_at=now))
        if not result.rowcount:
            return None
        ended = self._c.execute(t.session.update().where(
            t.session.c.passkey_id == passkey_id, t.session.c.revoked_at.is_(None))
            .values(revoked_at=now))
        return int(ended.rowcount)


def _passkey(row: sa.Row[Any]) -> PasskeyRecord:
    return PasskeyRecord(
        id=row.id, account_id=row.account_id, credential_id=row.credential_id,
        public_key=bytes(row.public_key), sign_count=int(row.sign_count),
        transports=tuple(row.transports or ()), backup_eligible=bool(row.backup_eligible),
        backup_state=bool(row.backup_state), aaguid=row.aaguid, name=row.name,
        created_at=utc(row.created_at), last_used_at=opt_utc(row.last_used_at),
        revoked_at=opt_utc(row.revoked_at))


_DEVICE_COLUMNS = (t.device, t.tenant.c.slug.label("tenant_slug"))


class DeviceRepository:
    def __init__(self, conn: sa.Connection) -> None:
        self._c = conn

    def add(self, *, tenant_id: int, name: str, location: str, enrolment_hash: str,
            enrolment_expires_at: datetime, now: datetime) -> int:
        result = self._c.execute(t.device.insert().values(
            tenant_id=tenant_id, name=name, location=location, enrolment_hash=enrolment_hash,
            enrolment_expires_at=enrolment_expires_at, created_at=now))
        return int(result.inserted_primary_key[0])  # type: ignore[index]

    def pending_enrolment(self, enrolment_hash: str, now: datetime) -> DeviceRecord | None:
        """The device an unused, unexpired enrolment code belongs to (nothing is spent)."""
        row = self._c.execute(self._select().where(
            t.device.c.enrolment_hash == enrolment_hash, t.device.c.revoked_at.is_(None),
            t.device.c.enrolment_expires_at > now)).first()
        return None if row is None else _device(row)

    def enrol(self, enrolment_hash: str, credential_hash: str, now: datetime) -> int | None:
        """Spend the enrolment code and set the device credential: the device id, or None
        when the code is unknown, used, expired or its device revoked. Single use."""
        row = self._c.execute(
            t.device.update()
            .where(t.device.c.enrolment_hash == enrolment_hash, t.device.c.revoked_at.is_(None),
                   t.device.c.enrolment_expires_at > now)
            .values(enrolment_hash=None, enrolment_expires_at=None,
                    credential_hash=credential_hash, enrolled_at=now, last_seen_at=now)
            .returning(t.device.c.id)).first()
        return None if row is None else int(row.id)

    def reissue_enrolment(self, device_id: int, enrolment_hash: str,
                          expires_at: datetime) -> None:
        """A new one-time enrolment code for an unrevoked device (an earlier one is void)."""
        self._c.execute(t.device.update().where(t.device.c.id == device_id,
                                                t.device.c.revoked_at.is_(None))
                        .values(enrolment_hash=enrolment_hash, enrolment_expires_at=expires_at))

    def by_credential(self, credential_hash: str) -> DeviceRecord | None:
        """The enrolled, unrevoked device presenting this credential."""
        row = self._c.execute(_DEVICE_BY_CREDENTIAL,
                              {"credential_hash": credential_hash}).first()
        return None if row is None else _device(row)

    def get(self, device_id: int) -> DeviceRecord:
        """Raises NotFound."""
        row = self._c.execute(self._select().where(t.device.c.id == device_id)).first()
        if row is None:
            raise NotFound(f"no device {device_id}")
        return _device(row)

    def for_tenant(self, tenant_id: int) -> list[DeviceRecord]:
        return [_device(r) for r in self._c.execute(
            self._select().where(t.device.c.tenant_id == tenant_id).order_by(t.device.c.id))]

    def revoke(self, device_id: int, now: datetime) -> bool:
        result = self._c.execute(t.device.update().where(
            t.device.c.id == device_id, t.device.c.revoked_at.is_(None))
            .values(revoked_at=now, credential_hash=None, enrolment_hash=None))
        return bool(result.rowcount)

    def end_sessions(self, device_id: int, now: datetime) -> list[str]:
        """Revoke every active session opened on the device; the account ids they were for."""
        rows = self._c.execute(_END_DEVICE_SESSIONS, {"b_device": device_id, "b_now": now}).all()
        return [r.account_id for r in rows]

    def bind_session(self, session_id: str, device_id: int, *, idle_seconds: int,
                     expires_at: datetime, now: datetime) -> None:
        """Bind a session opened elsewhere (an SSO step-up) to this device."""
        self._c.execute(t.session.update().where(t.session.c.id == session_id).values(
            device_id=device_id, idle_seconds=idle_seconds, expires_at=expires_at,
            last_seen_at=now))
        self.seen(device_id, now)

    def seen(self, device_id: int, now: datetime) -> None:
        self._c.execute(_DEVICE_SEEN, {"b_device": device_id, "b_now": now})

    @staticmethod
    def _select() -> sa.Select[Any]:
        return sa.select(*_DEVICE_COLUMNS).join(t.tenant, t.tenant.c.id == t.device.c.tenant_id)


def _device(row: sa.Row[Any]) -> DeviceRecord:
    return DeviceRecord(id=row.id, tenant_id=row.tenant_id, tenant_slug=row.tenant_slug,
                        name=row.name, location=row.location,
                        enrolled=row.credential_hash is not None,
                        created_at=utc(row.created_at), last_seen_at=opt_utc(row.last_seen_at),
                        revoked_at=opt_utc(row.revoked_at))


class ChallengeRepository:
    """WebAuthn challenges: stored by SHA-256, single use, expiring, shared by all nodes."""

    def __init__(self, conn: sa.Connection) -> None:
        self._c = conn

    def add(self, *, challenge_hash: str, purpose: str, account_id: str | None,
            device_id: int | None, now: datetime, expires_at: datetime) -> None:
        self._c.execute(_INSERT_CHALLENGE, {
            "id": challenge_hash, "purpose": purpose, "account_id": account_id,
            "device_id": device_id, "created_at": now, "expires_at": expires_at,
            "consumed_at": None})

    def consume(self, challenge_hash: str, purpose: str, now: datetime,
                ) -> ChallengeRecord | None:
        """Spend the challenge; None if unknown, of another purpose, expired or spent.
        Exactly one of any number of concurrent callers gets it."""
        row = self._c.execute(_CONSUME_CHALLENGE, {"b_id": challenge_hash, "b_purpose": purpose,
                                                   "b_now": now}).first()
        if row is None:
            return None
        return ChallengeRecord(purpose=row.purpose, account_id=row.account_id,
                               device_id=row.device_id, expires_at=utc(row.expires_at))

    def purge_expired(self, before: datetime) -> int:
        result = self._c.execute(t.webauthn_challenge.delete()
                                 .where(t.webauthn_challenge.c.expires_at < before))
        return int(result.rowcount)


class DeviceAccounts:
    """What passkey sign-in needs to know about an account besides its grants."""

    def __init__(self, conn: sa.Connection) -> None:
        self._c = conn

    def sign_in_facts(self, account_id: str) -> SignInFacts:
        """Status, kind, tenant and tenant settings of an account. Raises NotFound."""
        row = self._c.execute(_SIGN_IN_FACTS, {"account_id": account_id}).first()
        if row is None:
            raise NotFound(f"no account {account_id!r}")
        return SignInFacts(row.status, row.kind, row.tenant_id, row.slug, dict(row.settings))

    def confirmation(self, account_id: str) -> Confirmation | None:
        """The identity through which the IdP most recently confirmed the account (its
        roles), with that IdP's health; None for an account no IdP ever signed in
        (SCIM-only, break-glass)."""
        row = self._c.execute(_CONFIRMATION, {"account_id": account_id}).first()
        if row is None:
            return None
        health = HealthRecord(row.connection_id, opt_utc(row.last_success_at),
                              opt_utc(row.last_failure_at), row.last_error)
        return Confirmation(row.connection_id, row.slug, row.subject, opt_utc(row.last_login_at),
                            health)

    def touch_sign_in(self, account_id: str, now: datetime) -> None:
        """A local sign-in counts against dormancy; it does NOT confirm roles (the identity's
        ``last_login_at`` is the IdP's word, and is left alone)."""
        self._c.execute(_TOUCH_SIGN_IN, {"b_account": account_id, "b_now": now})


class HealthRepository:
    def __init__(self, conn: sa.Connection) -> None:
        self._c = conn

    def of_enabled_connections(self) -> list[tuple[str, HealthRecord]]:
        """Each enabled connection's slug and health (never heard of: reachable)."""
        rows = self._c.execute(
            sa.select(t.connection.c.id, t.connection.c.slug,
                      t.connection_health.c.last_success_at,
                      t.connection_health.c.last_failure_at, t.connection_health.c.last_error)
            .outerjoin(t.connection_health,
                       t.connection_health.c.connection_id == t.connection.c.id)
            .where(t.connection.c.enabled.is_(True)).order_by(t.connection.c.slug))
        return [(r.slug, HealthRecord(r.id, opt_utc(r.last_success_at),
                                      opt_utc(r.last_failure_at), r.last_error)) for r in rows]

    def get(self, connection_id: int) -> HealthRecord:
        """Never heard of: reachable (no failure recorded)."""
        row = self._c.execute(sa.select(t.connection_health).where(
            t.connection_health.c.connection_id == connection_id)).first()
        if row is None:
            return HealthRecord(connection_id, None, None, None)
        return HealthRecord(connection_id, opt_utc(row.last_success_at),
                            opt_utc(row.last_failure_at), row.last_error)

    def record(self, connection_id: int, *, ok: bool, now: datetime,
               error: str | None = None, declared_by: str | None = None,
               probe: bool = False) -> bool:
        """Record a success or failure. ``declared_by``: an admin's declaration (a declared
        outage sticks until an admin declares the IdP back); ``probe``: the periodic probe,
        which leaves a declared outage alone. Returns False when nothing was written."""
        values: dict[str, object] = (
            {"last_success_at": now} if ok
            else {"last_failure_at": now, "last_error": (error or "unreachable")[:300]})
        if not probe:
            values["declared_by"] = None if ok else declared_by
        where = [t.connection_health.c.connection_id == connection_id]
        if probe:
            where.append(t.connection_health.c.declared_by.is_(None))
        updated = self._c.execute(t.connection_health.update().where(*where).values(**values))
        if updated.rowcount:
            return True
        exists = self._c.execute(sa.select(t.connection_health.c.connection_id).where(
            t.connection_health.c.connection_id == connection_id)).first()
        if exists is not None:  # declared down: the probe does not undo it
            return False
        try:
            with self._c.begin_nested():
                self._c.execute(t.connection_health.insert().values(
                    connection_id=connection_id, **values))
        except sa.exc.IntegrityError:  # another node inserted it first
            self._c.execute(t.connection_health.update().where(*where).values(**values))
        return True


class DeviceStore:
    """``uow.devices``: ``passkeys``, ``devices`` (shared devices), ``challenges`` (WebAuthn),
    ``accounts`` (what a passkey sign-in reads and writes about an account) and ``health``
    (the IdPs')."""

    def __init__(self, conn: sa.Connection) -> None:
        self.passkeys = PasskeyRepository(conn)
        self.devices = DeviceRepository(conn)
        self.challenges = ChallengeRepository(conn)
        self.accounts = DeviceAccounts(conn)
        self.health = HealthRepository(conn)
