"""The property every fuzzer of the suite checks on every answer: not a 5xx, no traceback in
the body, nothing logged as an unexpected error."""

from __future__ import annotations

import logging
from typing import Any

import pytest

#: what a Python traceback or an exception's repr leaks into a body
LEAKS = ("Traceback (most recent call last)", 'File "/', "sqlalchemy.", "psycopg.",
         "sqlite3.")


class ErrorLog:
    """The ERROR records logged since the last look (``caplog`` at ERROR level)."""

    def __init__(self, caplog: pytest.LogCaptureFixture) -> None:
        self.caplog = caplog
        self.seen = 0

    def probe(self) -> None:
        """Check that an error the app logs reaches this log (the app's logging setup could
        stop it on the way), then forget it."""
        logging.getLogger("jitprov.web").error("fuzz probe")
        assert any("fuzz probe" in line for line in self.new()), "errors are not captured"

    def new(self) -> list[str]:
        records = [r for r in self.caplog.records if r.levelno >= logging.ERROR]
        fresh = records[self.seen:]
        self.seen = len(records)
        return [f"{r.name}: {r.getMessage()} {r.exc_text or ''}".strip() for r in fresh]


def assert_sound(response: Any, what: str, errors: ErrorLog, *, ok: bool = False) -> None:
    """``response`` (to ``what``) is no server error, leaks no internals, and nothing was
    logged as an error while it was answered; with ``ok``, it is a 200."""
    text = response.text
    logged = errors.new()
    assert response.status_code < 500, f"{what}: {response.status_code} {text[:500]} {logged}"
    for leak in LEAKS:
        assert leak not in text, f"{what}: the body leaks {leak!r}: {text[:500]}"
    assert not logged, f"{what}: {response.status_code}, logged {logged}"
    if ok:
        assert response.status_code == 200, f"{what}: {response.status_code} {text[:500]}"
