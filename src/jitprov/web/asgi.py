"""The app factory a multi-process server imports in each worker (``jitprov serve --workers``).

Each worker reads the same environment (``JITPROV_*``, set by ``serve`` before it forks) and
builds its own database pool: everything shared between workers lives in the database.
"""

from __future__ import annotations

from fastapi import FastAPI

from jitprov.services import logs
from jitprov.settings import load_settings
from jitprov.web.app import create_app


def app_from_environment() -> FastAPI:
    settings = load_settings()
    logs.configure(settings.ops.log_format, settings.ops.log_level)  # as the supervisor's
    return create_app(settings)
