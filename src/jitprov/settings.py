"""One frozen Settings, read once at start from the environment (``JITPROV_*``)."""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path

DEFAULT_DATABASE_URL = "sqlite:///var/jitprov.db"
DEFAULT_KEY_FILE = Path("var/secret.key")


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    """Process-wide settings.

    ``secret_key`` seals every secret kept at rest (OIDC client secrets, SAML SP keys, identity
    token signing keys, webhook secrets) and keys the admin console's HMAC tokens (CSRF, the SSO
    sign-in continuation): rotating it makes those unreadable, so it is backed up with the
    database.
    """

    database_url: str = DEFAULT_DATABASE_URL
    base_url: str = "http://127.0.0.1:8000"
    secret_key: str = ""
    session_ttl: timedelta = timedelta(hours=12)  # one long shift
    login_request_ttl: timedelta = timedelta(minutes=10)
    dev_mode: bool = False
    #: prefix of the forward-auth identity headers (``X-Jitprov-User``...)
    forward_auth_header_prefix: str = "X-Jitprov-"
    #: webhooks may target private/loopback addresses (always true in dev mode)
    webhook_allow_private: bool = False
    #: networks server-side requests (SAML metadata, OIDC endpoints) may reach besides public
    #: addresses, e.g. ``("10.0.0.0/8",)`` for an IdP on the private network
    outbound_allow: tuple[str, ...] = ()
    #: time limits toward the database, in seconds (``store.database.DatabaseLimits``): a
    #: request that hits one answers 503 with Retry-After instead of hanging
    db_connect_timeout: float = 5.0
    db_statement_timeout: float = 15.0  # 0: none
    db_pool_timeout: float = 5.0
    db_busy_timeout: float = 10.0  # SQLite: waiting for the single writer

    @property
    def cookie_secure(self) -> bool:
        return self.base_url.startswith("https://")

    def __repr__(self) -> str:  # never print the key
        return (f"Settings(database_url={self.database_url!r}, base_url={self.base_url!r}, "
                f"dev_mode={self.dev_mode})")

    def with_overrides(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]


def load_settings(environ: dict[str, str] | None = None, *, dev_mode: bool = False) -> Settings:
    """Read ``JITPROV_DATABASE_URL``, ``JITPROV_BASE_URL``, ``JITPROV_SECRET_KEY``,
    ``JITPROV_SESSION_TTL_MINUTES``, ``JITPROV_FORWARD_AUTH_HEADER_PREFIX``,
    ``JITPROV_WEBHOOK_ALLOW_PRIVATE``, ``JITPROV_OUTBOUND_ALLOW`` and the database time limits
    in seconds: ``JITPROV_DB_CONNECT_TIMEOUT``, ``JITPROV_DB_STATEMENT_TIMEOUT``,
    ``JITPROV_DB_POOL_TIMEOUT``, ``JITPROV_DB_BUSY_TIMEOUT``. Without a secret key,
    one is created in ``var/secret.key`` (mode 0600) so the embedded setup works out of the
    box."""
    env = dict(os.environ) if environ is None else environ
    ttl_text = env.get("JITPROV_SESSION_TTL_MINUTES", "720")
    try:
        ttl = timedelta(minutes=int(ttl_text))
    except ValueError as exc:
        raise SettingsError(f"JITPROV_SESSION_TTL_MINUTES must be a whole number of minutes, "
                            f"not {ttl_text!r}") from exc
    base_url = env.get("JITPROV_BASE_URL", "http://127.0.0.1:8000").rstrip("/")
    if not base_url.startswith(("http://", "https://")):
        raise SettingsError(f"JITPROV_BASE_URL must start with http:// or https://: {base_url!r}")
    prefix = env.get("JITPROV_FORWARD_AUTH_HEADER_PREFIX", "X-Jitprov-")
    if not re.fullmatch(r"[A-Za-z0-9-]{1,40}", prefix):
        raise SettingsError("JITPROV_FORWARD_AUTH_HEADER_PREFIX must be letters, digits and "
                            f"hyphens (like X-Auth-), not {prefix!r}")
    outbound_allow = _networks(env.get("JITPROV_OUTBOUND_ALLOW", ""))
    connect_timeout = _seconds(env, "JITPROV_DB_CONNECT_TIMEOUT", 5.0)
    statement_timeout = _seconds(env, "JITPROV_DB_STATEMENT_TIMEOUT", 15.0, zero=True)
    pool_timeout = _seconds(env, "JITPROV_DB_POOL_TIMEOUT", 5.0)
    busy_timeout = _seconds(env, "JITPROV_DB_BUSY_TIMEOUT", 10.0)
    key = env.get("JITPROV_SECRET_KEY") or _key_from_file(DEFAULT_KEY_FILE)
    return Settings(database_url=env.get("JITPROV_DATABASE_URL", DEFAULT_DATABASE_URL),
                    base_url=base_url, secret_key=key, session_ttl=ttl, dev_mode=dev_mode,
                    forward_auth_header_prefix=prefix, outbound_allow=outbound_allow,
                    webhook_allow_private=dev_mode or env.get(
                        "JITPROV_WEBHOOK_ALLOW_PRIVATE") == "1",
                    db_connect_timeout=connect_timeout, db_statement_timeout=statement_timeout,
                    db_pool_timeout=pool_timeout, db_busy_timeout=busy_timeout)


def _seconds(env: dict[str, str], name: str, default: float, *, zero: bool = False) -> float:
    """A time limit in seconds; ``zero``: 0 turns it off."""
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 3600 or (value == 0 and not zero):
        least = "0 (none)" if zero else "more than 0"
        raise SettingsError(f"{name} must be a number of seconds, {least} to 3600, "
                            f"not {text!r}")
    return value


def _networks(text: str) -> tuple[str, ...]:
    """``JITPROV_OUTBOUND_ALLOW``: comma-separated IP addresses or CIDR networks."""
    items = tuple(part.strip() for part in text.split(",") if part.strip())
    for item in items:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise SettingsError("JITPROV_OUTBOUND_ALLOW must be comma-separated IP addresses "
                                f"or networks (like 10.0.0.0/8), not {item!r}") from None
    return items


def _key_from_file(path: Path) -> str:
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key + "\n")
    return key
