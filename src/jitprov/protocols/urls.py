"""Which IdP endpoint URLs jitprov talks to: https, or plain http to this machine only."""

from __future__ import annotations

from urllib.parse import urlsplit

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def is_secure_url(url: str) -> bool:
    """https, or http to a loopback host (tests, local IdPs); checked on the parsed host so
    ``http://localhost.attacker.example`` or ``http://localhost@evil`` do not pass."""
    try:
        parsed = urlsplit(url)
        host = parsed.hostname
        parsed.port  # noqa: B018 - raises ValueError for a port that is not 0-65535
    except ValueError:
        return False
    if parsed.scheme == "https" and host:
        return True
    return parsed.scheme == "http" and parsed.username is None and host in LOOPBACK_HOSTS
