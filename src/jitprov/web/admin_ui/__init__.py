"""The admin console at ``/admin`` (issue #9): server-rendered pages over the services.

``ROUTES`` gathers the ``(path, endpoint, methods)`` triples of the console's modules, as
``web/routes/*.py`` do; ``web/app.py`` registers them and calls ``shell.install``. The
pages of ``connections``, ``mapping``, ``scim_tokens`` and ``webhooks`` join when their
modules exist (they are built separately); until then the console works without them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from jitprov.web.admin_ui import approvals, audit, dashboard, signin, users
from jitprov.web.admin_ui import shell as shell

Route = tuple[str, Callable[..., Any], list[str]]

#: modules of the console that may not exist yet: a missing one is skipped
OPTIONAL_MODULES = ("connections", "mapping", "scim_tokens", "webhooks")


def _optional_routes() -> list[Route]:
    routes: list[Route] = []
    for name in OPTIONAL_MODULES:
        qualified = f"{__name__}.{name}"
        try:
            module = importlib.import_module(qualified)
        except ModuleNotFoundError as exc:
            if exc.name != qualified:  # the module exists but an import inside it fails
                raise
            continue
        routes += list(module.ROUTES)
    return routes


ROUTES: list[Route] = [
    *signin.ROUTES, *dashboard.ROUTES, *users.ROUTES, *approvals.ROUTES, *audit.ROUTES,
    *_optional_routes(),
]
