"""Rate limits (the ``limits`` library, sliding-window counters).

With ``JITPROV_REDIS_URL`` the counters live in Redis, shared by every worker and node; without
it, in this process's memory (each worker of each node counts on its own, so the effective
limit is the configured one times the number of worker processes). When Redis cannot be
reached, requests are let through unlimited: one warning is logged when that starts and one
line when Redis answers again (Redis is asked again at most every :data:`RETRY_REDIS_EVERY`
seconds meanwhile, so a dead Redis adds no latency).

Identifiers are client addresses or the SHA-256 of a bearer token, never a token itself.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass

from limits import RateLimitItem, parse_many
from limits.storage import storage_from_string
from limits.strategies import SlidingWindowCounterRateLimiter

from jitprov.services import logs, metrics
from jitprov.settings import Operations

#: seconds between two attempts to reach a Redis that failed
RETRY_REDIS_EVERY = 5.0
#: seconds a Redis command may take before the limit is skipped (loopback or LAN)
REDIS_TIMEOUT = 0.25

log = logs.get_logger("jitprov.ratelimit")


@dataclass(frozen=True, slots=True)
class Refusal:
    """A request over its limit: which limit, and after how many seconds to try again."""

    limit: str
    retry_after: int


def token_key(token: str) -> str:
    """The identifier of a bearer token in the counters (a digest, never the token)."""
    return hashlib.sha256(token.encode()).hexdigest()[:32]


def _storage_uri(redis_url: str) -> str:
    if redis_url.startswith("unix://"):
        return "redis+unix://" + redis_url[len("unix://"):]
    return redis_url


class RateLimiter:
    """The limits of :class:`~jitprov.settings.Operations`, checked with :meth:`hit`.

    :meth:`hit` blocks on Redis when ``shared`` (a loopback or LAN round trip, bounded by
    :data:`REDIS_TIMEOUT`): the web layer calls it from a worker thread then. Redis's
    client pool is thread-safe and tied to no event loop."""

    def __init__(self, ops: Operations) -> None:
        self.shared = bool(ops.redis_url)
        if self.shared:
            storage = storage_from_string(
                _storage_uri(ops.redis_url), key_prefix="jitprov",
                socket_connect_timeout=REDIS_TIMEOUT, socket_timeout=REDIS_TIMEOUT,
                wrap_exceptions=True)
        else:
            storage = storage_from_string("memory://")
        self._limiter = SlidingWindowCounterRateLimiter(storage)
        self._limits: dict[str, list[RateLimitItem]] = {
            name: parse_many(text) for name, text in ops.rate_limits if text}
        self._down_until = 0.0  # while Redis is unreachable: when to try it again
        self._down = False

    def limited(self, name: str) -> bool:
        """Whether the limit ``name`` is on."""
        return name in self._limits

    def hit(self, name: str, key: str) -> Refusal | None:
        """Count one request of ``key`` (a client address, a :func:`token_key`) against the
        limit ``name``; a :class:`Refusal` when it is over, None when it may go on (or when
        the limit is off, or Redis is unreachable)."""
        items = self._limits.get(name)
        if not items:
            return None
        if self._down and time.monotonic() < self._down_until:
            return None
        try:
            for item in items:
                if not self._limiter.hit(item, name, key):
                    stats = self._limiter.get_window_stats(item, name, key)
                    wait = max(1, math.ceil(stats.reset_time - time.time()))
                    metrics.RATE_LIMITED.labels(name).inc()
                    self._recovered()
                    return Refusal(name, min(wait, int(item.get_expiry())))
        except Exception as exc:  # Redis down, timed out, refused the script...
            self._down_until = time.monotonic() + RETRY_REDIS_EVERY
            if not self._down:
                self._down = True
                log.warning("rate_limits_off", reason="the rate-limit store (Redis) is "
                            "unreachable; requests are not limited until it answers",
                            error=type(exc).__name__)
            return None
        self._recovered()
        return None

    def _recovered(self) -> None:
        if self._down:
            self._down = False
            log.info("rate_limits_on", reason="the rate-limit store (Redis) answers again")
