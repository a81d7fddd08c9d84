"""``GET /readyz``: readiness (database, schema, secret key), for load balancers and
orchestrators; ``GET /healthz`` (in ``pages.py``) stays liveness and touches nothing."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from jitprov.core.errors import DatabaseNotReady
from jitprov.services.readiness import readiness
from jitprov.web.routes.common import ctx_of


async def readyz(request: Request) -> Response:
    """200 when every check passes; 503 with ``Retry-After`` and the failing check named."""
    outcome = await run_in_threadpool(readiness, ctx_of(request))
    headers = {"Cache-Control": "no-store"}
    if not outcome.ready:
        headers["Retry-After"] = str(DatabaseNotReady.retry_after)
    return JSONResponse(outcome.as_json(), status_code=200 if outcome.ready else 503,
                        headers=headers)


ROUTES = [("/readyz", readyz, ["GET"])]
