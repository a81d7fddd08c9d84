"""The app factory a multi-process server imports in each worker (``jitprov serve --workers``).

Each worker reads the same environment (``JITPROV_*``, set by ``serve`` before it forks) and
builds its own database pool: everything shared between workers lives in the database.
"""

from __future__ import annotations

import gc

from fastapi import FastAPI

from jitprov.services import logs
from jitprov.services.context import ServiceContext
from jitprov.settings import Settings, load_settings
from jitprov.web.app import create_app


def app_from_environment() -> FastAPI:
    settings = load_settings()
    logs.configure(settings.ops.log_format, settings.ops.log_level)  # as the supervisor's
    return serving_app(settings)


def serving_app(settings: Settings, ctx: ServiceContext | None = None) -> FastAPI:
    """The app of a process about to serve it (``serve``, its workers, ``dev``): built, then
    the heap settled (:func:`settle_heap`)."""
    app = create_app(settings, ctx=ctx)
    settle_heap()
    return app


def settle_heap() -> None:
    """Leave what exists at start out of Python's full collections, for the process's life.

    A full collection of the cyclic garbage collector walks every object it tracks, and holds
    the GIL while it does: a worker holds about 200,000 once started (modules, classes,
    functions, the app), and under a stream of logins a full collection came every couple
    of thousand of them and stopped the worker's event loop for 120-150 ms, which every
    request in flight waited out. Collected once, then frozen (``gc.freeze``), those objects are
    never walked again; what the worker makes afterwards is collected as before. Called by
    ``serve`` in the process that serves, never by :func:`create_app`: a test run builds
    thousands of apps in one process, and a frozen object that later becomes part of a
    garbage cycle is never freed."""
    gc.collect()
    gc.freeze()
