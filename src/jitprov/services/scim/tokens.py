"""SCIM client bearer tokens: one tenant each, several active at once, only their SHA-256
stored, compared in constant time, and the tenant's SCIM policy (``scim_delete``,
``scim_on_existing``).

A token may be bound to a connection (``--connection``): accounts it creates carry their
``externalId`` as a subject of that connection, so the first SSO login through it with
subject == externalId signs in to the SCIM-created account (one account, never two).

Authentication fails closed: no token, an unknown, revoked or expired one, or a token of
another tenant is ``None`` (the route answers 401). A positive answer is cached per process
for :data:`AUTH_CACHE_SECONDS` (the "within seconds" of configuration changes, as connections
are); a revocation through this process evicts it at once.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal, cast

from jitprov.core.audit import AuditEvent
from jitprov.core.errors import InvalidInput, NotFound
from jitprov.services.common import hash_token
from jitprov.services.context import ServiceContext
from jitprov.store.scim.records import ScimTokenRecord
from jitprov.store.unit_of_work import UnitOfWork

SCIM_TOKEN_PREFIX = "jps_"  # noqa: S105 - a public prefix, not a secret
AUTH_CACHE_SECONDS = 2.0
TOUCH_SECONDS = 60.0  # last_used_at is written at most this often per token and process

DeletePolicy = Literal["deactivate", "erase"]
OnExistingPolicy = Literal["adopt", "conflict"]
POLICY_VALUES: dict[str, tuple[str, ...]] = {
    "scim_delete": ("deactivate", "erase"),
    "scim_on_existing": ("conflict", "adopt"),
}


@dataclass(frozen=True, slots=True)
class ScimPolicy:
    """What a tenant's SCIM client may do (tenant settings, ``jitprov tenant set-policy``).

    ``delete``: ``deactivate`` (default) keeps a DELETEd user as a deactivated account, with
    its audit history, that JIT never resurrects; ``erase`` deletes the account.
    ``on_existing``: a POST whose userName or email is an account JIT already created
    answers 409 ``uniqueness`` (``conflict``, default: the RFC's answer; Okta and Entra then
    find the account with a ``userName eq`` filter and update it) or takes it over
    (``adopt``)."""

    delete: DeletePolicy = "deactivate"
    on_existing: OnExistingPolicy = "conflict"


@dataclass(frozen=True, slots=True)
class ScimPrincipal:
    """An authenticated SCIM client."""

    token_id: int
    name: str
    tenant_id: int
    tenant_slug: str
    connection_id: int | None

    @property
    def actor(self) -> str:
        return f"scim:{self.name}"


def create_token(ctx: ServiceContext, tenant: str, name: str, *,
                 expires_in: timedelta | None = None, connection: str | None = None,
                 actor: str = "cli") -> tuple[int, str]:
    """Issue a token; returns (id, token). The token is shown once: only its hash is kept.
    Raises NotFound (tenant, connection), InvalidInput (a connection of another tenant)."""
    if not name.strip() or len(name) > 200:
        raise InvalidInput("a token name of 1-200 characters is required")
    if expires_in is not None and expires_in <= timedelta(0):
        raise InvalidInput("the expiry must be in the future")
    token = SCIM_TOKEN_PREFIX + secrets.token_urlsafe(32)
    now = ctx.clock()
    with UnitOfWork(ctx.db) as uow:
        ten = uow.config.tenants.get(tenant)
        connection_id = None
        if connection is not None:
            conn = uow.config.connections.get(connection)
            if conn.tenant_id != ten.id:
                raise InvalidInput(f"connection {connection} is not in tenant {tenant}")
            connection_id = conn.id
        token_id = uow.scim.tokens.create_token(
            ten.id, name, hash_token(token), connection_id=connection_id,
            expires_at=now + expires_in if expires_in else None, now=now)
        uow.audit.append(ten.id, ten.slug, AuditEvent(
            "scim_token.created", actor, {"token_id": token_id, "name": name,
                                          "connection": connection,
                                          "expires_in_days": expires_in.days if expires_in
                                          else None}), now)
        uow.commit()
    return token_id, token


def list_tokens(ctx: ServiceContext, tenant: str) -> list[ScimTokenRecord]:
    with UnitOfWork(ctx.db, readonly=True) as uow:
        return uow.scim.tokens.list_tokens(uow.config.tenants.get(tenant).id)


def revoke_token(ctx: ServiceContext, tenant: str, token_id: int, *,
                 actor: str = "cli") -> None:
    """Revoke one of the tenant's tokens (idempotent). Raises NotFound (also for a token of
    another tenant)."""
    now = ctx.clock()
    with UnitOfWork(ctx.db) as uow:
        ten = uow.config.tenants.get(tenant)
        if not any(t.id == token_id for t in uow.scim.tokens.list_tokens(ten.id)):
            raise NotFound(f"no SCIM token {token_id} in tenant {tenant}")
        uow.scim.tokens.revoke(token_id, now)
        uow.audit.append(ten.id, ten.slug, AuditEvent(
            "scim_token.revoked", actor, {"token_id": token_id}), now)
        uow.commit()
    _cache(ctx).forget_token(token_id)


class _AuthCache:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.entries: dict[tuple[str, str], tuple[float, ScimPrincipal]] = {}
        self.touched: dict[int, float] = {}

    def get(self, key: tuple[str, str]) -> ScimPrincipal | None:
        entry = self.entries.get(key)
        if entry is None or time.monotonic() - entry[0] > AUTH_CACHE_SECONDS:
            return None
        return entry[1]

    def put(self, key: tuple[str, str], principal: ScimPrincipal) -> None:
        with self.lock:
            if len(self.entries) > 10_000:
                self.entries.clear()
            self.entries[key] = (time.monotonic(), principal)

    def forget_token(self, token_id: int) -> None:
        with self.lock:
            for key in [k for k, (_, p) in self.entries.items() if p.token_id == token_id]:
                del self.entries[key]

    def due_touch(self, token_id: int) -> bool:
        now = time.monotonic()
        with self.lock:
            if now - self.touched.get(token_id, -TOUCH_SECONDS) < TOUCH_SECONDS:
                return False
            self.touched[token_id] = now
            return True


def _cache(ctx: ServiceContext) -> _AuthCache:
    cache = ctx.caches.get("scim_auth")
    if cache is None:
        cache = ctx.caches.setdefault("scim_auth", _AuthCache())
    return cast(_AuthCache, cache)


def authenticate(ctx: ServiceContext, tenant: str, token: str | None) -> ScimPrincipal | None:
    """The client behind ``Authorization: Bearer <token>`` on tenant ``tenant``'s SCIM URL,
    or None: missing, malformed, unknown, revoked, expired, or of another tenant."""
    if not token or not token.startswith(SCIM_TOKEN_PREFIX) or len(token) > 200:
        return None
    digest = hash_token(token)
    cache = _cache(ctx)
    principal = cache.get((tenant, digest))
    if principal is None:
        principal = _lookup(ctx, tenant, digest)
        if principal is None:
            return None
        cache.put((tenant, digest), principal)
    if cache.due_touch(principal.token_id):
        with UnitOfWork(ctx.db) as uow:
            uow.scim.tokens.touch(principal.token_id, ctx.clock())
            uow.commit()
    return principal


def cached_principal(ctx: ServiceContext, tenant: str,
                     token: str | None) -> ScimPrincipal | None:
    """The principal :func:`authenticate` would return, when it is cached and nothing is due
    to be written: no I/O, so the route can skip a threadpool hop. None means "ask
    :func:`authenticate`", never "refused"."""
    if not token or not token.startswith(SCIM_TOKEN_PREFIX) or len(token) > 200:
        return None
    cache = _cache(ctx)
    principal = cache.get((tenant, hash_token(token)))
    if principal is None:
        return None
    last = cache.touched.get(principal.token_id)
    if last is None or time.monotonic() - last >= TOUCH_SECONDS:
        return None
    return principal


def _lookup(ctx: ServiceContext, tenant: str, digest: str) -> ScimPrincipal | None:
    now = ctx.clock()
    with UnitOfWork(ctx.db, readonly=True) as uow:
        found = uow.scim.tokens.find_active(digest, now)
        # compare_digest: the lookup is by hash, and this check never short-circuits on content
        if found is None or not hmac.compare_digest(found.token_hash, digest):
            return None
        try:
            ten = uow.config.tenants.get(tenant)
        except NotFound:
            return None
        if ten.id != found.tenant_id:
            return None  # a token of tenant A on tenant B's URL
        name = next((t.name for t in uow.scim.tokens.list_tokens(ten.id) if t.id == found.id),
                    str(found.id))
    return ScimPrincipal(found.id, name, ten.id, ten.slug, found.connection_id)


def scim_policy(settings: dict[str, object]) -> ScimPolicy:
    """The SCIM policy in a tenant's settings (defaults for what is unset)."""
    delete = settings.get("scim_delete", "deactivate")
    on_existing = settings.get("scim_on_existing", "conflict")
    return ScimPolicy(
        delete=cast(DeletePolicy, delete if delete in POLICY_VALUES["scim_delete"]
                    else "deactivate"),
        on_existing=cast(OnExistingPolicy, on_existing if on_existing in
                         POLICY_VALUES["scim_on_existing"] else "conflict"))


def get_scim_policy(ctx: ServiceContext, tenant: str) -> ScimPolicy:
    """The tenant's stored SCIM policy."""
    with UnitOfWork(ctx.db, readonly=True) as uow:
        return scim_policy(uow.config.tenants.settings(uow.config.tenants.get(tenant).id))


def set_scim_policy(ctx: ServiceContext, tenant: str, *, delete: str | None = None,
                    on_existing: str | None = None, actor: str = "cli") -> ScimPolicy:
    """Set ``scim_delete`` and/or ``scim_on_existing``; audited ``tenant.policy_changed``.
    Raises InvalidInput for a value not in :data:`POLICY_VALUES`."""
    given = {"scim_delete": delete, "scim_on_existing": on_existing}
    for key, value in given.items():
        if value is not None and value not in POLICY_VALUES[key]:
            raise InvalidInput(f"{key} must be one of {', '.join(POLICY_VALUES[key])}")
    now = ctx.clock()
    with UnitOfWork(ctx.db) as uow:
        ten = uow.config.tenants.get(tenant)
        settings = uow.config.tenants.settings(ten.id)
        settings.update({k: v for k, v in given.items() if v is not None})
        uow.config.tenants.set_settings(ten.id, settings)
        policy = scim_policy(settings)
        uow.audit.append(ten.id, ten.slug, AuditEvent(
            "tenant.policy_changed", actor, {"scim_delete": policy.delete,
                                             "scim_on_existing": policy.on_existing}), now)
        uow.commit()
    return policy
