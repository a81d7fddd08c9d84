"""The deployment's configuration: tenants, connections (and the IdP metadata refresh's writes
to them), identity-token signing keys, admin API tokens, and the job lock that keeps a
scheduled job on one node at a time. ``uow.config`` groups them.

Same contract as every repository here: narrow methods over one open transaction (see
``unit_of_work.py``), copies out (core values or ``records.py`` records), ``NotFound`` or
``Conflict`` for what is missing or taken, never a SQLAlchemy exception.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from jitprov.core.errors import Conflict, NotFound
from jitprov.store import tables as t
from jitprov.store._common import lock_key, opt_utc, utc
from jitprov.store.records import ConnectionRecord, DomainRecord, TenantRecord


class TenantRepository:
    def __init__(self, conn: sa.Connection) -> None:
        self._c = conn

    def create(self, slug: str, name: str, now: datetime) -> TenantRecord:
        """Insert a tenant. Raises Conflict if the slug is taken."""
        if self._c.execute(sa.select(t.tenant.c.id).where(t.tenant.c.slug == slug)).first():
            raise Conflict(f"tenant {slug!r} already exists")
        new_id = self._c.execute(t.tenant.insert().values(
            slug=slug, name=name, settings={}, created_at=now)).inserted_primary_key
        assert new_id is not None  # noqa: S101
        return TenantRecord(id=int(new_id[0]), slug=slug, name=name, created_at=now)

    def get(self, slug: str) -> TenantRecord:
        """Raises NotFound."""
        row = self._c.execute(sa.select(t.tenant).where(t.tenant.c.slug == slug)).first()
        if row is None:
            raise NotFound(f"no tenant {slug!r}")
        return TenantRecord(id=row.id, slug=row.slug, name=row.name,
                            created_at=utc(row.created_at))

    def get_by_id(self, tenant_id: int) -> TenantRecord:
        """Raises NotFound."""
        row = self._c.execute(sa.select(t.tenant).where(t.tenant.c.id == tenant_id)).first()
        if row is None:
            raise NotFound(f"no tenant {tenant_id}")
        return TenantRecord(id=row.id, slug=row.slug, name=row.name,
                            created_at=utc(row.created_at))

    def settings(self, tenant_id: int) -> dict[str, object]:
        """The tenant's policy settings (a copy)."""
        value = self._c.execute(sa.select(t.tenant.c.settings)
                                .where(t.tenant.c.id == tenant_id)).scalar_one()
        return dict(value)

    def set_settings(self, tenant_id: int, settings: Mapping[str, object]) -> None:
        self._c.execute(t.tenant.update().where(t.tenant.c.id == tenant_id)
                        .values(settings=dict(settings)))

    def rename(self, tenant_id: int, name: str) -> None:
        """Change the tenant's display name (the slug stays)."""
        self._c.execute(t.tenant.update().where(t.tenant.c.id == tenant_id).values(name=name))

    def list(self) -> list[TenantRecord]:
        rows = self._c.execute(sa.select(t.tenant).order_by(t.tenant.c.slug))
        return [TenantRecord(id=r.id, slug=r.slug, name=r.name, created_at=utc(r.created_at))
                for r in rows]


_CONNECTION_COLUMNS = (*t.connection.c, t.tenant.c.slug.label("tenant_slug"))


def _connection(row: sa.Row[Any]) -> ConnectionRecord:
    return ConnectionRecord(
        id=row.id, tenant_id=row.tenant_id, tenant_slug=row.tenant_slug, slug=row.slug,
        kind=row.kind, config=row.config, secrets=row.secrets, mapping=row.mapping,
        mapping_source=row.mapping_source, enabled=row.enabled, version=row.version,
        updated_at=utc(row.updated_at))


class ConnectionRepository:
    def __init__(self, conn: sa.Connection) -> None:
        self._c = conn

    def add(self, *, tenant_id: int, slug: str, kind: str, config: Mapping[str, object],
            secrets: str | None, mapping: str, mapping_source: str,
            now: datetime) -> ConnectionRecord:
        """Insert a connection. Raises Conflict if the slug is taken (slugs are global)."""
        if self._c.execute(sa.select(t.connection.c.id)
                           .where(t.connection.c.slug == slug)).first():
            raise Conflict(f"connection {slug!r} already exists")
        self._c.execute(t.connection.insert().values(
            tenant_id=tenant_id, slug=slug, kind=kind, config=dict(config), secrets=secrets,
            mapping=mapping, mapping_source=mapping_source, enabled=True, version=1,
            created_at=now, updated_at=now))
        return self.get(slug)

    def get(self, slug: str) -> ConnectionRecord:
        """Raises NotFound. Reads the current row: changes by other nodes show at once."""
        row = self._c.execute(
            sa.select(*_CONNECTION_COLUMNS).join(t.tenant)
            .where(t.connection.c.slug == slug)).first()
        if row is None:
            raise NotFound(f"no connection {slug!r}")
        return _connection(row)

    def list(self, tenant_id: int | None = None) -> list[ConnectionRecord]:
        query = sa.select(*_CONNECTION_COLUMNS).join(t.tenant).order_by(t.connection.c.slug)
        if tenant_id is not None:
            query = query.where(t.connection.c.tenant_id == tenant_id)
        return [_connection(r) for r in self._c.execute(query)]

    def set_mapping(self, slug: str, mapping: str, source: str, now: datetime) -> int:
        """Replace the mapping and bump the version; returns the new version. NotFound."""
        result = self._c.execute(
            t.connection.update().where(t.connection.c.slug == slug)
            .values(mapping=mapping, mapping_source=source, updated_at=now,
                    version=t.connection.c.version + 1)
            .returning(t.connection.c.version))
        row = result.first()
        if row is None:
            raise NotFound(f"no connection {slug!r}")
        return int(row[0])


    def update(self, slug: str, *, config: Mapping[str, object], secrets: str | None,
               now: datetime) -> int:
        """Replace the config and the sealed secrets, bump the version; returns the new
        version. Raises NotFound."""
        row = self._c.execute(
            t.connection.update().where(t.connection.c.slug == slug)
            .values(config=dict(config), secrets=secrets, updated_at=now,
                    version=t.connection.c.version + 1)
            .returning(t.connection.c.version)).first()
        if row is None:
            raise NotFound(f"no connection {slug!r}")
        return int(row[0])

    def remove(self, slug: str) -> None:
        """Delete a connection no identity signs in through. Raises NotFound, Conflict (it
        has identities: deleting it would delete them)."""
        found = self._c.execute(sa.select(t.connection.c.id)
                                .where(t.connection.c.slug == slug)).first()
        if found is None:
            raise NotFound(f"no connection {slug!r}")
        identities = self._c.execute(sa.select(sa.func.count()).select_from(t.identity)
                                     .where(t.identity.c.connection_id == found.id)
                                     ).scalar_one()
        if identities:
            raise Conflict(f"connection {slug!r} has {identities} identities: disable it "
                           "instead")
        self._c.execute(t.connection.delete().where(t.connection.c.id == found.id))

    def set_enabled(self, slug: str, enabled: bool, now: datetime) -> None:
        """Raises NotFound."""
        result = self._c.execute(t.connection.update().where(t.connection.c.slug == slug)
                                 .values(enabled=enabled, updated_at=now,
                                         version=t.connection.c.version + 1))
        if not result.rowcount:
            raise NotFound(f"no connection {slug!r}")


class AdminTokenRepository:
    """Admin API bearer tokens, stored as SHA-256 hashes."""

    def __init__(self, conn: sa.Connection) -> None:
        self._c = conn

    def create(self, name: str, token_hash: str, now: datetime,
               expires_at: datetime | None) -> int:
        new_id = self._c.execute(t.admin_token.insert().values(
            name=name, token_hash=token_hash, created_at=now, expires_at=expires_at,
            revoked_at=None, last_used_at=None)).inserted_primary_key
        assert new_id is not None  # noqa: S101
        return int(new_id[0])

    def find_active(self, token_hash: str, now: datetime) -> tuple[int, str] | None:
        """(id, name) of the unrevoked, unexpired token with this hash, or None."""
        row = self._c.execute(
            sa.select(t.admin_token.c.id, t.admin_token.c.name, t.admin_token.c.token_hash)
            .where(t.admin_token.c.token_hash == token_hash,
                   t.admin_token.c.revoked_at.is_(None),
                   sa.or_(t.admin_token.c.expires_at.is_(None),
                          t.admin_token.c.expires_at > now))).first()
        if row is None or not hmac.compare_digest(row.token_hash, token_hash):
            return None
        return row.id, row.name

    def list(self) -> list[tuple[int, str, datetime, datetime | None, datetime | None]]:
        """(id, name, created_at, expires_at, revoked_at) of every token."""
        rows = self._c.execute(sa.select(t.admin_token).order_by(t.admin_token.c.id))
        return [(r.id, r.name, utc(r.created_at), opt_utc(r.expires_at),
                 opt_utc(r.revoked_at)) for r in rows]

    def revoke(self, token_id: int, now: datetime) -> None:
        """Raises NotFound."""
        result = self._c.execute(t.admin_token.update().where(
            t.admin_token.c.id == token_id, t.admin_token.c.revoked_at.is_(None))
            .values(revoked_at=now))
        if not result.rowcount:
            raise NotFound(f"no active admin token {token_id}")


class SigningKeyRepository:
    """Keys that sign identity tokens for applications. One is active (signs); one may be
    staged (published, signs from the next rotation on, so apps hold it before they meet it:
    ``active`` false, ``retire_after`` null); keys rotated out stay published until their
    ``retire_after``."""

    def __init__(self, conn: sa.Connection) -> None:
        self._c = conn

    def add(self, *, kid: str, sealed_private: str, public_jwk: Mapping[str, object],
            now: datetime, active: bool) -> None:
        """Add a key: the active one (the caller retires the previous one) or the staged one."""
        self._c.execute(t.signing_key.insert(), {
            "kid": kid, "private_jwk": sealed_private, "public_jwk": dict(public_jwk),
            "created_at": now, "active": active, "retire_after": None})

    def active(self) -> tuple[str, str] | None:
        """(kid, sealed private JWK) of the key that signs, or None before the first."""
        row = self._c.execute(sa.select(t.signing_key.c.kid, t.signing_key.c.private_jwk)
                              .where(t.signing_key.c.active.is_(True))).first()
        return None if row is None else (row.kid, row.private_jwk)

    def staged(self) -> str | None:
        """The kid of the staged key (published, not yet signing), if any."""
        return self._c.execute(sa.select(t.signing_key.c.kid).where(
            t.signing_key.c.active.is_(False), t.signing_key.c.retire_after.is_(None),
        ).order_by(t.signing_key.c.created_at.desc())).scalar()

    def promote(self, kid: str, *, retire_previous_after: datetime) -> None:
        """Make ``kid`` the active key; the previous active key stays published until
        ``retire_previous_after``."""
        self._c.execute(t.signing_key.update().where(t.signing_key.c.active.is_(True))
                        .values(active=False, retire_after=retire_previous_after))
        self._c.execute(t.signing_key.update().where(t.signing_key.c.kid == kid)
                        .values(active=True, retire_after=None))

    def published(self, now: datetime) -> list[dict[str, object]]:
        """Public JWKs of the active key, the staged one and the keys not yet retired,
        newest first."""
        rows = self._c.execute(
            sa.select(t.signing_key.c.public_jwk)
            .where(sa.or_(t.signing_key.c.retire_after.is_(None),
                          t.signing_key.c.retire_after > now))
            .order_by(t.signing_key.c.created_at.desc()))
        return [dict(r.public_jwk) for r in rows]



class SamlConnectionConfigRepository:
    """The writes of the IdP metadata refresh (``jobs/saml_metadata.py``)."""

    def __init__(self, conn: sa.Connection) -> None:
        self._c = conn

    def claim_refresh(self, slug: str, *, unchanged_since: datetime, now: datetime) -> bool:
        """Claim this period's metadata refresh of a connection: set its ``updated_at`` to
        ``now`` (the version, hence every node's compiled policy, is untouched) if it is not
        later than ``unchanged_since``. True for exactly one of any number of concurrent
        claimers on any node; False when it changed or was claimed since."""
        result = self._c.execute(
            t.connection.update()
            .where(t.connection.c.slug == slug, t.connection.c.updated_at <= unchanged_since)
            .values(updated_at=now))
        return int(result.rowcount) == 1

    def replace_config(self, slug: str, config: Mapping[str, object], *, expected_version: int,
                       now: datetime) -> int | None:
        """Replace the connection's config and bump its version (running nodes see it within
        their connection cache TTL), only if the version is still ``expected_version``.
        Returns the new version, or None when someone changed the connection meanwhile.
        Raises NotFound for an unknown slug."""
        result = self._c.execute(
            t.connection.update()
            .where(t.connection.c.slug == slug, t.connection.c.version == expected_version)
            .values(config=dict(config), updated_at=now, version=t.connection.c.version + 1)
            .returning(t.connection.c.version)).first()
        if result is not None:
            return int(result[0])
        if self._c.execute(sa.select(t.connection.c.id)
                           .where(t.connection.c.slug == slug)).first() is None:
            raise NotFound(f"no connection {slug!r}")
        return None


class JobLocks:
    """Locks that keep a scheduled job to one node per run."""

    def __init__(self, conn: sa.Connection) -> None:
        self._c = conn

    def try_lock(self, name: str) -> bool:
        """Take a job's lock until commit, if no other node holds it (PostgreSQL: advisory
        try-lock; SQLite: always, as writers run one at a time)."""
        if self._c.dialect.name != "postgresql":
            return True
        return bool(self._c.execute(sa.text("SELECT pg_try_advisory_xact_lock(:key)"),
                                    {"key": lock_key(f"job\0{name}")}).scalar_one())


#: every column that holds a value sealed by the secret box: kind -> (table, key, column)
SEALED_COLUMNS: dict[str, tuple[sa.Table, sa.Column[Any], sa.Column[Any]]] = {
    "connection secrets": (t.connection, t.connection.c.id, t.connection.c.secrets),
    "identity-token signing keys": (t.signing_key, t.signing_key.c.kid,
                                    t.signing_key.c.private_jwk),
    "webhook secrets": (t.webhook_endpoint, t.webhook_endpoint.c.id,
                        t.webhook_endpoint.c.secret),
    "sessions' ID tokens (for IdP logout)": (t.session, t.session.c.id,
                                             t.session.c.id_token_sealed),
}


class SealedValues:
    """``uow.config.sealed``: the stored sealed values, read in key order by batches and
    replaced one by one (what ``jitprov secrets rotate`` walks)."""

    def __init__(self, conn: sa.Connection) -> None:
        self._c = conn

    def batch(self, kind: str, after: str | None, limit: int) -> list[tuple[str, str]]:
        """Up to ``limit`` (key, sealed value) pairs of ``kind`` after the key ``after``, in
        key order (keys as text, compared as the column's type)."""
        _table, key, column = SEALED_COLUMNS[kind]
        query = sa.select(key, column).where(column.is_not(None)).order_by(key).limit(limit)
        if after is not None:
            query = query.where(key > (int(after) if key.type.python_type is int else after))
        return [(str(row[0]), str(row[1])) for row in self._c.execute(query)]

    def replace(self, kind: str, key_value: str, old: str, new: str) -> bool:
        """Store ``new`` where ``old`` still is (a concurrent change wins); True if replaced."""
        table, key, column = SEALED_COLUMNS[kind]
        typed: object = int(key_value) if key.type.python_type is int else key_value
        done = self._c.execute(sa.update(table).where(key == typed, column == old)
                               .values({column.name: new}))
        return done.rowcount == 1


class InstanceSettings:
    """``uow.config.instance``: named facts of this installation (``instance_setting``)."""

    def __init__(self, conn: sa.Connection) -> None:
        self._c = conn

    def get(self, name: str) -> str | None:
        value = self._c.execute(sa.select(t.instance_setting.c.value)
                                .where(t.instance_setting.c.name == name)).scalar()
        return None if value is None else str(value)

    def put(self, name: str, value: str, now: datetime) -> None:
        """Insert or replace (one row per name; the last writer wins)."""
        changed = self._c.execute(sa.update(t.instance_setting)
                                  .where(t.instance_setting.c.name == name)
                                  .values(value=value, updated_at=now)).rowcount
        if not changed:
            self._c.execute(t.instance_setting.insert().values(name=name, value=value,
                                                               updated_at=now))


class DomainRepository:
    """``uow.config.domains``: tenants' verified email domains, each mapped to a connection
    (home-realm discovery). The domain (lowercase ASCII form, normalised by the caller) is
    the key, so a domain belongs to one tenant at most."""

    def __init__(self, conn: sa.Connection) -> None:
        self._c = conn

    _COLUMNS = (t.email_domain.c.domain, t.email_domain.c.verified_by,
                t.email_domain.c.verified_at, t.tenant.c.slug.label("tenant_slug"),
                t.connection.c.slug.label("connection_slug"),
                t.connection.c.kind.label("connection_kind"),
                t.connection.c.enabled.label("connection_enabled"))

    def _select(self) -> sa.Select[Any]:
        return (sa.select(*self._COLUMNS)
                .join(t.tenant, t.tenant.c.id == t.email_domain.c.tenant_id)
                .join(t.connection, t.connection.c.id == t.email_domain.c.connection_id))

    @staticmethod
    def _record(row: sa.Row[Any]) -> DomainRecord:
        return DomainRecord(domain=row.domain, tenant_slug=row.tenant_slug,
                            connection_slug=row.connection_slug,
                            connection_kind=row.connection_kind,
                            connection_enabled=bool(row.connection_enabled),
                            verified_by=row.verified_by, verified_at=utc(row.verified_at))

    def find(self, domain: str) -> DomainRecord | None:
        """The record of ``domain``, or None when no tenant verified it."""
        row = self._c.execute(self._select().where(t.email_domain.c.domain == domain)).first()
        return None if row is None else self._record(row)

    def put(self, domain: str, *, tenant_id: int, connection_id: int, verified_by: str,
            now: datetime) -> None:
        """Insert ``domain`` for the tenant, or point the tenant's existing row at another
        connection. Raises Conflict when another tenant holds it (a concurrent insert of the
        same domain loses the unique-key race at commit: RaceLost)."""
        holder = self._c.execute(sa.select(t.email_domain.c.tenant_id)
                                 .where(t.email_domain.c.domain == domain)).first()
        if holder is None:
            self._c.execute(t.email_domain.insert().values(
                domain=domain, tenant_id=tenant_id, connection_id=connection_id,
                verified_by=verified_by, verified_at=now))
        elif holder.tenant_id == tenant_id:
            self._c.execute(t.email_domain.update().where(t.email_domain.c.domain == domain)
                            .values(connection_id=connection_id, verified_by=verified_by,
                                    verified_at=now))
        else:
            raise Conflict(f"the domain {domain} is verified by another tenant")

    def remove(self, domain: str, tenant_id: int) -> None:
        """Raises NotFound unless the tenant holds ``domain``."""
        result = self._c.execute(t.email_domain.delete().where(
            t.email_domain.c.domain == domain, t.email_domain.c.tenant_id == tenant_id))
        if not result.rowcount:
            raise NotFound(f"the tenant has no verified domain {domain}")

    def list(self, tenant_id: int) -> list[DomainRecord]:
        """The tenant's domains, by name."""
        rows = self._c.execute(self._select().where(t.email_domain.c.tenant_id == tenant_id)
                               .order_by(t.email_domain.c.domain))
        return [self._record(row) for row in rows]

    def any(self) -> bool:
        """Whether any tenant has verified a domain (the landing page asks for the email
        then)."""
        return self._c.execute(sa.select(t.email_domain.c.domain).limit(1)).first() is not None


class ConfigStore:
    """``uow.config``: ``tenants``, ``connections``, ``saml`` (the metadata refresh's writes),
    ``signing_keys``, ``admin_tokens``, ``jobs``, ``sealed`` (every sealed value),
    ``instance`` (facts of the installation) and ``domains`` (verified email domains)."""

    def __init__(self, conn: sa.Connection) -> None:
        self.tenants = TenantRepository(conn)
        self.connections = ConnectionRepository(conn)
        self.saml = SamlConnectionConfigRepository(conn)
        self.signing_keys = SigningKeyRepository(conn)
        self.admin_tokens = AdminTokenRepository(conn)
        self.jobs = JobLocks(conn)
        self.sealed = SealedValues(conn)
        self.instance = InstanceSettings(conn)
        self.domains = DomainRepository(conn)
        self._c = conn

    def sealed_samples(self) -> list[str]:
        """One stored sealed value of each kind (a connection's secrets, an identity-token
        signing key, a webhook secret), the newest: what the readiness check opens to tell
        that the secret key is the one that sealed them."""
        queries = [
            sa.select(t.connection.c.secrets).where(t.connection.c.secrets.is_not(None))
            .order_by(t.connection.c.id.desc()).limit(1),
            sa.select(t.signing_key.c.private_jwk)
            .order_by(t.signing_key.c.created_at.desc()).limit(1),
            sa.select(t.webhook_endpoint.c.secret)
            .order_by(t.webhook_endpoint.c.id.desc()).limit(1),
        ]
        found = (self._c.execute(query).scalar() for query in queries)
        return [value for value in found if value]
