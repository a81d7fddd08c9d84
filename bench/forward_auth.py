"""GET /auth/verify in-process (the ASGI app through Starlette's test client, whose own cost is
included): session lookup, roles, identity headers and the signed token, per request."""

from __future__ import annotations

import re
import tempfile

from starlette.testclient import TestClient

from bench.oidc import _measure
from jitprov.services import admin
from jitprov.services.context import ServiceContext
from jitprov.services.secretbox import SecretBox
from jitprov.settings import Settings
from jitprov.store.database import Database
from jitprov.web.app import create_app

MAPPING = "profile: {email: email, name: name}\ngroups: groups\nroles: {default: [staff]}\n"


def run(*, ops: int, postgres_url: str) -> list[dict[str, object]]:
    del postgres_url  # one database is enough: the lookup is a primary-key read
    tmp = tempfile.mkdtemp(prefix="jitprov-bench-fa-")
    db = Database.connect(f"sqlite:///{tmp}/fa.db", pool_size=4)
    db.upgrade()
    ctx = ServiceContext(db=db, secretbox=SecretBox("bench"))
    admin.create_tenant(ctx, "bench")
    admin.add_mock_connection(ctx, tenant="bench", slug="demo", mapping=MAPPING,
                              mapping_source="bench.yaml")
    settings = Settings(base_url="http://testserver", secret_key="bench", dev_mode=True)
    with TestClient(create_app(settings, ctx=ctx), follow_redirects=False) as client:
        state = client.get("/sso/demo/login").headers["location"].split("state=")[1]
        page = client.post("/dev/idp/demo/authorize", data={
            "state": state, "email": "a@b.example", "email_verified": "on", "name": "A",
            "groups": "Nurses"}).text
        fields = dict(re.findall(r'name="(\w+)" value="([^"]*)"', page))
        client.post("/sso/demo/mock/callback", data=fields)
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
    db.dispose()

    return rows
