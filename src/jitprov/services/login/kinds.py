"""The registry of connection kinds: a dict, not an if-chain, and the one place a login starts.

Each kind satisfies :class:`ConnectionKind`: the protocol's configuration check (what
``add_connection`` runs), whether only ``jitprov dev`` accepts it (the demo IdP), and the
adapter's part of starting a login (what its login request keeps, where the browser goes).
:func:`start_login` does the rest, alike for every kind: the connection must be usable, a new
``state`` is bound to the browser's nonce, and the login request is stored.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Protocol

from jitprov.core.domains import MAX_EMAIL_CHARS
from jitprov.core.errors import InvalidInput
from jitprov.services.common import hash_token
from jitprov.services.context import ServiceContext
from jitprov.services.login.demo import DemoConnection
from jitprov.services.login.oidc import OidcConnection
from jitprov.services.login.saml import SamlConnection
from jitprov.services.login.state import check_usable
from jitprov.services.sessions import safe_return_to
from jitprov.store.records import ConnectionRecord
from jitprov.store.unit_of_work import UnitOfWork


class ConnectionKind(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def dev_only(self) -> bool: ...

    def validate_config(self, config: Mapping[str, object]) -> None:
        """Raise ``InvalidInput`` naming the bad field."""

    def login_request(self, ctx: ServiceContext, conn: ConnectionRecord, state: str, *,
                      base_url: str, login_hint: str | None = None
                      ) -> tuple[dict[str, object], str]:
        """(what the login request keeps besides the browser binding; where to send the
        browser). ``login_hint``: the address home-realm discovery was given, for a kind
        whose protocol can carry it to the IdP (OIDC). Raises (audited) when the IdP cannot
        be asked."""


CONNECTION_KINDS: dict[str, ConnectionKind] = {
    "mock": DemoConnection(),
    "oidc": OidcConnection(),
    "saml": SamlConnection(),
}


def check_connection_usable(conn: ConnectionRecord, *, dev_mode: bool) -> ConnectionKind:
    """The kind of ``conn``; raises InvalidInput for a disabled connection, or a kind this
    server does not accept (unknown, or dev-only outside dev mode)."""
    kind = CONNECTION_KINDS.get(conn.kind)
    check_usable(conn, kind, dev_mode=dev_mode)
    assert kind is not None  # noqa: S101 - check_usable refuses an unknown kind
    return kind


def start_login(ctx: ServiceContext, connection_slug: str, return_to: str | None, *,
                browser_nonce: str, base_url: str, dev_mode: bool,
                login_hint: str | None = None) -> tuple[str, str]:
    """Start a login through the connection: (the ``state`` of its new login request, where
    to send the browser; ``login_hint`` goes on to the IdP where the protocol carries it).
    Raises NotFound, InvalidInput (unusable connection), and what the kind's adapter raises
    (audited)."""
    if login_hint is not None and len(login_hint) > MAX_EMAIL_CHARS:
        raise InvalidInput(f"login_hint: longer than {MAX_EMAIL_CHARS} characters")
    conn = ctx.connections.get(connection_slug)
    kind = check_connection_usable(conn, dev_mode=dev_mode)
    state = secrets.token_urlsafe(32)
    data, location = kind.login_request(ctx, conn, state, base_url=base_url,
                                        login_hint=login_hint)
    begin_login(ctx, conn.slug, return_to, {"browser": hash_token(browser_nonce), **data},
                dev_mode=dev_mode, state=state)
    return state, location


def begin_login(ctx: ServiceContext, connection_slug: str, return_to: str | None,
                data: Mapping[str, object] | None = None, *, dev_mode: bool = False,
                state: str | None = None) -> tuple[str, ConnectionRecord]:
    """Store a login request; returns the ``state`` value to send to the IdP (``state`` if
    given, else a new random one), and the connection. Raises NotFound for an unknown
    connection, InvalidInput if it is unusable."""
    state = state or secrets.token_urlsafe(32)
    now = ctx.clock()
    with UnitOfWork(ctx.db) as uow:
        conn = uow.config.connections.get(connection_slug)
        check_connection_usable(conn, dev_mode=dev_mode)
        uow.logins.requests.create(state_id=hash_token(state), connection_id=conn.id,
                                   return_to=safe_return_to(return_to, ctx.return_hosts),
                                   data=data or {},
                                   now=now, expires_at=now + ctx.login_request_ttl)
        uow.commit()
    return state, conn
