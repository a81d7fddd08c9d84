"""GET /auth/verify in-process (the ASGI app through Starlette's test client, whose own cost is
included): session lookup, roles, identity headers and the signed token, per request."""

from __future__ import annotations

from bench.demo_app import demo_app, sign_in
from bench.oidc import _measure


def run(*, ops: int, postgres_url: str) -> list[dict[str, object]]:
    del postgres_url  # one database is enough: the lookup is a primary-key read
    ctx, app = demo_app()
    with app as client:
        sign_in(client, "a@b.example")
        assert client.get("/auth/verify").status_code == 200
        rows = [{"scenario": "forward-auth, signed in (200 + token)", "db": "sqlite",
                 "clients": 1, **_measure(lambda n: client.get("/auth/verify"), range(ops))}]
        client.cookies.clear()
        rows.append({"scenario": "forward-auth, anonymous (401)", "db": "sqlite",
                     "clients": 1, **_measure(lambda n: client.get("/auth/verify"),
                                              range(ops))})
        probe = _measure(lambda n: client.get("/healthz"), range(ops))
        rows.append({"scenario": "test-client floor (GET /healthz)", "db": "-",
                     "clients": 1, **probe})
    ctx.db.dispose()
    return rows
