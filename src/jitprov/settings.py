"""One frozen Settings, read once at start from the environment (``JITPROV_*``)."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
import re
import secrets
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

DEFAULT_DATABASE_URL = "sqlite:///var/jitprov.db"
#: the name of the key file kept next to an SQLite database (``jitprov dev``, ``secrets init``)
KEY_FILE_NAME = "secret.key"
#: a secret key is at least this many random bytes (base64 or hex)
MIN_KEY_BYTES = 32
_KEY_HELP = ("generate one with `jitprov secrets init` (or `python3 -c \"import secrets; "
             "print(secrets.token_urlsafe(32))\"`)")


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


#: the rate limits: name -> (the variable that sets it, its default), in the ``limits``
#: notation (``"30/minute"``, ``"5/second;100/hour"``); ``off`` disables one
RATE_LIMIT_DEFAULTS = {
    # GET /sso/{c}/login per client address (each start writes a row)
    "login": ("JITPROV_RATE_LIMIT_LOGIN", "120/minute"),
    # SCIM requests per bearer token (20 a second on average)
    "scim": ("JITPROV_RATE_LIMIT_SCIM", "1200/minute"),
    # passkey sign-in requests per address (options, then the answer: 2 per attempt)
    "passkey": ("JITPROV_RATE_LIMIT_PASSKEY", "60/minute"),
    # break-glass code attempts per client address
    "break_glass": ("JITPROV_RATE_LIMIT_BREAK_GLASS", "5/minute"),
    # console sign-in attempts (bootstrap link, SSO continuation) per client address
    "console": ("JITPROV_RATE_LIMIT_CONSOLE", "10/minute"),
    # IdP logout messages (OIDC back-channel, SAML SLO) per address: an IdP sends a few
    "idp_logout": ("JITPROV_RATE_LIMIT_IDP_LOGOUT", "600/minute"),
}


@dataclass(frozen=True)
class Operations:
    """How the server is run and watched: logs, proxies, metrics, rate limits.

    ``trusted_proxies`` are the peers (addresses or CIDR networks, ``*`` for any) whose
    ``X-Forwarded-For``, ``X-Forwarded-Proto`` and ``X-Request-Id`` are believed.
    ``metrics_token`` lets a scraper read ``/metrics`` without an admin token.
    ``redis_url``, when set, is where the rate-limit counters of every node are kept.
    ``rate_limits`` maps a name of :data:`RATE_LIMIT_DEFAULTS` to its limit, ``""`` for none.
    """

    log_format: str = "json"  # or "console"
    log_level: str = "INFO"
    trusted_proxies: tuple[str, ...] = ("127.0.0.1", "::1")
    metrics_token: str = field(default="", repr=False)
    redis_url: str = field(default="", repr=False)
    #: none unless given: :func:`load_operations` (the server's settings) applies the defaults
    rate_limits: tuple[tuple[str, str], ...] = ()
    #: signed-in sessions kept in memory (services/session_cache.py); off unless given:
    #: :func:`load_operations` turns it on unless ``JITPROV_SESSION_CACHE=off``
    session_cache: bool = False

    def rate_limit(self, name: str) -> str:
        """The limit named ``name``, ``""`` when it is off."""
        return dict(self.rate_limits).get(name, "")


@dataclass(frozen=True)
class Settings:
    """Process-wide settings.

    ``secret_key`` seals every secret kept at rest (OIDC client secrets, SAML SP keys, identity
    token signing keys, webhook secrets) and keys the admin console's HMAC tokens (CSRF, the SSO
    sign-in continuation); it is backed up with the database. ``previous_secret_keys`` (older
    first-to-last, from ``JITPROV_SECRET_KEYS``) still open values sealed before a rotation
    until ``jitprov secrets rotate`` has re-sealed them. An empty ``secret_key`` means none was
    configured: ``key_problem`` says how to set one, and building a service context refuses.
    """

    database_url: str = DEFAULT_DATABASE_URL
    base_url: str = "http://127.0.0.1:8000"
    secret_key: str = ""
    previous_secret_keys: tuple[str, ...] = ()
    #: why there is no secret key (and how to set one), when ``secret_key`` is empty
    key_problem: str = ""
    #: where the key was read from (a variable's name or a file path), for messages
    key_source: str = field(default="", compare=False)
    session_ttl: timedelta = timedelta(hours=12)  # one long shift
    login_request_ttl: timedelta = timedelta(minutes=10)
    dev_mode: bool = False
    #: prefix of the forward-auth identity headers (``X-Jitprov-User``...)
    forward_auth_header_prefix: str = "X-Jitprov-"
    #: the parent domain the session cookie is shared with (``example.org``: every host under
    #: it receives it); empty: host-only on the base URL's host (:func:`parse_cookie_domain`)
    cookie_domain: str = ""
    #: hosts (``host`` or ``host:port``) an absolute ``return_to`` may lead to after a login
    #: (:func:`parse_return_hosts`); none: only local paths
    allowed_return_hosts: tuple[str, ...] = ()
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
    #: connections each process keeps open, and how many more it may open at peaks
    db_pool_size: int = 20
    db_max_overflow: int = 20
    #: PostgreSQL through a transaction pooler (PgBouncer): auto | on | off
    db_transaction_pooling: str = "auto"
    #: logs, trusted proxies, the metrics token, rate limits (:func:`load_operations`)
    ops: Operations = Operations()

    @property
    def cookie_secure(self) -> bool:
        return self.base_url.startswith("https://")

    def __repr__(self) -> str:  # never print the key
        return (f"Settings(database_url={self.database_url!r}, base_url={self.base_url!r}, "
                f"dev_mode={self.dev_mode})")

    def require_key(self) -> None:
        """Raise :class:`SettingsError` (saying how to set one) when no key is configured."""
        if not self.secret_key:
            raise SettingsError(self.key_problem or "no secret key: set JITPROV_SECRET_KEY")

    def with_overrides(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]


def load_settings(environ: dict[str, str] | None = None, *, dev_mode: bool = False,
                  database_url: str | None = None) -> Settings:
    """Read ``JITPROV_DATABASE_URL`` (``database_url`` wins when given), ``JITPROV_BASE_URL``,
    the secret key (:func:`resolve_secret_keys`), ``JITPROV_SESSION_TTL_MINUTES``,
    ``JITPROV_FORWARD_AUTH_HEADER_PREFIX``, ``JITPROV_WEBHOOK_ALLOW_PRIVATE``,
    ``JITPROV_OUTBOUND_ALLOW``, ``JITPROV_COOKIE_DOMAIN``, ``JITPROV_ALLOWED_RETURN_HOSTS``
    and the database time limits in seconds:
    ``JITPROV_DB_CONNECT_TIMEOUT``, ``JITPROV_DB_STATEMENT_TIMEOUT``,
    ``JITPROV_DB_POOL_TIMEOUT``, ``JITPROV_DB_BUSY_TIMEOUT``."""
    env = dict(os.environ) if environ is None else environ
    ttl_text = env.get("JITPROV_SESSION_TTL_MINUTES", "720")
    minutes = int(ttl_text) if re.fullmatch(r"\s*\d{1,6}\s*", ttl_text) else 0
    if not 1 <= minutes <= 10_080:
        raise SettingsError("JITPROV_SESSION_TTL_MINUTES must be a whole number of minutes "
                            f"from 1 to 10080 (a week), not {ttl_text!r}")
    ttl = timedelta(minutes=minutes)
    base_url = env.get("JITPROV_BASE_URL", "http://127.0.0.1:8000").rstrip("/")
    if not base_url.startswith(("http://", "https://")):
        raise SettingsError(f"JITPROV_BASE_URL must start with http:// or https://: {base_url!r}")
    prefix = env.get("JITPROV_FORWARD_AUTH_HEADER_PREFIX", "X-Jitprov-")
    if not re.fullmatch(r"[A-Za-z0-9-]{1,40}", prefix):
        raise SettingsError("JITPROV_FORWARD_AUTH_HEADER_PREFIX must be letters, digits and "
                            f"hyphens (like X-Auth-), not {prefix!r}")
    outbound_allow = _networks(env.get("JITPROV_OUTBOUND_ALLOW", ""))
    cookie_domain = parse_cookie_domain(env.get("JITPROV_COOKIE_DOMAIN", ""), base_url)
    return_hosts = parse_return_hosts(env.get("JITPROV_ALLOWED_RETURN_HOSTS", ""))
    connect_timeout = _seconds(env, "JITPROV_DB_CONNECT_TIMEOUT", 5.0)
    statement_timeout = _seconds(env, "JITPROV_DB_STATEMENT_TIMEOUT", 15.0, zero=True)
    pool_timeout = _seconds(env, "JITPROV_DB_POOL_TIMEOUT", 5.0)
    busy_timeout = _seconds(env, "JITPROV_DB_BUSY_TIMEOUT", 10.0)
    pool_size = _count(env, "JITPROV_DB_POOL_SIZE", 20, least=1)
    max_overflow = _count(env, "JITPROV_DB_MAX_OVERFLOW", pool_size, least=0)
    pooling = env.get("JITPROV_DB_TRANSACTION_POOLING", "auto").strip().lower() or "auto"
    if pooling not in ("auto", "on", "off"):
        raise SettingsError("JITPROV_DB_TRANSACTION_POOLING must be auto, on or off, "
                            f"not {pooling!r}")
    database_url = database_url or env.get("JITPROV_DATABASE_URL", DEFAULT_DATABASE_URL)
    keys, source, problem = resolve_secret_keys(env, database_url, dev_mode=dev_mode)
    return Settings(database_url=database_url,
                    base_url=base_url, secret_key=keys[0] if keys else "",
                    previous_secret_keys=keys[1:], key_problem=problem, key_source=source,
                    session_ttl=ttl, dev_mode=dev_mode,
                    forward_auth_header_prefix=prefix, outbound_allow=outbound_allow,
                    cookie_domain=cookie_domain, allowed_return_hosts=return_hosts,
                    webhook_allow_private=dev_mode or env.get(
                        "JITPROV_WEBHOOK_ALLOW_PRIVATE") == "1",
                    db_connect_timeout=connect_timeout, db_statement_timeout=statement_timeout,
                    db_pool_timeout=pool_timeout, db_busy_timeout=busy_timeout,
                    db_pool_size=pool_size, db_max_overflow=max_overflow,
                    db_transaction_pooling=pooling,
                    ops=load_operations(env, dev_mode=dev_mode))


def _count(env: dict[str, str], name: str, default: int, *, least: int) -> int:
    """A number of connections: a whole number from ``least`` to 500."""
    text = env.get(name, "").strip()
    if not text:
        return default
    value = int(text) if text.isdigit() else -1
    if not least <= value <= 500:
        raise SettingsError(f"{name} must be a whole number from {least} to 500, not {text!r}")
    return value


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


_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOST_NAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")


def parse_cookie_domain(text: str, base_url: str) -> str:
    """``JITPROV_COOKIE_DOMAIN``: a DNS name of at least two labels (a leading dot is
    dropped: ``.example.org`` is ``example.org``), which the base URL's host is, or is
    inside; ``""`` when unset. An IP address, a single label (``org``, ``localhost``: browsers
    refuse those) or a domain the base URL is outside of is refused."""
    domain = text.strip().lower().removeprefix(".")
    if not domain:
        return ""
    if not _HOST_NAME.fullmatch(domain) or "." not in domain or \
            domain.rsplit(".", 1)[1].isdigit():
        raise SettingsError("JITPROV_COOKIE_DOMAIN must be a parent domain name of at least "
                            f"two labels (like example.org), not {text.strip()!r}")
    host = (urlsplit(base_url).hostname or "").lower()
    if host != domain and not host.endswith("." + domain):
        raise SettingsError(f"JITPROV_COOKIE_DOMAIN {domain!r} must contain the host of "
                            f"JITPROV_BASE_URL ({host!r}): the session cookie is set there")
    return domain


def parse_return_hosts(text: str) -> tuple[str, ...]:
    """``JITPROV_ALLOWED_RETURN_HOSTS``: comma-separated host names or IPv4 addresses, each
    optionally with ``:port`` (without one, only the scheme's default port), lowercased.
    Matched exactly: no wildcard, no scheme, no path."""
    hosts: list[str] = []
    for item in (part.strip().lower() for part in text.split(",")):
        if not item:
            continue
        name, _, port = item.partition(":")
        if not _HOST_NAME.fullmatch(name) or (
                port and not (re.fullmatch(r"[1-9][0-9]{0,4}", port)
                              and int(port) <= 65535)):
            why = " (wildcards are not accepted: list each host)" if "*" in item else ""
            raise SettingsError("JITPROV_ALLOWED_RETURN_HOSTS must be comma-separated host "
                                "names, each optionally with :port (like app1.example.org, "
                                f"app2.example.org:8443), not {item!r}{why}")
        hosts.append(item)
    return tuple(dict.fromkeys(hosts))


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


def load_operations(env: dict[str, str], *, dev_mode: bool = False) -> Operations:
    """Read ``JITPROV_LOG_FORMAT`` (``json``, the default of ``serve``, or ``console``, the
    default of ``dev``), ``JITPROV_LOG_LEVEL``, ``JITPROV_TRUSTED_PROXIES`` (addresses or
    networks, ``*`` for any peer; loopback by default, as uvicorn), ``JITPROV_METRICS_TOKEN``
    (at least 16 characters), ``JITPROV_REDIS_URL``, ``JITPROV_SESSION_CACHE`` (``on``, the
    default, or ``off``) and the variables of :data:`RATE_LIMIT_DEFAULTS`."""
    from limits import parse_many

    log_format = env.get("JITPROV_LOG_FORMAT", "").strip().lower() or (
        "console" if dev_mode else "json")
    if log_format not in ("json", "console"):
        raise SettingsError(f"JITPROV_LOG_FORMAT must be json or console, not {log_format!r}")
    log_level = env.get("JITPROV_LOG_LEVEL", "").strip().upper() or "INFO"
    if log_level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise SettingsError("JITPROV_LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or "
                            f"CRITICAL, not {log_level!r}")
    proxies_text = env.get("JITPROV_TRUSTED_PROXIES")
    if proxies_text is None:
        proxies = Operations.trusted_proxies
    elif proxies_text.strip() == "*":
        proxies = ("*",)
    else:
        proxies = tuple(part.strip() for part in proxies_text.split(",") if part.strip())
        for item in proxies:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise SettingsError(
                    "JITPROV_TRUSTED_PROXIES must be comma-separated IP addresses or networks "
                    f"(like 10.0.0.0/8), or *, not {item!r}") from None
    metrics_token = env.get("JITPROV_METRICS_TOKEN", "").strip()
    if metrics_token and len(metrics_token) < 16:
        raise SettingsError("JITPROV_METRICS_TOKEN must be at least 16 characters (a random "
                            "string, like the output of `openssl rand -hex 16`)")
    redis_url = env.get("JITPROV_REDIS_URL", "").strip()
    if redis_url and not redis_url.startswith(("redis://", "rediss://", "unix://")):
        raise SettingsError("JITPROV_REDIS_URL must be a redis://, rediss:// or unix:// URL")
    session_cache = env.get("JITPROV_SESSION_CACHE", "").strip().lower() or "on"
    if session_cache not in ("on", "off"):
        raise SettingsError(f"JITPROV_SESSION_CACHE must be on or off, not {session_cache!r}")
    limits: list[tuple[str, str]] = []
    for name, (variable, default) in RATE_LIMIT_DEFAULTS.items():
        text = env.get(variable, "").strip() or default
        if text.lower() in ("off", "0", "none"):
            limits.append((name, ""))
            continue
        try:
            if any(item.amount < 1 for item in parse_many(text)):
                raise ValueError(text)
        except ValueError:
            raise SettingsError(f"{variable} must be a limit like 30/minute or "
                                f"5/second;100/hour, or off, not {text!r}") from None
        limits.append((name, text))
    return Operations(log_format=log_format, log_level=log_level, trusted_proxies=proxies,
                      metrics_token=metrics_token, redis_url=redis_url,
                      rate_limits=tuple(limits), session_cache=session_cache == "on")


def resolve_secret_keys(env: dict[str, str], database_url: str, *,
                        dev_mode: bool = False) -> tuple[tuple[str, ...], str, str]:
    """The secret keys, newest first, where they came from, and (when there is none) what to
    do about it.

    In order: ``JITPROV_SECRET_KEYS`` (comma-separated, newest first: a rotation),
    ``JITPROV_SECRET_KEY``, ``JITPROV_SECRET_KEY_FILE`` (one key per line, newest first); set
    only one of them. Without any, an SQLite database's own key file ``secret.key`` beside it
    (what ``jitprov dev`` and ``jitprov secrets init`` write) is read. Only ``jitprov dev``
    creates that file; any other command without a key answers with how to set one, so a key
    is never made up silently in whatever directory a command ran from. Every key must be at
    least :data:`MIN_KEY_BYTES` random bytes (base64 or hex), else :class:`SettingsError`.
    """
    given = [name for name in ("JITPROV_SECRET_KEYS", "JITPROV_SECRET_KEY",
                               "JITPROV_SECRET_KEY_FILE") if env.get(name, "").strip()]
    if len(given) > 1:
        raise SettingsError(f"set only one of {' and '.join(given)}")
    if given == ["JITPROV_SECRET_KEYS"]:
        keys = tuple(part.strip() for part in env["JITPROV_SECRET_KEYS"].split(","))
        source = "JITPROV_SECRET_KEYS"
    elif given == ["JITPROV_SECRET_KEY"]:
        keys, source = (env["JITPROV_SECRET_KEY"].strip(),), "JITPROV_SECRET_KEY"
    else:
        path = (Path(env["JITPROV_SECRET_KEY_FILE"].strip()) if given
                else key_file_for(database_url))
        if path is None or (not given and not path.exists() and not dev_mode):
            how = (f"or create {path} with `jitprov secrets init`" if path
                   else _KEY_HELP)
            return (), "", f"no secret key: set JITPROV_SECRET_KEY on every node; {how}"
        if not path.exists() and dev_mode:
            write_key_file(path, generate_key())
        keys, source = read_key_file(path), str(path)
    for index, key in enumerate(keys):
        what = source if len(keys) == 1 else f"key {index + 1} of {source}"
        check_key_strength(key, what)
    return keys, source, ""


def key_file_for(database_url: str) -> Path | None:
    """``secret.key`` beside an SQLite database file; None for other databases."""
    if not database_url.startswith("sqlite:///"):
        return None
    path = database_url[len("sqlite:///"):].split("?", 1)[0]
    if not path or path == ":memory:":
        return None
    return Path(path).parent / KEY_FILE_NAME


def read_key_file(path: Path) -> tuple[str, ...]:
    """A key file: one key per line, newest first; blank lines and ``#`` comments skipped."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"cannot read the secret key file {path}: "
                            f"{exc.strerror if isinstance(exc, OSError) else 'not text'}"
                            ) from None
    keys = tuple(line.strip() for line in text.splitlines()
                 if line.strip() and not line.lstrip().startswith("#"))
    if not keys:
        raise SettingsError(f"the secret key file {path} holds no key; " + _KEY_HELP)
    return keys


def generate_key() -> str:
    """A new key: 32 random bytes, URL-safe base64 (43 characters)."""
    return secrets.token_urlsafe(MIN_KEY_BYTES)


def write_key_file(path: Path, key: str) -> None:
    """Create ``path`` (mode 0600) holding ``key``; never overwrites an existing file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key + "\n")


def check_key_strength(key: str, what: str) -> None:
    """Refuse a key that is not at least :data:`MIN_KEY_BYTES` random bytes written in hex or
    base64 (standard or URL-safe, padding optional): a short or guessable value would let an
    offline dictionary attack on a database dump open every sealed secret. A decoded value
    with fewer than 16 distinct bytes is refused as not random (32 random bytes have ~30)."""
    raw = _decode_key(key)
    if raw is None or len(raw) < MIN_KEY_BYTES:
        raise SettingsError(f"{what} is too weak: a secret key is at least {MIN_KEY_BYTES} "
                            "random bytes, written in base64 (43+ characters) or hex (64+); "
                            + _KEY_HELP)
    if len(set(raw)) < 16:
        raise SettingsError(f"{what} does not look random (too few distinct bytes); "
                            + _KEY_HELP)


def _decode_key(key: str) -> bytes | None:
    if re.fullmatch(r"(?:[0-9a-fA-F]{2})+", key):
        return bytes.fromhex(key)
    if not re.fullmatch(r"[A-Za-z0-9+/_-]+={0,2}", key):
        return None
    text = key.rstrip("=").replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None
