"""Passkeys (WebAuthn): enrolment after an SSO login, username-less sign-in, shared-device
switch-user, role freshness and offline sign-in while the IdP is unreachable.

Sign-in never creates an account: a passkey is bound to an account that JIT (or SCIM) made,
and the account must be active at every sign-in. Roles are trusted for the tenant's
``roles_max_age`` after the IdP last confirmed them (the identity's ``last_login_at``); past
it, a passkey sign-in steps up to the IdP instead. When the IdP is unreachable (connection
health), a fresh-enough account signs in ``offline``: a short session that ends as soon as the
IdP answers again. Challenges live in the database (single use, 5 minutes, every node).
Every step is audited; the security-relevant ones also go to the outbox.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import httpx

from jitprov.core.audit import AuditEvent
from jitprov.core.errors import InvalidInput, JitprovError
from jitprov.protocols.oidc import OidcConfig
from jitprov.protocols.webauthn import (
    RelyingParty,
    WebAuthnError,
    authentication_options,
    client_challenge,
    credential_id_of,
    new_challenge,
    registration_options,
    user_handle_of,
    verify_authentication,
    verify_registration,
)
from jitprov.services.common import LoginRefused, hash_token
from jitprov.services.context import ServiceContext
from jitprov.services.devices import (
    announce_switch,
    next_shift_boundary,
    policy_from_settings,
)
from jitprov.services.sessions import read_session, safe_return_to
from jitprov.store.devices import DeviceRecord, PasskeyRecord, SignInFacts
from jitprov.store.records import TenantRecord
from jitprov.store.unit_of_work import UnitOfWork

CHALLENGE_TTL = timedelta(minutes=5)
MAX_PASSKEYS = 20  # per account
ENROL_METHODS = frozenset({"sso"})  # a passkey is enrolled only from an IdP-backed session


class PasskeyRefused(LoginRefused):
    """A passkey ceremony that ends without what was asked. 401 when the caller must sign in
    first, else like LoginRefused (400 for a bad request, 403 for policy)."""

    def __init__(self, code: str, reason: str, request_id: str | None = None,
                 status: int | None = None) -> None:
        super().__init__(code, reason, request_id)
        if status is not None:
            self.status = status
        elif code.startswith(("wrong_", "counter_", "backup_", "bad_", "invalid_",
                              "challenge_", "user_not_")):
            self.status = 400


def user_handle(account_id: str) -> bytes:
    """The WebAuthn ``user.id``: the account id (random, not personal data, §14.6.1)."""
    return account_id.encode()


# -- enrolment ------------------------------------------------------------------------------

def begin_registration(ctx: ServiceContext, rp: RelyingParty, token: str | None) -> dict[str, Any]:
    """Creation options for the signed-in account (its session must come from the IdP, not
    from a passkey or offline). Raises PasskeyRefused."""
    record, reason = read_session(ctx, token)
    if record is None or reason is not None:
        raise PasskeyRefused("unauthenticated", "sign in first", status=401)
    if (record.method or "sso") not in ENROL_METHODS or record.offline:
        raise PasskeyRefused("fresh_login_required", "sign in through your identity provider "
                             "to add a passkey")
    now = ctx.clock()
    challenge = new_challenge()
    with UnitOfWork(ctx.db) as uow:
        view = uow.accounts.view(record.account_id)
        if view.account.kind != "user":
            raise PasskeyRefused("not_allowed", "this account cannot have passkeys")
        existing = uow.devices.passkeys.for_account(record.account_id)
        if len(existing) >= MAX_PASSKEYS:
            raise PasskeyRefused("too_many_passkeys", f"at most {MAX_PASSKEYS} passkeys; "
                                 "remove one first")
        uow.devices.challenges.add(challenge_hash=_digest(challenge), purpose="register",
                                   account_id=record.account_id, device_id=None, now=now,
                                   expires_at=now + CHALLENGE_TTL)
        uow.commit()
    profile = view.account.profile
    name = profile.get("email") or record.account_id
    return registration_options(rp, user_id=user_handle(record.account_id), user_name=name,
                                display_name=profile.get("name") or name, challenge=challenge,
                                exclude=[p.credential_id for p in existing])


def finish_registration(ctx: ServiceContext, rp: RelyingParty, token: str | None,
                        credential: Mapping[str, Any], *, name: str = "",
                        request_id: str | None = None) -> PasskeyRecord:
    """Verify the authenticator's answer and bind the credential to the signed-in account.
    Audited ``passkey.registered``, announced to webhooks. Raises PasskeyRefused."""
    record, reason = read_session(ctx, token)
    if record is None or reason is not None:
        raise PasskeyRefused("unauthenticated", "sign in first", request_id, status=401)
    now = ctx.clock()
    with UnitOfWork(ctx.db) as uow:
        try:
            challenge = client_challenge(credential)
        except WebAuthnError as exc:
            raise PasskeyRefused(exc.code, str(exc), request_id) from exc
        spent = uow.devices.challenges.consume(_digest(challenge), "register", now)
        if spent is None or spent.account_id != record.account_id:
            uow.commit()
            raise PasskeyRefused("challenge_expired", "this passkey request expired or was "
                                 "already used; try again", request_id)
        try:
            verified = verify_registration(rp, credential, challenge=challenge)
        except WebAuthnError as exc:
            uow.commit()  # the challenge is spent either way
            raise PasskeyRefused(exc.code, f"the passkey could not be verified ({exc.code})",
                                 request_id) from exc
        if uow.devices.passkeys.find(verified.credential_id) is not None:
            uow.commit()
            raise PasskeyRefused("already_registered", "this passkey is already registered",
                                 request_id)
        label = (name.strip() or f"Passkey {now:%Y-%m-%d}")[:100]
        passkey_id = uow.devices.passkeys.add(
            account_id=record.account_id, credential_id=verified.credential_id,
            public_key=verified.public_key, sign_count=verified.sign_count,
            transports=verified.transports, backup_eligible=verified.backup_eligible,
            backup_state=verified.backup_state, aaguid=verified.aaguid, name=label, now=now)
        ten = _tenant_of(uow, record.account_id)
        data = {"passkey": passkey_id, "name": label, "aaguid": verified.aaguid,
                "backup_eligible": verified.backup_eligible,
                "backup_state": verified.backup_state}
        uow.audit.append(ten.id, ten.slug, AuditEvent(
            "passkey.registered", f"account:{record.account_id}", data,
            account_id=record.account_id, request_id=request_id), now)
        uow.outbox.add(ten.id, "passkey.registered",
                       {"tenant": ten.slug, "account_id": record.account_id, **data}, now)
        stored = uow.devices.passkeys.get(passkey_id)
        uow.commit()
    return stored


def list_passkeys(ctx: ServiceContext, account_id: str, *,
                  include_revoked: bool = False) -> list[PasskeyRecord]:
    """Raises NotFound for an unknown account."""
    with UnitOfWork(ctx.db, readonly=True) as uow:
        uow.accounts.view(account_id)
        return uow.devices.passkeys.for_account(account_id, include_revoked=include_revoked)


def revoke_passkey(ctx: ServiceContext, passkey_id: int, *, actor: str,
                   owner: str | None = None, request_id: str | None = None) -> PasskeyRecord:
    """Revoke a passkey (``owner``: only if it is that account's, for the self-service page);
    the sessions opened with it end now (a lost key). Audited ``passkey.revoked``, announced.
    Raises NotFound, InvalidInput."""
    now = ctx.clock()
    with UnitOfWork(ctx.db) as uow:
        passkey = uow.devices.passkeys.get(passkey_id)
        if owner is not None and passkey.account_id != owner:
            raise InvalidInput(f"no passkey {passkey_id} on this account")
        ended = uow.devices.passkeys.revoke(passkey_id, now)
        if ended is None:
            raise InvalidInput(f"passkey {passkey_id} is already revoked")
        ten = _tenant_of(uow, passkey.account_id)
        data = {"passkey": passkey_id, "name": passkey.name, "sessions_ended": ended}
        uow.audit.append(ten.id, ten.slug, AuditEvent(
            "passkey.revoked", actor, data, account_id=passkey.account_id,
            request_id=request_id), now)
        uow.outbox.add(ten.id, "passkey.revoked",
                       {"tenant": ten.slug, "account_id": passkey.account_id, **data}, now)
        uow.commit()
    return passkey


# -- sign-in --------------------------------------------------------------------------------

def begin_authentication(ctx: ServiceContext, rp: RelyingParty,
                         device: DeviceRecord | None = None) -> dict[str, Any]:
    """Request options for a username-less sign-in (on ``device`` if given)."""
    now = ctx.clock()
    challenge = new_challenge()
    with UnitOfWork(ctx.db) as uow:
        uow.devices.challenges.add(challenge_hash=_digest(challenge), purpose="authenticate",
                                   account_id=None, device_id=device.id if device else None,
                                   now=now, expires_at=now + CHALLENGE_TTL)
        uow.commit()
    return authentication_options(rp, challenge=challenge)


@dataclass(frozen=True, slots=True)
class PasskeyLogin:
    """The end of a passkey sign-in: a session (``token``), or a step-up to the IdP
    (``redirect`` without a token)."""

    account_id: str
    token: str | None
    redirect: str
    offline: bool = False
    expires_at: datetime | None = None
    switched_from: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return (f"PasskeyLogin(account_id={self.account_id!r}, token=<hidden>, "
                f"redirect={self.redirect!r}, offline={self.offline})")


def finish_authentication(ctx: ServiceContext, rp: RelyingParty,
                          credential: Mapping[str, Any], *, device: DeviceRecord | None = None,
                          return_to: str | None = None, previous_session: str | None = None,
                          user_agent: str | None = None,
                          request_id: str | None = None) -> PasskeyLogin:
    """Verify an assertion and open a session (see the module docstring). On a device, every
    earlier session of the device ends (``session.switched``). Raises PasskeyRefused; each
    refusal after the challenge is found is audited (``login.failed`` / ``login.denied``)."""
    now = ctx.clock()
    target = safe_return_to(return_to, ctx.return_hosts) if device is None else "/device"
    try:
        challenge = client_challenge(credential)
        credential_id = credential_id_of(credential)
        handle = user_handle_of(credential)
    except WebAuthnError as exc:
        raise PasskeyRefused(exc.code, "the passkey answer is malformed", request_id) from exc
    with UnitOfWork(ctx.db) as uow:
        spent = uow.devices.challenges.consume(_digest(challenge), "authenticate", now)
        if spent is None or spent.device_id != (device.id if device else None):
            uow.commit()
            raise PasskeyRefused("challenge_expired", "this sign-in expired or was already "
                                 "used; try again", request_id)
        passkey = uow.devices.passkeys.find(credential_id)
        if passkey is None or passkey.revoked_at is not None:
            if device is not None:
                _audit_failure(uow, device.tenant_id, device.tenant_slug, None,
                               "unknown_passkey", device, request_id, now)
            uow.commit()
            raise PasskeyRefused("unknown_passkey", "this passkey is not registered here (or "
                                 "was removed)", request_id, status=403)
        facts = uow.devices.accounts.sign_in_facts(passkey.account_id)
        try:
            # WebAuthn L3 section 7.2 step 6: the user was not identified before this
            # (username-less) ceremony, so the userHandle must be present and name the owner
            if handle is None or not hmac.compare_digest(handle,
                                                         user_handle(passkey.account_id)):
                raise WebAuthnError("wrong_user_handle", "the userHandle is missing or names "
                                    "another account")
            assertion = verify_authentication(
                rp, credential, challenge=challenge, public_key=passkey.public_key,
                sign_count=passkey.sign_count, backup_eligible=passkey.backup_eligible)
            if not uow.devices.passkeys.record_use(passkey.id, sign_count=assertion.sign_count,
                                                   backup_state=assertion.backup_state, now=now):
                raise WebAuthnError("counter_regression", "a concurrent use moved the counter")
        except WebAuthnError as exc:
            _audit_failure(uow, facts.tenant_id, facts.tenant_slug, passkey.account_id,
                           exc.code, device, request_id, now)
            uow.commit()  # the audit event and the spent challenge
            raise PasskeyRefused(exc.code, f"the passkey could not be verified ({exc.code})",
                                 request_id) from exc
        result, refusal = _sign_in(uow, ctx, facts, passkey, device=device, target=target,
                                   previous_session=previous_session, user_agent=user_agent,
                                   request_id=request_id, now=now)
        uow.commit()  # a refusal commits its audit event, the spent challenge, the counter
    if refusal is not None:
        raise refusal
    assert result is not None  # noqa: S101
    return result


def _sign_in(uow: UnitOfWork, ctx: ServiceContext, facts: SignInFacts, passkey: PasskeyRecord,
             *, device: DeviceRecord | None, target: str,
             previous_session: str | None, user_agent: str | None, request_id: str | None,
             now: datetime) -> tuple[PasskeyLogin | None, PasskeyRefused | None]:
    account_id, status = passkey.account_id, facts.status
    tenant_id, tenant_slug = facts.tenant_id, facts.tenant_slug
    actor = f"passkey:{passkey.id}"
    base: dict[str, object] = {"passkey": passkey.id, "method": "passkey",
                               "device": device.id if device else None}

    def deny(code: str, reason: str) -> tuple[None, PasskeyRefused]:
        uow.audit.append(tenant_id, tenant_slug, AuditEvent(
            "login.denied", actor, {**base, "code": code, "reason": reason},
            account_id=account_id, request_id=request_id), now)
        return None, PasskeyRefused(code, reason, request_id, status=403)

    if status != "active":  # checked at every sign-in: deactivation disables passkeys
        return deny("account_inactive", f"this account is {status}; passkey sign-in is "
                    "refused")
    if facts.kind != "user":
        return deny("not_allowed", "this account cannot sign in with a passkey")
    if device is not None and device.tenant_id != tenant_id:
        return deny("wrong_tenant", "this device belongs to another organisation")
    policy = policy_from_settings(facts.settings)
    confirmed = uow.devices.accounts.confirmation(account_id)
    if confirmed is None:
        return deny("never_confirmed", "sign in through your identity provider first")
    health = confirmed.health
    fresh = confirmed.confirmed_at is not None and \
        now - confirmed.confirmed_at <= timedelta(seconds=policy.roles_max_age_seconds)
    if not fresh:
        if not health.reachable:
            return deny("roles_stale_offline", "your roles need a fresh sign-in at your "
                        "identity provider, which cannot be reached now; ask for "
                        "break-glass access if this is urgent")
        step_up = f"/sso/{confirmed.connection_slug}/login?" + urlencode({"return_to": target})
        uow.audit.append(tenant_id, tenant_slug, AuditEvent(
            "login.step_up", actor, {**base, "connection": confirmed.connection_slug,
                                     "roles_confirmed_at": _iso(confirmed.confirmed_at)},
            account_id=account_id, request_id=request_id), now)
        return PasskeyLogin(account_id, None, step_up), None

    offline = not health.reachable
    expires_at = now + (timedelta(seconds=policy.offline_seconds) if offline
                        else ctx.session_ttl)
    idle: int | None = None
    ended: list[str] = []
    if device is not None:
        idle = policy.idle_seconds
        boundary = next_shift_boundary(now, policy.shifts, policy.timezone)
        if boundary is not None:
            expires_at = min(expires_at, boundary)
        ended = uow.devices.devices.end_sessions(device.id, now)
        uow.devices.devices.seen(device.id, now)
    if previous_session:  # rotated at sign-in, like an SSO login
        uow.sessions.revoke(hash_token(previous_session), now)
    token = secrets.token_urlsafe(32)
    method = "offline" if offline else "passkey"
    uow.sessions.create(session_id=hash_token(token), account_id=account_id,
                        connection_id=confirmed.connection_id, subject=confirmed.subject,
                        now=now, expires_at=expires_at, user_agent=user_agent,
                        device_id=device.id if device else None, method=method,
                        offline=offline, idle_seconds=idle, passkey_id=passkey.id)
    uow.devices.accounts.touch_sign_in(account_id, now)
    if device is not None:
        announce_switch(uow, device, ended, account_id, method=method, now=now,
                        request_id=request_id)
    data = {**base, "method": method, "connection": confirmed.connection_slug,
            "roles_confirmed_at": _iso(confirmed.confirmed_at),
            "session_expires_at": expires_at.isoformat()}
    if offline:
        data["idp_last_error"] = health.last_error
        uow.outbox.add(tenant_id, "login.offline", {"tenant": tenant_slug, "account_id": account_id,
                                                 **data}, now)
    uow.audit.append(tenant_id, tenant_slug, AuditEvent(
        "login.offline" if offline else "login.passkey", actor, data, account_id=account_id,
        request_id=request_id), now)
    return PasskeyLogin(account_id, token, target, offline, expires_at, tuple(ended)), None


def _audit_failure(uow: UnitOfWork, tenant_id: int, tenant_slug: str, account_id: str | None,
                   code: str, device: DeviceRecord | None, request_id: str | None,
                   now: datetime) -> None:
    """``login.failed`` for a passkey answer that did not verify."""
    uow.audit.append(tenant_id, tenant_slug, AuditEvent(
        "login.failed", "passkey", {"method": "passkey", "code": code,
                                    "device": device.id if device else None},
        account_id=account_id, request_id=request_id), now)


# -- IdP health -----------------------------------------------------------------------------

def record_idp_health(ctx: ServiceContext, connection: str, *, ok: bool,
                      error: str | None = None, actor: str | None = None) -> None:
    """Record that the connection's IdP answered (``ok``) or not. With an ``actor`` it is an
    admin's declaration, audited ``connection.health_declared``: a declared outage holds
    (the probe does not undo it) until an admin declares the IdP back."""
    now = ctx.clock()
    with UnitOfWork(ctx.db) as uow:
        conn = uow.config.connections.get(connection)
        uow.devices.health.record(conn.id, ok=ok, now=now, error=error, declared_by=actor,
                                  probe=actor is None)
        if actor is not None:
            uow.audit.append(conn.tenant_id, conn.tenant_slug, AuditEvent(
                "connection.health_declared", actor,
                {"connection": connection, "reachable": ok, "error": error}), now)
        uow.commit()


def probe_idps(ctx: ServiceContext) -> dict[str, bool]:
    """Ask every enabled OIDC connection's IdP for its discovery document, and every SAML
    connection with a metadata URL for its metadata; record the answers (connection health).
    Returns {connection: reachable} of those probed. Never raises for an IdP's failure."""
    results: dict[str, bool] = {}
    with UnitOfWork(ctx.db, readonly=True) as uow:
        connections = [c for c in uow.config.connections.list() if c.enabled]
    for conn in connections:
        url = _probe_url(conn.kind, conn.config)
        if url is None:
            continue
        error: str | None = None
        try:
            response = ctx.http.get(url, headers={"Accept": "application/json, */*"})
            if response.status_code != 200:
                error = f"{url} answered HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            error = f"{url}: {type(exc).__name__}"
        record_idp_health(ctx, conn.slug, ok=error is None, error=error)
        results[conn.slug] = error is None
    return results


def _probe_url(kind: str, config: Mapping[str, object]) -> str | None:
    if kind == "oidc":
        try:
            base = OidcConfig.parse(config).discovery_issuer().rstrip("/")
        except (JitprovError, ValueError):
            return None
        return f"{base}/.well-known/openid-configuration"
    if kind == "saml":
        url = config.get("metadata_url")
        return url if isinstance(url, str) and url.startswith(("https://", "http://")) else None
    return None  # mock (the demo IdP, in-process) and kinds without a URL to ask


def _tenant_of(uow: UnitOfWork, account_id: str) -> TenantRecord:
    return uow.config.tenants.get(uow.accounts.view(account_id).tenant_slug)


def _digest(challenge: bytes) -> str:
    return hash_token(challenge.hex())


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()
