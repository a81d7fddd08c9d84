"""The login request a callback answers: who may start one, and the one check that a
callback's ``state`` names an unspent request of this connection, started by this browser.

The request row (stored by the SHA-256 of its ``state``) is valid across nodes, single use and
expiring; the browser that started the login holds a random nonce whose hash the row keeps,
so a callback posted from another browser (login CSRF) is refused.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from jitprov.core.errors import InvalidInput
from jitprov.services.common import LoginRefused, hash_token
from jitprov.services.context import ServiceContext
from jitprov.services.login.failures import record_login_failure
from jitprov.store.records import ConnectionRecord, LoginRequestRecord
from jitprov.store.unit_of_work import UnitOfWork


@dataclass(frozen=True, slots=True)
class LoginState:
    """The ``state`` a callback carries and the browser binding cookie that must go with it."""

    state: str
    browser: str | None


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


def check_login_request(record: LoginRequestRecord | None, conn: ConnectionRecord,
                        login: LoginState, request_id: str | None) -> LoginRequestRecord:
    """``record`` (found by ``login.state``) if it is a live request of ``conn`` started by the
    browser of ``login``. Raises LoginRefused: ``login_expired`` (unknown, spent, expired or
    of another connection), ``login_foreign`` (another browser, or none)."""
    if record is None or record.connection_id != conn.id:
        raise LoginRefused("login_expired", "this sign-in link has expired or was already "
                           "used; start again", request_id)
    expected = str(record.data.get("browser", ""))
    presented = hash_token(login.browser) if login.browser else ""
    if not expected or not hmac.compare_digest(expected, presented):
        raise LoginRefused("login_foreign", "this sign-in was not started in this browser; "
                           "start again from the application", request_id)
    return record


def spend_login_request(uow: UnitOfWork, conn: ConnectionRecord, login: LoginState,
                        request_id: str | None, now: datetime) -> LoginRequestRecord:
    """Within ``uow``: consume the request and check it. A foreign browser's attempt still
    spends it (committed before the refusal: the state may be an attacker's)."""
    record = uow.logins.requests.consume(hash_token(login.state), now)
    try:
        return check_login_request(record, conn, login, request_id)
    except LoginRefused as refused:
        if refused.code == "login_foreign":
            uow.commit()
        raise


def consume_login_request(ctx: ServiceContext, connection_slug: str, login: LoginState, *,
                          request_id: str | None) -> LoginRequestRecord:
    """Spend the login request a callback answers, before talking to the IdP (OIDC needs its
    nonce and PKCE verifier for the code exchange). Raises LoginRefused (audited) when the
    state is unknown, spent, expired, of another connection or from another browser."""
    conn = ctx.connections.get(connection_slug)
    try:
        with UnitOfWork(ctx.db) as uow:
            record = spend_login_request(uow, conn, login, request_id, ctx.clock())
            uow.commit()
            return record
    except LoginRefused as refused:
        record_login_failure(ctx, conn.slug, refused.code, refused.reason,
                             request_id=request_id)
        raise
