"""The registry of connection kinds: a dict, not an if-chain, and the one place a login starts.

Each kind satisfies :class:`ConnectionKind`: the protocol's configuration check (what
``add_connection`` runs), whether only ``jitprov dev`` accepts it (the demo IdP), and the
adapter's part of starting a login (what its login request keeps, where the browser goes).
:func:`start_login` does the rest, alike for every kind: the connection must be usable, a new
``state`` is made, and the login request is sealed for the browser's binding cookie (nothing is
written: see ``state.py``).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from jitprov.core.domains import MAX_EMAIL_CHARS
from jitprov.core.errors import InvalidInput, JitprovError
from jitprov.services.common import hash_token
from jitprov.services.context import ServiceContext
from jitprov.services.login.demo import DemoConnection
from jitprov.services.login.failures import record_login_failure
from jitprov.services.login.oidc import OidcConnection
from jitprov.services.login.saml import SamlConnection
from jitprov.services.login.state import PREVIOUS_SESSION, check_usable, seal_login_request
from jitprov.services.sessions import safe_return_to
from jitprov.store.records import ConnectionRecord, LoginRequestRecord

#: the longest ``return_to`` a login keeps: the request travels in a cookie
MAX_RETURN_TO_CHARS = 1024
#: the largest binding cookie value: browsers keep 4 KB per cookie, but a proxy's defaults
#: bound whole headers (nginx: 4 KB of response headers, 8 KB per request header line) and
#: a browser may hold a few logins in flight
MAX_COOKIE_BYTES = 2048


class ConnectionKind(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def dev_only(self) -> bool: ...

    def starts_offline(self, ctx: ServiceContext, conn: ConnectionRecord) -> bool:
        """Whether :meth:`login_request` can build its request now from what this process
        holds: worth trying on the event loop with ``offline=True``."""

    @property
    def answers_cross_site_post(self) -> bool:
        """Whether the IdP's answer reaches the callback as a POST from another site (the
        binding cookie must then be ``SameSite=None`` to come along, on https)."""

    def validate_config(self, config: Mapping[str, object]) -> None:
        """Raise ``InvalidInput`` naming the bad field."""

    def login_request(self, ctx: ServiceContext, conn: ConnectionRecord, state: str, *,
                      base_url: str, login_hint: str | None = None, offline: bool = False
                      ) -> tuple[dict[str, object], str]:
        """(what the login request keeps; where to send the browser). ``login_hint``: the
        address home-realm discovery was given, for a kind whose protocol can carry it to
        the IdP (OIDC). ``offline``: from what this process holds only, never the network
        (the caller is the event loop); a JitprovError when that is not enough. Raises a
        JitprovError when the IdP cannot be asked (audited by :func:`start_login`)."""


CONNECTION_KINDS: dict[str, ConnectionKind] = {
    "mock": DemoConnection(),
    "oidc": OidcConnection(),
    "saml": SamlConnection(),
}


def starts_offline(ctx: ServiceContext, conn: ConnectionRecord) -> bool:
    """Whether a login through ``conn`` is likely to start now without network I/O (see
    ``ConnectionKind.starts_offline``); False for a kind this server does not know, and for
    a connection whose kind cannot tell (its configuration unreadable: the start in a
    thread says why, audited)."""
    kind = CONNECTION_KINDS.get(conn.kind)
    if kind is None:
        return False
    try:
        return kind.starts_offline(ctx, conn)
    except JitprovError:
        return False


def check_connection_usable(conn: ConnectionRecord, *, dev_mode: bool) -> ConnectionKind:
    """The kind of ``conn``; raises InvalidInput for a disabled connection, or a kind this
    server does not accept (unknown, or dev-only outside dev mode)."""
    kind = CONNECTION_KINDS.get(conn.kind)
    check_usable(conn, kind, dev_mode=dev_mode)
    assert kind is not None  # noqa: S101 - check_usable refuses an unknown kind
    return kind


@dataclass(frozen=True, slots=True)
class StartedLogin:
    """A login started: its ``state``, where to send the browser, the value of the binding
    cookie the browser must keep (the login request, sealed), and whether the IdP answers
    with a cross-site POST."""

    state: str
    location: str
    cookie: str
    cross_site_post: bool = False


def start_login(ctx: ServiceContext, connection_slug: str, return_to: str | None, *,
                base_url: str, dev_mode: bool, login_hint: str | None = None,
                previous_session: str | None = None, request_id: str | None = None,
                connection: ConnectionRecord | None = None,
                audit: bool = True, offline: bool = False) -> StartedLogin:
    """Start a login through the connection (``login_hint`` goes on to the IdP where the
    protocol carries it). Writes nothing: the login request is sealed into the binding
    cookie, with the hash of ``previous_session`` (the browser's session cookie at the
    start: the callback ends it, though a cross-site POST back does not carry it).
    ``connection``: the record, when the caller already holds it. Raises NotFound,
    InvalidInput (an unusable connection, a ``return_to`` or ``login_hint`` too long), and
    what the kind's adapter raises: a JitprovError audited as ``login.failed`` unless
    ``audit`` is false (a caller that will try again where it may write). ``offline``: with
    no network I/O, from what this process holds (the caller is the event loop); a
    JitprovError when that is not enough."""
    if login_hint is not None and len(login_hint) > MAX_EMAIL_CHARS:
        raise InvalidInput(f"login_hint: longer than {MAX_EMAIL_CHARS} characters")
    if return_to is not None and len(return_to) > MAX_RETURN_TO_CHARS:
        raise InvalidInput(f"return_to: longer than {MAX_RETURN_TO_CHARS} characters")
    conn = connection if connection is not None else ctx.connections.get(connection_slug)
    kind = check_connection_usable(conn, dev_mode=dev_mode)
    state = secrets.token_urlsafe(32)
    try:
        data, location = kind.login_request(ctx, conn, state, base_url=base_url,
                                            login_hint=login_hint, offline=offline)
    except JitprovError as exc:
        if audit:
            record_login_failure(ctx, conn.slug, exc.code, str(exc), request_id=request_id)
        raise
    if previous_session:
        data = {**data, PREVIOUS_SESSION: hash_token(previous_session)}
    now = ctx.clock()
    record = LoginRequestRecord(connection_id=conn.id,
                                return_to=safe_return_to(return_to, ctx.return_hosts),
                                data=data, expires_at=now + ctx.login_request_ttl)
    cookie = seal_login_request(ctx, conn, state, record)
    if len(cookie) > MAX_COOKIE_BYTES:  # escapes and non-ASCII grow a return_to
        raise InvalidInput("return_to: too long to keep with the sign-in (at most "
                           f"{MAX_COOKIE_BYTES} bytes sealed); use a shorter link")
    return StartedLogin(state, location, cookie, cross_site_post=kind.answers_cross_site_post)
