"""The login request a callback answers: who may start one, where it is kept, and the one
check that a callback's ``state`` names an unspent request of this connection, started by this
browser.

A login request lives in the browser that started it, not in the database: its binding
cookie (one per login in flight, named after the ``state``) holds it sealed (Fernet, under a
key of its own label, so nothing sealed for another purpose opens as one): the hash of the
``state`` it answers, the connection, the return address, its expiry and what the protocol
needs back (the OIDC nonce and PKCE verifier, the SAML AuthnRequest ID). Starting a login
writes nothing. A callback from another browser has no such cookie (login CSRF is refused);
a request is spent in the provisioning transaction by inserting the hash of its ``state``
(the primary key lets one of any number of callbacks through, on every node), kept until the
request expires.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from jitprov.core.errors import InvalidInput
from jitprov.services.common import LoginRefused, hash_token
from jitprov.services.context import ServiceContext
from jitprov.services.login.failures import record_login_failure
from jitprov.services.secretbox import SecretBox, SecretsUnreadable
from jitprov.store.fast import Claim
from jitprov.store.records import ConnectionRecord, LoginRequestRecord
from jitprov.store.unit_of_work import UnitOfWork

#: the label of the keys that seal login requests (see ``SecretBox.derive``)
LOGIN_REQUEST_LABEL = "jitprov login requests"
#: the login request's key for the hash of the session the browser held at the start
PREVIOUS_SESSION = "previous_session"
#: logins one browser may have in flight (binding cookies): a few tabs, never a pile of
#: cookies that outgrows a proxy's header limits
LOGINS_IN_FLIGHT = 3
#: why an expired, spent or foreign-connection login request is refused
EXPIRED = "this sign-in link has expired or was already used; start again"


@dataclass(frozen=True, slots=True)
class LoginState:
    """The ``state`` a callback carries and the binding cookie that must go with it (the
    sealed login request); ``opened``: the request already opened and checked from them."""

    state: str
    browser: str | None
    opened: LoginRequestRecord | None = None


class KindRule(Protocol):
    """What deciding whether a connection may sign anyone in needs of its kind."""

    @property
    def dev_only(self) -> bool: ...


def check_usable(conn: ConnectionRecord, kind: KindRule | None, *, dev_mode: bool) -> None:
    """Raise InvalidInput for a disabled connection, or a kind this server does not accept
    (unknown: ``kind`` None; or dev-only outside dev mode)."""
    if not conn.enabled:
        raise InvalidInput(f"sign-in through {conn.slug} is disabled")
    if kind is None or (kind.dev_only and not dev_mode):
        raise InvalidInput(f"connection {conn.slug} uses the kind {conn.kind}, which this "
                           "server does not accept (dev-only kinds run under `jitprov dev`)")


def _box(ctx: ServiceContext) -> SecretBox:
    return ctx.secretbox.derive(LOGIN_REQUEST_LABEL)


def seal_login_request(ctx: ServiceContext, conn: ConnectionRecord, state: str,
                       record: LoginRequestRecord) -> str:
    """``record`` sealed for the binding cookie of the login ``state`` through ``conn``."""
    return _box(ctx).seal({"state": hash_token(state), "connection": str(conn.id),
                           "return_to": record.return_to,
                           "expires_at": record.expires_at.isoformat(),
                           "data": json.dumps(record.data, separators=(",", ":"))})


def _unseal(ctx: ServiceContext, cookie: str | None) -> tuple[str, LoginRequestRecord] | None:
    """(the state hash, the request) sealed in the binding ``cookie``; None when there is none
    or it does not open (altered, or sealed under a key no longer configured)."""
    if not cookie:
        return None
    try:
        sealed = _box(ctx).open(cookie)
        return sealed["state"], LoginRequestRecord(
            connection_id=int(sealed["connection"]), return_to=sealed["return_to"],
            data=json.loads(sealed["data"]),
            expires_at=datetime.fromisoformat(sealed["expires_at"]))
    except (SecretsUnreadable, KeyError, ValueError, TypeError):
        return None


def older_logins(ctx: ServiceContext, cookies: Mapping[str, str], *, keep: int) -> list[str]:
    """The names of the binding cookies to drop so that at most ``keep`` of ``cookies``
    (name -> value) remain: the oldest by their request's expiry, those that do not open
    first. Opens nothing when there are no more than ``keep``."""
    if len(cookies) <= keep:
        return []

    def expiry(value: str) -> datetime:
        unsealed = _unseal(ctx, value)
        return unsealed[1].expires_at if unsealed else datetime.min.replace(tzinfo=UTC)

    ordered = sorted(cookies, key=lambda name: expiry(cookies[name]))
    return ordered[:len(cookies) - keep]


def open_login_request(ctx: ServiceContext, conn: ConnectionRecord, login: LoginState,
                       request_id: str | None, now: datetime,
                       uow: UnitOfWork | None = None) -> LoginRequestRecord:
    """The login request of ``login.state`` through ``conn``, sealed in the binding cookie
    this browser sent with it. Writes nothing. Raises LoginRefused: ``login_expired``
    (expired, of another connection, or already spent: read from ``uow``, else in a read
    transaction of its own, only when the browser has no usable cookie), ``login_foreign``
    (no cookie of this state: another browser, or none)."""
    if login.opened is not None:
        return login.opened
    record = _from_cookie(ctx, login)
    if record is None:
        if login.state and _spent(ctx, hash_token(login.state), uow):
            raise LoginRefused("login_expired", EXPIRED, request_id)
        raise LoginRefused("login_foreign", "this sign-in was not started in this browser; "
                           "start again from the application", request_id)
    if record.connection_id != conn.id or record.expires_at <= now:
        raise LoginRefused("login_expired", EXPIRED, request_id)
    return record


def _from_cookie(ctx: ServiceContext, login: LoginState) -> LoginRequestRecord | None:
    """The request sealed in the browser's binding cookie, if it opens and is ``login``'s."""
    unsealed = _unseal(ctx, login.browser)
    if unsealed is None or not hmac.compare_digest(unsealed[0], hash_token(login.state)):
        return None
    return unsealed[1]


def login_in_memory(ctx: ServiceContext, conn: ConnectionRecord, login: LoginState,
                    now: datetime) -> LoginState | None:
    """``login`` opened from its binding cookie alone, when that cookie is ``login``'s and
    its request is of ``conn`` and unexpired; None otherwise, and then
    :func:`opened_login_request` says why (it reads the database and audits)."""
    record = _from_cookie(ctx, login)
    if record is None or record.connection_id != conn.id or record.expires_at <= now:
        return None
    return LoginState(login.state, login.browser, opened=record)


def _spent(ctx: ServiceContext, state_id: str, uow: UnitOfWork | None) -> bool:
    if uow is not None:
        return uow.logins.requests.is_spent(state_id)
    with UnitOfWork(ctx.db, readonly=True) as reader:
        return reader.logins.requests.is_spent(state_id)


def spend_login_request(uow: UnitOfWork, ctx: ServiceContext, conn: ConnectionRecord,
                        login: LoginState, request_id: str | None,
                        now: datetime) -> tuple[LoginRequestRecord, Claim]:
    """Within ``uow``: check the login request and make its spend (single use on every node:
    of two callbacks racing with one state, one wins). Raises LoginRefused like
    :func:`open_login_request`. On PostgreSQL the spend goes with the unit's next read
    (``uow.with_next_read``); :func:`check_spent`, which the caller must run before it
    commits, refuses the loser of a race."""
    record = open_login_request(ctx, conn, login, request_id, now, uow)
    return record, uow.logins.requests.spend(
        state_id=hash_token(login.state), connection_id=conn.id, return_to=record.return_to,
        now=now, expires_at=record.expires_at)


def check_spent(spent: Claim, request_id: str | None) -> None:
    """LoginRefused ``login_expired`` unless this unit spent the login request."""
    if not spent.taken:
        raise LoginRefused("login_expired", EXPIRED, request_id)


def opened_login_request(ctx: ServiceContext, connection_slug: str, login: LoginState, *,
                         request_id: str | None) -> LoginState:
    """``login`` with its request opened and checked, before the callback talks to the IdP
    (OIDC needs the nonce and PKCE verifier for the code exchange; the SAML ACS the
    AuthnRequest ID); it is spent later, in the provisioning transaction. Raises LoginRefused
    (audited) when the request is missing, foreign, expired, spent or of another
    connection."""
    conn = ctx.connections.get(connection_slug)
    try:
        record = open_login_request(ctx, conn, login, request_id, ctx.clock())
    except LoginRefused as refused:
        record_login_failure(ctx, conn.slug, refused.code, refused.reason,
                             request_id=request_id)
        raise
    return LoginState(login.state, login.browser, opened=record)
