"""The in-process app the HTTP-level benchmarks drive: SQLite, one tenant, the demo IdP."""

from __future__ import annotations

import re
import tempfile

from starlette.testclient import TestClient

from jitprov.services import admin
from jitprov.services.context import ServiceContext
from jitprov.services.secretbox import SecretBox
from jitprov.services.session_cache import SessionCache
from jitprov.settings import Settings
from jitprov.store.database import Database
from jitprov.web.app import create_app

MAPPING = "profile: {email: email, name: name}\ngroups: groups\nroles: {default: [staff]}\n"


def demo_app(url: str | None = None, *,
             session_cache: bool = False) -> tuple[ServiceContext, TestClient]:
    """A migrated database (a new SQLite file unless ``url``: an empty PostgreSQL database)
    with tenant ``bench`` and demo connection ``demo``, and a test client on the app (enter it
    with ``with``; dispose ``ctx.db`` afterwards). ``session_cache``: sessions kept in memory
    as ``serve`` keeps them (stop ``ctx.session_cache`` afterwards)."""
    if url is None:
        url = f"sqlite:///{tempfile.mkdtemp(prefix='jitprov-bench-')}/bench.db"
    db = Database.connect(url, pool_size=4)
    db.upgrade()
    ctx = ServiceContext(db=db, secretbox=SecretBox("bench"),
                         session_cache=SessionCache(db) if session_cache else None)
    admin.create_tenant(ctx, "bench")
    admin.add_mock_connection(ctx, tenant="bench", slug="demo", mapping=MAPPING,
                              mapping_source="bench.yaml")
    return ctx, client_of(ctx)


def client_of(ctx: ServiceContext) -> TestClient:
    """A test client on a new app over ``ctx`` (enter it with ``with``)."""
    settings = Settings(base_url="http://testserver", secret_key="bench", dev_mode=True)
    return TestClient(create_app(settings, ctx=ctx), follow_redirects=False)


def sign_in(client: TestClient, email: str) -> None:
    """Through the demo IdP, as a browser would."""
    client.cookies.clear()
    state = client.get("/sso/demo/login").headers["location"].split("state=")[1]
    page = client.post("/dev/idp/demo/authorize", data={
        "state": state, "email": email, "email_verified": "on", "name": "A",
        "groups": "Nurses"}).text
    client.post("/sso/demo/mock/callback",
                data=dict(re.findall(r'name="(\w+)" value="([^"]*)"', page)))
