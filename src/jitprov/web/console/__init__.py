"""The admin console at ``/admin``: server-rendered pages over the services.

``ROUTES`` gathers the ``(path, endpoint, methods)`` triples of the console's modules, as
``web/routes/*.py`` do; ``web/app.py`` registers them and calls ``shell.install``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jitprov.web.console import (
    approvals,
    audit,
    connections,
    dashboard,
    grants,
    links,
    mapping,
    scim_tokens,
    signin,
    users,
    webhooks,
)
from jitprov.web.console import shell as shell

Route = tuple[str, Callable[..., Any], list[str]]

ROUTES: list[Route] = [
    *signin.ROUTES, *dashboard.ROUTES, *users.ROUTES, *approvals.ROUTES, *audit.ROUTES,
    *connections.ROUTES, *mapping.ROUTES, *scim_tokens.ROUTES, *webhooks.ROUTES,
    *links.ROUTES, *grants.ROUTES,
]
