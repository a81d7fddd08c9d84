"""Sessions: server-side, stored by hash, shared by every node; ended by their own sign-out
or by their IdP's logout (:func:`revoke_idp_sessions`, shared by OIDC back-channel logout and
SAML Single Logout)."""

from __future__ import annotations

import ipaddress
import logging
import re
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from jitprov.core.audit import AuditEvent
from jitprov.core.errors import InvalidInput, JitprovError
from jitprov.services import metrics
from jitprov.services.common import hash_token
from jitprov.services.context import ServiceContext
from jitprov.services.session_cache import Entry as CachedSession
from jitprov.store.records import AccountView, EndedSession, IdpLogoutMatch, SessionState
from jitprov.store.unit_of_work import UnitOfWork

log = logging.getLogger("jitprov.sessions")


@dataclass(frozen=True, slots=True)
class SignedIn:
    """Who a session belongs to, as ``GET /me`` shows it."""

    view: AccountView
    connection: str | None
    subject: str | None
    at: datetime  # when the session was read: time-bound grants past it are left out
    method: str | None = None  # sso | passkey | offline | break_glass
    offline: bool = False
    device_id: int | None = None

    def identity(self) -> dict[str, object]:
        """Who is signed in as forward-auth's headers and the identity token say it: the
        fields of :meth:`as_me` they read (id, tenant, email, name, the roles held now,
        groups) and no more (forward-auth asks on every request an app gets)."""
        acc = self.view.account
        return {"id": acc.id, "tenant": self.view.tenant_slug,
                "email": acc.profile.get("email"), "name": acc.profile.get("name"),
                "roles": sorted({g.role for g in acc.at(self.at).grants}),
                "groups": sorted(acc.groups)}

    def as_me(self) -> dict[str, object]:
        acc = self.view.account
        grants = sorted(acc.at(self.at).grants)
        attributes = {k: v for k, v in sorted(acc.profile.items()) if k not in ("email", "name")}
        return {
            "id": acc.id, "tenant": self.view.tenant_slug, "connection": self.connection,
            "external_id": self.subject, "email": acc.profile.get("email"),
            "name": acc.profile.get("name"), "roles": sorted({g.role for g in grants}),
            "groups": sorted(acc.groups), "attributes": attributes,
            "provisioned_by": acc.provisioned_by,
            "created_at": self.view.created_at.isoformat(),
            "updated_at": self.view.updated_at.isoformat(),
            # additive to the contract: where each role came from
            "grants": [{"role": g.role, "source": g.source,
                        "expires_at": g.expires_at.isoformat() if g.expires_at else None}
                       for g in grants],
            "pending_roles": [{"role": p.role, "source": p.source} for p in sorted(acc.pending)],
            "status": acc.status,
        }


def safe_return_to(value: str | None, allowed_hosts: Collection[str] = ()) -> str:
    """A local path, or an absolute URL to one of ``allowed_hosts``
    (``JITPROV_ALLOWED_RETURN_HOSTS``, see :func:`allowed_return_url`); anything else
    (another host, ``//host``, backslashes, control characters) becomes ``/``."""
    if value and allowed_hosts and not value.startswith("/"):
        return allowed_return_url(value, allowed_hosts) or "/"
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or any(ord(c) < 0x20 for c in value):
        return "/"
    return value


#: ``scheme://host[:port]`` and the rest, after the whole value was checked to be printable
#: ASCII without spaces or backslashes; no userinfo (``@`` before the path), no IPv6 literal
_ABSOLUTE_URL = re.compile(r"(https?)://([a-z0-9.-]+)(?::([0-9]{1,5}))?([/?#].*)?",
                           re.IGNORECASE)
_DEFAULT_PORTS = {"https": 443, "http": 80}


def allowed_return_url(value: str, allowed_hosts: Collection[str]) -> str | None:
    """``value`` as a normalised absolute URL (scheme and host lowercased, the default port
    dropped) when it leads to one of ``allowed_hosts``, else None.

    An entry ``host`` allows only the scheme's default port, ``host:port`` that port; the
    match is exact (no wildcard, no parent domain). The scheme is https, or http for a
    loopback host (:func:`is_loopback_host`). The whole value must be printable ASCII with
    no space, backslash or control character: a browser and this parser then read the same
    host (no userinfo, no IDN look-alike, no tab dropped inside ``//``)."""
    if not value.isascii() or any(not 0x21 <= ord(c) <= 0x7E for c in value) or \
            "\\" in value:
        return None
    match = _ABSOLUTE_URL.fullmatch(value)
    if match is None:
        return None
    scheme, host, port_text, rest = match.groups()
    scheme, host = scheme.lower(), host.lower()
    port = int(port_text) if port_text else _DEFAULT_PORTS[scheme]
    if not 1 <= port <= 65535:
        return None
    default = port == _DEFAULT_PORTS[scheme]
    allowed = {h.lower() for h in allowed_hosts}
    if f"{host}:{port}" not in allowed and not (default and host in allowed):
        return None
    if scheme == "http" and not is_loopback_host(host):
        return None
    rest = rest or "/"
    return (f"{scheme}://{host}{'' if default else f':{port}'}"
            f"{rest if rest.startswith('/') else '/' + rest}")


def url_origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) of a URL, lowercased, the scheme's default port filled in: two
    URLs of one origin give the same value; ("", "", None) for a value that is no URL."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # an unclosed "[", a port out of range
        return "", "", None
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), port or _DEFAULT_PORTS.get(scheme)


def is_loopback_host(host: str) -> bool:
    """``localhost``, a name under ``.localhost`` (RFC 6761 section 6.3: always loopback)
    or a 127.0.0.0/8 address: where plain http may be used."""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.IPv4Address(host).is_loopback
    except ValueError:
        return False


def refusal(record: SessionState, now: datetime) -> str | None:
    """Why an active session row may not be used now: ``idle`` (a device session whose last
    activity is older than its idle limit), ``idp_back`` (an offline session whose IdP has
    answered since: it must sign in through the IdP again), or None."""
    if record.idle_seconds is not None and record.last_seen_at is not None and \
            now - record.last_seen_at > timedelta(seconds=record.idle_seconds):
        return "idle"
    if record.offline and record.idp_back:
        return "idp_back"
    return None


def read_session(ctx: ServiceContext, token: str | None) -> tuple[SessionState | None,
                                                                  str | None]:
    """The session row of a cookie value (one indexed read) and why it may not be used
    (see :func:`refusal`); (None, None) when there is no active session."""
    if not token:
        return None, None
    with UnitOfWork(ctx.db, readonly=True) as uow:
        record = uow.sessions.get_active_state(hash_token(token), ctx.clock())
    return record, (None if record is None else refusal(record, ctx.clock()))


def remembered_session(ctx: ServiceContext, token: str | None) -> SignedIn | None:
    """What :func:`current_session` answers for a cookie value, when the session cache can say
    it from memory (PostgreSQL's notified cache serving; SQLite's data version unmoved since
    the counter was read, or the counter read again and unmoved; and the session held); else
    None, and the caller asks :func:`current_session`. No wait beyond a short lock, and at
    most the counter's one-row read, which in WAL mode waits for no writer: the event loop
    may call it and skip a worker thread. A remembered session is never a device or
    offline one (those are not cached), so nothing is left to write."""
    cache = ctx.session_cache
    if not token or cache is None:
        return None
    if cache.shared:
        if not cache.serving:
            return None
    else:
        seen = cache.observe()
        if not cache.unchanged(seen) and not cache.caught_up(seen):
            return None
    now = ctx.clock()
    entry = cache.get(hash_token(token), now)
    if entry is None:
        return None
    return _remembered(entry, now)


def _remembered(entry: CachedSession, now: datetime) -> SignedIn:
    """The signed-in view a cache entry holds, read at ``now``."""
    return SignedIn(entry.view, entry.connection, entry.subject, now, method=entry.method)


def current_session(ctx: ServiceContext, token: str | None) -> SignedIn | None:
    """The signed-in account for a cookie value, or None (unknown, expired, revoked, inactive,
    idle past its device's limit, or offline while its IdP is back).

    With the session cache (services/session_cache.py) a session seen before is answered
    from memory: on PostgreSQL with no database read, on SQLite with none either while
    nothing was committed since the change counter was read, else with that counter's read.
    A device session's activity is recorded here (at most every few seconds: one small
    write), which is the idle lock's clock; it is never cached."""
    if not token:
        return None
    now = ctx.clock()
    session_id = hash_token(token)
    cache = ctx.session_cache
    epoch = 0
    if cache is not None and cache.shared:
        cache.start()
        if cache.serving:
            epoch = cache.epoch()
            entry = cache.get(session_id, now)
            if entry is not None:
                return _remembered(entry, now)
    seen = None
    if cache is not None and not cache.shared:
        seen = cache.observe()  # before the snapshot: a commit after it moves it
        if cache.unchanged(seen):
            entry = cache.get(session_id, now)
            if entry is not None:
                return _remembered(entry, now)
    with UnitOfWork(ctx.db, readonly=True) as uow:
        if cache is not None and not cache.shared:
            version = uow.sessions.auth_version()
            synced = cache.sync_version(version)
            if synced is not None:
                cache.confirm(seen, version)
                epoch = synced
                entry = cache.get(session_id, now)
                if entry is not None:
                    return _remembered(entry, now)
            else:
                cache = None  # an older snapshot than the cache's: read, keep nothing
        record = uow.sessions.get_active_state(session_id, now)
        if record is None or refusal(record, now) is not None:
            return None
        signed_in = SignedIn(uow.accounts.view(record.account_id), record.connection_slug,
                             record.subject, now, method=record.method,
                             offline=record.offline, device_id=record.device_id)
    if cache is not None and record.idle_seconds is None and record.device_id is None and \
            not record.offline and (cache.serving or not cache.shared):
        cache.put(session_id, CachedSession(
            record.account_id, signed_in.view, record.connection_slug, record.subject,
            record.method, record.expires_at, time.monotonic()), epoch)
    if record.idle_seconds is not None and (
            record.last_seen_at is None
            or now - record.last_seen_at >= _touch_every(record.idle_seconds)):
        with UnitOfWork(ctx.db) as uow:
            uow.sessions.touch(record.id, now)
            uow.commit()
    return signed_in


def _touch_every(idle_seconds: int) -> timedelta:
    """How stale ``last_seen_at`` may get before a request rewrites it: a fifth of the idle
    limit, between 1 and 30 seconds (the lock is that much early at worst)."""
    return timedelta(seconds=max(1, min(30, idle_seconds // 5)))


def end_session(ctx: ServiceContext, token: str | None) -> bool:
    """Revoke the session of this cookie value; True if one was active."""
    if not token:
        return False
    with UnitOfWork(ctx.db) as uow:
        revoked = uow.sessions.revoke(hash_token(token), ctx.clock())
        uow.commit()
    _forget(ctx, session_id=hash_token(token))
    return revoked


def _forget(ctx: ServiceContext, *, session_id: str | None = None,
            accounts: Collection[str] = ()) -> None:
    """This process's cache forgets at once what it just revoked (the database's
    notification does the same on every node, a few milliseconds later)."""
    if ctx.session_cache is None:
        return
    if session_id is not None:
        ctx.session_cache.evict_session(session_id)
    for account_id in accounts:
        ctx.session_cache.evict_account(account_id)


def sign_out(ctx: ServiceContext, token: str | None) -> EndedSession | None:
    """Revoke the session of this cookie value and return what its IdP's logout needs (its
    connection, the sealed ID token); None if no session was active."""
    if not token:
        return None
    with UnitOfWork(ctx.db) as uow:
        ended = uow.sessions.end(hash_token(token), ctx.clock())
        uow.commit()
    _forget(ctx, session_id=hash_token(token))
    return ended


class UnknownIdpSession(InvalidInput):
    """An IdP's logout names a session id or subject no session of the connection ever
    carried: nothing is revoked."""

    code = "unknown_session"


def revoke_idp_sessions(ctx: ServiceContext, connection: str, *, sid: str | None = None,
                        sub: str | None = None, reason: str, request_id: str | None = None,
                        guard: Callable[[UnitOfWork], None] | None = None,
                        require_known: bool = True) -> IdpLogoutMatch:
    """End the sessions an IdP's logout names: those of ``connection`` with the IdP session
    id ``sid`` (OIDC ``sid``, SAML ``SessionIndex``) and/or the subject ``sub`` (OIDC ``sub``,
    SAML NameID); both must match when both are given.

    One unit of work: ``guard`` runs first and may raise (the logout token's ``jti`` is
    spent there, so it is spent exactly when the revocation commits); then the sessions are
    revoked, and each account whose sessions ended gets a ``session.revoked`` audit event
    (actor ``idp:<connection>``, with ``reason``) and webhook event. ``/auth/verify`` and
    every page read the session row at each request, so the next request is refused.
    With ``require_known``, a session id or subject that no session of the connection ever
    carried (revoked and expired ones count until the purge) raises UnknownIdpSession and
    rolls back; one whose sessions already ended revokes nothing and succeeds. Raises
    NotFound for an unknown connection."""
    conn = ctx.connections.get(connection)
    now = ctx.clock()
    with UnitOfWork(ctx.db) as uow:
        if guard is not None:
            guard(uow)
        match = uow.sessions.revoke_for_idp(conn.id, idp_session_id=sid, subject=sub, now=now)
        if require_known and not match.known:
            raise UnknownIdpSession("no session of this connection has that "
                                    + ("session id (sid)" if sid is not None else "subject"))
        for account_id, count in match.revoked:
            data: dict[str, object] = {"connection": conn.slug, "reason": reason,
                                       "sessions": count}
            uow.audit.append(conn.tenant_id, conn.tenant_slug, AuditEvent(
                "session.revoked", f"idp:{conn.slug}", data, account_id=account_id,
                request_id=request_id), now)
            uow.outbox.add(conn.tenant_id, "session.revoked", {
                "tenant": conn.tenant_slug, "account_id": account_id, **data}, now)
        uow.commit()
    _forget(ctx, accounts=[account_id for account_id, _ in match.revoked])
    metrics.SESSIONS_REVOKED.inc(sum(count for _, count in match.revoked))
    return match


def record_logout_refusal(ctx: ServiceContext, connection: str, code: str, reason: str, *,
                          request_id: str | None) -> None:
    """Audit an IdP logout message that was refused (``logout.refused``, with its code and
    reason, never the message) in the connection's tenant. Never raises: the protocol's
    answer matters more, and the server log keeps the refusal if the database cannot."""
    try:
        conn = ctx.connections.get(connection)
        with UnitOfWork(ctx.db) as uow:
            uow.audit.append(conn.tenant_id, conn.tenant_slug, AuditEvent(
                "logout.refused", f"idp:{conn.slug}",
                {"connection": conn.slug, "code": code, "reason": reason},
                request_id=request_id), ctx.clock())
            uow.commit()
    except JitprovError:
        log.warning("logout.refused not audited (connection %s, code %s, request %s)",
                    connection, code, request_id, exc_info=True)
