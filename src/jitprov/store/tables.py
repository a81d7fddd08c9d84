"""SQLAlchemy Core tables: the schema Alembic migrates (``migrations/versions``)."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData(naming_convention={
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
})

TS = sa.DateTime(timezone=True)

tenant = sa.Table(
    "tenant", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("slug", sa.String(63), nullable=False, unique=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("settings", sa.JSON, nullable=False),
    sa.Column("created_at", TS, nullable=False),
)

connection = sa.Table(
    "connection", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("tenant_id", sa.ForeignKey("tenant.id", ondelete="CASCADE"), nullable=False,
              index=True),
    sa.Column("slug", sa.String(63), nullable=False, unique=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("config", sa.JSON, nullable=False),
    sa.Column("secrets", sa.Text, nullable=True),  # Fernet token of a JSON object
    sa.Column("mapping", sa.Text, nullable=False),
    sa.Column("mapping_source", sa.String(500), nullable=False),
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("updated_at", TS, nullable=False),
)

account = sa.Table(
    "account", metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("tenant_id", sa.ForeignKey("tenant.id", ondelete="CASCADE"), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("provisioned_by", sa.String(16), nullable=False),
    sa.Column("external_id", sa.String(255), nullable=True),
    # the connection whose subjects external_id names (a SCIM client bound to it): a first
    # login through that connection with that subject is linked to this account
    sa.Column("external_id_connection_id", sa.ForeignKey("connection.id", ondelete="SET NULL"),
              nullable=True),
    sa.Column("email", sa.String(320), nullable=True),
    sa.Column("email_lower", sa.String(320), nullable=True),
    sa.Column("profile", sa.JSON, nullable=False),
    sa.Column("profile_sources", sa.JSON, nullable=False),
    sa.Column("idp_groups", sa.JSON, nullable=False),  # IdP groups mirrored by login
    sa.Column("created_at", TS, nullable=False),
    sa.Column("updated_at", TS, nullable=False),
    sa.Column("last_login_at", TS, nullable=True),
    sa.Column("deactivated_at", TS, nullable=True),
    sa.Column("dormant_warned_at", TS, nullable=True),  # cleared by the next sign-in
    sa.Column("version", sa.Integer, nullable=False),
    sa.Index("ix_account_tenant_email", "tenant_id", "email_lower"),
    sa.Index("ix_account_tenant_status_login", "tenant_id", "status", "last_login_at"),
    sa.Index("ix_account_tenant_external_id", "tenant_id", "external_id"),
)

identity = sa.Table(
    "identity", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("connection_id", sa.ForeignKey("connection.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("subject", sa.String(255), nullable=False),
    sa.Column("issuer", sa.String(500), nullable=False),
    sa.Column("account_id", sa.ForeignKey("account.id", ondelete="CASCADE"), nullable=False,
              index=True),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("last_login_at", TS, nullable=True),
    sa.UniqueConstraint("connection_id", "subject"),
)

role_grant = sa.Table(
    "role_grant", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("account_id", sa.ForeignKey("account.id", ondelete="CASCADE"), nullable=False),
    sa.Column("role", sa.String(128), nullable=False),
    sa.Column("source", sa.String(200), nullable=False),  # rule:<id> | scim | manual | approval
    sa.Column("granted_at", TS, nullable=False),
    sa.Column("granted_by", sa.String(200), nullable=False),
    sa.Column("expires_at", TS, nullable=True),
    sa.UniqueConstraint("account_id", "role", "source"),
    sa.Index("ix_role_grant_expires_at", "expires_at"),  # the sweep of expired grants
)

pending_grant = sa.Table(
    "pending_grant", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("account_id", sa.ForeignKey("account.id", ondelete="CASCADE"), nullable=False),
    sa.Column("role", sa.String(128), nullable=False),
    sa.Column("source", sa.String(200), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # pending|approved|denied|withdrawn
    sa.Column("requested_at", TS, nullable=False),
    sa.Column("decided_at", TS, nullable=True),
    sa.Column("decided_by", sa.String(200), nullable=True),
    sa.Column("reason", sa.Text, nullable=True),
    sa.Index("ix_pending_grant_account_status", "account_id", "status"),
)

# An admin override: this role stays off this account whatever the rules say, until unblocked.
role_block = sa.Table(
    "role_block", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("account_id", sa.ForeignKey("account.id", ondelete="CASCADE"), nullable=False),
    sa.Column("role", sa.String(128), nullable=False),
    sa.Column("blocked_at", TS, nullable=False),
    sa.Column("blocked_by", sa.String(200), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.UniqueConstraint("account_id", "role"),
)

pending_link = sa.Table(
    "pending_link", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("tenant_id", sa.ForeignKey("tenant.id", ondelete="CASCADE"), nullable=False),
    sa.Column("connection_id", sa.ForeignKey("connection.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("subject", sa.String(255), nullable=False),
    sa.Column("issuer", sa.String(500), nullable=False),
    sa.Column("account_id", sa.ForeignKey("account.id", ondelete="CASCADE"), nullable=False),
    # the email the login asserted (verified), which the account then had: an approval checks
    # the account still has it (NULL: a link queued before this column, not checked)
    sa.Column("email", sa.String(320), nullable=True),
    sa.Column("claims", sa.JSON, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("decided_at", TS, nullable=True),
    sa.Column("decided_by", sa.String(200), nullable=True),
    sa.Column("reason", sa.Text, nullable=True),  # the admin's, when decided
    # pending|approved|refused|cleared; an identity has at most one open (pending) or
    # refused link: a refusal holds until an admin clears it
    sa.Index("ix_pending_link_connection_subject_open", "connection_id", "subject",
             unique=True, sqlite_where=sa.text("status IN ('pending', 'refused')"),
             postgresql_where=sa.text("status IN ('pending', 'refused')")),
    sa.Index("ix_pending_link_tenant_status", "tenant_id", "status", "id"),
)

session = sa.Table(
    "session", metadata,
    sa.Column("id", sa.String(64), primary_key=True),  # SHA-256 of the cookie value
    sa.Column("account_id", sa.ForeignKey("account.id", ondelete="CASCADE"), nullable=False,
              index=True),
    sa.Column("connection_id", sa.ForeignKey("connection.id", ondelete="SET NULL"),
              nullable=True),
    sa.Column("subject", sa.String(255), nullable=True),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("expires_at", TS, nullable=False),
    sa.Column("revoked_at", TS, nullable=True),
    sa.Column("user_agent", sa.String(300), nullable=True),
)

login_request = sa.Table(
    "login_request", metadata,
    sa.Column("id", sa.String(64), primary_key=True),  # SHA-256 of the state value
    sa.Column("connection_id", sa.ForeignKey("connection.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("return_to", sa.String(2000), nullable=False),
    sa.Column("data", sa.JSON, nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("expires_at", TS, nullable=False, index=True),
    sa.Column("consumed_at", TS, nullable=True),
)

audit_event = sa.Table(
    "audit_event", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("tenant_id", sa.ForeignKey("tenant.id", ondelete="RESTRICT"), nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("occurred_at", TS, nullable=False),
    sa.Column("type", sa.String(64), nullable=False),
    sa.Column("actor", sa.String(300), nullable=False),
    sa.Column("account_id", sa.String(36), nullable=True, index=True),
    sa.Column("request_id", sa.String(64), nullable=True),
    sa.Column("data", sa.JSON, nullable=False),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.UniqueConstraint("tenant_id", "seq"),
)

audit_head = sa.Table(
    "audit_head", metadata,
    sa.Column("tenant_id", sa.ForeignKey("tenant.id", ondelete="RESTRICT"), primary_key=True),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    # the last event removed by the retention policy: the kept chain starts right after it
    sa.Column("anchor_seq", sa.Integer, nullable=False, server_default="0"),
    sa.Column("anchor_hash", sa.String(64), nullable=False, server_default="0" * 64),
)

outbox_event = sa.Table(
    "outbox_event", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("tenant_id", sa.ForeignKey("tenant.id", ondelete="CASCADE"), nullable=False),
    sa.Column("type", sa.String(64), nullable=False),
    sa.Column("payload", sa.JSON, nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("delivered_at", TS, nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Index("ix_outbox_event_undelivered", "delivered_at", "id"),
)

admin_token = sa.Table(
    "admin_token", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),  # SHA-256, never the token
    sa.Column("created_at", TS, nullable=False),
    sa.Column("expires_at", TS, nullable=True),
    sa.Column("revoked_at", TS, nullable=True),
    sa.Column("last_used_at", TS, nullable=True),
)

signing_key = sa.Table(
    "signing_key", metadata,
    sa.Column("kid", sa.String(64), primary_key=True),
    sa.Column("private_jwk", sa.Text, nullable=False),  # Fernet token (SecretBox)
    sa.Column("public_jwk", sa.JSON, nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("active", sa.Boolean, nullable=False),  # the one that signs new tokens
    sa.Column("retire_after", TS, nullable=True),  # still published (verifiable) until then
)

webhook_endpoint = sa.Table(
    "webhook_endpoint", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("tenant_id", sa.ForeignKey("tenant.id", ondelete="CASCADE"), nullable=False,
              index=True),
    sa.Column("url", sa.String(2000), nullable=False),
    sa.Column("secret", sa.Text, nullable=False),  # Fernet token of the whsec_ secret
    sa.Column("event_types", sa.JSON, nullable=False),  # ["*"] or a list of types
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("created_at", TS, nullable=False),
)

webhook_delivery = sa.Table(
    "webhook_delivery", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("outbox_id", sa.ForeignKey("outbox_event.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("endpoint_id", sa.ForeignKey("webhook_endpoint.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("event_type", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # pending | delivered | dead
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("next_attempt_at", TS, nullable=False),
    sa.Column("last_status", sa.Integer, nullable=True),
    sa.Column("last_error", sa.String(500), nullable=True),
    sa.Column("claim", sa.String(32), nullable=True),  # the worker pass holding the lease
    sa.Column("created_at", TS, nullable=False),
    sa.Column("delivered_at", TS, nullable=True),
    sa.UniqueConstraint("outbox_id", "endpoint_id"),
    sa.Index("ix_webhook_delivery_due", "status", "next_attempt_at"),
)

break_glass = sa.Table(
    "break_glass", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("tenant_id", sa.ForeignKey("tenant.id", ondelete="CASCADE"), nullable=False),
    sa.Column("roles", sa.JSON, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("valid_minutes", sa.Integer, nullable=False),
    sa.Column("requested_by", sa.String(200), nullable=False),
    sa.Column("requested_at", TS, nullable=False),
    sa.Column("approved_by", sa.String(200), nullable=True),
    sa.Column("approved_at", TS, nullable=True),
    sa.Column("code_hash", sa.String(64), nullable=True, unique=True),  # SHA-256, never the code
    sa.Column("expires_at", TS, nullable=True),
    sa.Column("used_at", TS, nullable=True),
    sa.Column("account_id", sa.ForeignKey("account.id", ondelete="SET NULL"), nullable=True),
    sa.Column("status", sa.String(16), nullable=False),  # requested|issued|used|expired
)

saml_replay = sa.Table(
    # assertion IDs seen by a SAML ACS, kept until the assertion's NotOnOrAfter (replay cache,
    # shared by every node)
    "saml_replay", metadata,
    sa.Column("connection_id", sa.ForeignKey("connection.id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("assertion_id", sa.String(256), primary_key=True),
    sa.Column("expires_at", TS, nullable=False, index=True),
)

# --- SCIM 2.0 (RFC 7643/7644): the SCIM side of the same accounts, groups, client tokens ------
# userName (RFC 7643 §4.1.1, caseExact=false) is unique per tenant, case-insensitively, through
# the unique index on (tenant_id, user_name_lower). A JIT account has no user_name: a filter on
# userName matches its email instead (user_name_lower IS NULL AND email_lower = ...), so the
# IdP's `userName eq "alice@x.org"` finds it before its POST (see store/scim.py).
account.append_column(sa.Column("user_name", sa.String(255), nullable=True))
account.append_column(sa.Column("user_name_lower", sa.String(255), nullable=True))
# the SCIM attributes not held in columns (name, displayName, emails, the enterprise extension,
# ...), as last written by SCIM; NULL for an account SCIM never wrote
account.append_column(sa.Column("scim", sa.JSON, nullable=True))
sa.Index("ix_account_tenant_user_name", account.c.tenant_id, account.c.user_name_lower,
         unique=True)
# set when a SCIM DELETE deactivated the account (tenant policy ``scim_delete: deactivate``):
# SCIM answers 404 for it from then on and its userName is free again (user_name_lower NULL)
account.append_column(sa.Column("scim_deleted_at", TS, nullable=True))
# SCIM lists a tenant's users (kind "user", not deleted for SCIM) by id: the count and OFFSET
# pagination read only this partial index (store/scim keeps SQLite from preferring it when a
# filter has its own index)
sa.Index("ix_account_tenant_kind_id", account.c.tenant_id, account.c.kind, account.c.id,
         sqlite_where=account.c.scim_deleted_at.is_(None),
         postgresql_where=account.c.scim_deleted_at.is_(None))

scim_group = sa.Table(
    # displayName is unique per tenant, case-insensitively: Entra and Okta match groups by it,
    # and a retried POST must not make a second group (RFC 7644 §3.3: 409 uniqueness)
    "scim_group", metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("tenant_id", sa.ForeignKey("tenant.id", ondelete="CASCADE"), nullable=False),
    sa.Column("display_name", sa.String(255), nullable=False),
    sa.Column("display_name_lower", sa.String(255), nullable=False),
    sa.Column("external_id", sa.String(255), nullable=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("updated_at", TS, nullable=False),
    sa.Index("ix_scim_group_tenant_display_name", "tenant_id", "display_name_lower",
             unique=True),
    sa.Index("ix_scim_group_tenant_external_id", "tenant_id", "external_id"),
    sa.Index("ix_scim_group_tenant_id", "tenant_id", "id"),
)

scim_group_member = sa.Table(
    "scim_group_member", metadata,
    sa.Column("group_id", sa.ForeignKey("scim_group.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("account_id", sa.ForeignKey("account.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("created_at", TS, nullable=False),
    sa.Index("ix_scim_group_member_account_id", "account_id"),
)

scim_token = sa.Table(
    "scim_token", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("tenant_id", sa.ForeignKey("tenant.id", ondelete="CASCADE"), nullable=False,
              index=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),  # SHA-256, never the token
    # the connection whose subjects this client's externalId names: SCIM-created accounts get it
    # as external_id_connection_id, so a first login through it links to them
    sa.Column("connection_id", sa.ForeignKey("connection.id", ondelete="SET NULL"),
              nullable=True),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("expires_at", TS, nullable=True),
    sa.Column("revoked_at", TS, nullable=True),
    sa.Column("last_used_at", TS, nullable=True),
)

# --- Shared devices: passkeys, kiosks, IdP health ---------------------------------------------
passkey = sa.Table(
    # a WebAuthn credential bound to one account (W3C WebAuthn Level 3 §7.1 step 27)
    "passkey", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("account_id", sa.ForeignKey("account.id", ondelete="CASCADE"), nullable=False,
              index=True),
    sa.Column("credential_id", sa.String(1400), nullable=False, unique=True),  # base64url
    sa.Column("public_key", sa.LargeBinary, nullable=False),  # COSE_Key
    sa.Column("sign_count", sa.BigInteger, nullable=False),  # 32-bit unsigned on the wire
    sa.Column("transports", sa.JSON, nullable=False),
    sa.Column("backup_eligible", sa.Boolean, nullable=False),  # BE: fixed for its lifetime
    sa.Column("backup_state", sa.Boolean, nullable=False),  # BS: may change
    sa.Column("aaguid", sa.String(36), nullable=False),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("last_used_at", TS, nullable=True),
    sa.Column("revoked_at", TS, nullable=True),
)

device = sa.Table(
    # a shared device (kiosk): its long-lived credential is a cookie; only its SHA-256 is here
    "device", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("tenant_id", sa.ForeignKey("tenant.id", ondelete="CASCADE"), nullable=False,
              index=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("location", sa.String(200), nullable=False),
    sa.Column("enrolment_hash", sa.String(64), nullable=True, unique=True),  # single use
    sa.Column("enrolment_expires_at", TS, nullable=True),
    sa.Column("credential_hash", sa.String(64), nullable=True, unique=True),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("enrolled_at", TS, nullable=True),
    sa.Column("last_seen_at", TS, nullable=True),
    sa.Column("revoked_at", TS, nullable=True),
)

webauthn_challenge = sa.Table(
    # server-side WebAuthn challenges (§13.4.3): single use, expiring, valid on every node
    "webauthn_challenge", metadata,
    sa.Column("id", sa.String(64), primary_key=True),  # SHA-256 of the challenge
    sa.Column("purpose", sa.String(16), nullable=False),  # register | authenticate
    sa.Column("account_id", sa.ForeignKey("account.id", ondelete="CASCADE"), nullable=True),
    sa.Column("device_id", sa.ForeignKey("device.id", ondelete="CASCADE"), nullable=True),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("expires_at", TS, nullable=False, index=True),
    sa.Column("consumed_at", TS, nullable=True),
)

connection_health = sa.Table(
    # the last success and failure of talking to a connection's IdP (probe, or an admin)
    "connection_health", metadata,
    sa.Column("connection_id", sa.ForeignKey("connection.id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("last_success_at", TS, nullable=True),
    sa.Column("last_failure_at", TS, nullable=True),
    sa.Column("last_error", sa.String(300), nullable=True),
    # an admin declared the IdP down: the probe leaves the record alone until they undo it
    sa.Column("declared_by", sa.String(200), nullable=True),
)

# sessions: the device they were opened on, how, whether offline, and the idle lock
session.append_column(sa.Column("device_id", sa.ForeignKey("device.id", ondelete="SET NULL"),
                                nullable=True, index=True))
# method: sso | passkey | offline | break_glass
session.append_column(sa.Column("method", sa.String(16), nullable=True))
session.append_column(sa.Column("offline", sa.Boolean, nullable=False,
                                server_default=sa.false()))
session.append_column(sa.Column("last_seen_at", TS, nullable=True))
session.append_column(sa.Column("idle_seconds", sa.Integer, nullable=True))  # NULL: no idle lock
# the passkey a session was opened with: revoking the passkey ends its sessions
session.append_column(sa.Column("passkey_id", sa.ForeignKey("passkey.id", ondelete="SET NULL"),
                                nullable=True, index=True))

# --- Admin console ----------------------------------------------------------------------------
admin_bootstrap_link = sa.Table(
    # `jitprov admin bootstrap`: a one-time link that opens an admin console session; only its
    # SHA-256 is stored, it is single use and expires after 15 minutes
    "admin_bootstrap_link", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),  # never the token
    # NULL: the session it opens administers every tenant
    sa.Column("tenant_id", sa.ForeignKey("tenant.id", ondelete="CASCADE"), nullable=True),
    sa.Column("created_by", sa.String(200), nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("expires_at", TS, nullable=False),
    sa.Column("used_at", TS, nullable=True),
)

admin_session = sa.Table(
    # a session of the admin console (cookie jitprov_admin, SameSite=Strict, path /admin):
    # separate from the user sessions, shorter, revocable
    "admin_session", metadata,
    sa.Column("id", sa.String(64), primary_key=True),  # SHA-256 of the cookie value
    sa.Column("kind", sa.String(16), nullable=False),  # bootstrap | sso
    # sso: the account holding the jitprov-admin role (checked again at every request)
    sa.Column("account_id", sa.ForeignKey("account.id", ondelete="CASCADE"), nullable=True,
              index=True),
    sa.Column("bootstrap_link_id",
              sa.ForeignKey("admin_bootstrap_link.id", ondelete="SET NULL"), nullable=True),
    # the one tenant it administers; NULL: every tenant (a bootstrap link without --tenant)
    sa.Column("tenant_id", sa.ForeignKey("tenant.id", ondelete="CASCADE"), nullable=True),
    sa.Column("display_name", sa.String(320), nullable=False),
    sa.Column("user_agent", sa.String(300), nullable=True),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("expires_at", TS, nullable=False),
    sa.Column("last_seen_at", TS, nullable=False),
    sa.Column("revoked_at", TS, nullable=True),
)

# the dashboard counts a tenant's events of the last 14 days: a range scan, not the whole log
sa.Index("ix_audit_event_tenant_occurred_at", audit_event.c.tenant_id,
         audit_event.c.occurred_at)

# --- Recorded claims --------------------------------------------------------------------------
# the claims of the identity's most recent login, secrets redacted (core/recorded_claims.py),
# written by the same statement that records the login; cleared after the tenant's retention
# (jobs/purge.py). The mapping editor tests and previews mappings against them.
identity.append_column(sa.Column("claims", sa.JSON, nullable=True))
identity.append_column(sa.Column("claims_at", TS, nullable=True))
# the impact preview reads a connection's most recent recorded logins, newest first
sa.Index("ix_identity_connection_claims_at", identity.c.connection_id, identity.c.claims_at)

# --- Re-evaluation queue ----------------------------------------------------------------------
# accounts whose rule grants a SCIM membership change touched, when the change was too large
# for the SCIM request's own transaction (a 10,000-member group deleted): the re-evaluation job
# (jobs/entitlements.py) takes them in batches, each in one transaction that deletes its rows
# (services/entitlements.py). ``actor`` and ``request_id`` are the SCIM request's, for the audit.
reevaluation = sa.Table(
    "reevaluation", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("tenant_id", sa.ForeignKey("tenant.id", ondelete="CASCADE"), nullable=False),
    sa.Column("account_id", sa.ForeignKey("account.id", ondelete="CASCADE"), nullable=False,
              index=True),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("request_id", sa.String(64), nullable=True),
    sa.Column("created_at", TS, nullable=False),
)

# --- Logout propagation -----------------------------------------------------------------------
# what an IdP's logout names, recorded at login: its own session id (OIDC ``sid``, SAML
# ``SessionIndex``) beside the connection and the subject (``sub``, SAML NameID) the session
# already holds; and, for OIDC RP-initiated logout, the ID token to send back as
# ``id_token_hint``, sealed with the secret key (it carries the person's claims)
session.append_column(sa.Column("idp_session_id", sa.String(255), nullable=True))
session.append_column(sa.Column("id_token_sealed", sa.Text, nullable=True))
# a logout names (connection, sid) or (connection, subject): each an index range scan
sa.Index("ix_session_connection_idp_session", session.c.connection_id,
         session.c.idp_session_id)
sa.Index("ix_session_connection_subject", session.c.connection_id, session.c.subject)

token_replay = sa.Table(
    # identifiers of single-use messages an IdP sent (the ``jti`` of an OIDC logout token),
    # kept until the message expires: the replay cache, shared by every node
    "token_replay", metadata,
    sa.Column("connection_id", sa.ForeignKey("connection.id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("token_id", sa.String(256), primary_key=True),
    sa.Column("expires_at", TS, nullable=False, index=True),
)

# --- This installation ------------------------------------------------------------------------
instance_setting = sa.Table(
    # facts every process and command on this database shares: the public base URL a server
    # last ran under (``base_url``), so the links a command prints match it
    "instance_setting", metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("updated_at", TS, nullable=False),
)

# --- Home-realm discovery ---------------------------------------------------------------------
email_domain = sa.Table(
    # a tenant's email domains, each verified by an admin (recorded in the audit) and mapped
    # to the connection its people sign in through: ``/sso/discover`` reads it. The domain,
    # in lowercase ASCII (IDNA) form, is the key: a domain belongs to one tenant at most
    "email_domain", metadata,
    sa.Column("domain", sa.String(253), primary_key=True),
    sa.Column("tenant_id", sa.ForeignKey("tenant.id", ondelete="CASCADE"), nullable=False,
              index=True),
    sa.Column("connection_id", sa.ForeignKey("connection.id", ondelete="CASCADE"),
              nullable=False, index=True),
    sa.Column("verified_by", sa.String(200), nullable=False),
    sa.Column("verified_at", TS, nullable=False),
)

# --- What /auth/verify shows changed ---------------------------------------------------------
auth_change = sa.Table(
    # one row, bumped by triggers on SQLite whenever a table the signed-in view is read from
    # changes (migration 0019): a node's session cache is good while it has not moved.
    # PostgreSQL's triggers NOTIFY instead (channel ``jitprov_auth``) and leave it alone
    "auth_change", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("version", sa.BigInteger, nullable=False),
)

# --- The audit chain head, moved by the database ----------------------------------------------
# the hash the head held before its last move: on PostgreSQL one statement takes the head,
# numbers and hashes the event and inserts it (store/audit.py), and the event's ``prev_hash``
# comes back from the head's ``RETURNING`` (migration 0020). Not read anywhere else
audit_head.append_column(sa.Column("prev_hash", sa.String(64), nullable=True))
