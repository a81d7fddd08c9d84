"""Helpers for web tests: an app client and the demo-IdP login, driven by hand."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable
from typing import Any

import anyio.to_thread
import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from jitprov.services.context import ServiceContext
from jitprov.settings import Settings
from jitprov.store.database import Database
from jitprov.web.app import create_app
from tests.conftest import TEST_SECRET_KEY

ME_KEYS = {"id", "tenant", "connection", "external_id", "email", "name", "roles", "groups",
           "attributes", "provisioned_by", "created_at", "updated_at"}


def make_client(ctx: ServiceContext, *, dev_mode: bool = True) -> TestClient:
    settings = Settings(base_url="http://testserver", secret_key=TEST_SECRET_KEY,
                        dev_mode=dev_mode)
    return TestClient(create_app(settings, ctx=ctx), base_url="http://testserver",
                      raise_server_exceptions=False, follow_redirects=False)


def hidden_fields(html: str) -> dict[str, str]:
    return dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', html))


def start(client: TestClient, return_to: str = "/me") -> str:
    r = client.get("/sso/idp/login", params={"return_to": return_to})
    assert r.status_code == 303
    location = r.headers["location"]
    assert location.startswith("/dev/idp/idp?state=")
    return location.split("state=", 1)[1]


def idp_response(client: TestClient, state: str, **fields: str) -> dict[str, str]:
    form = {"state": state, "email": "ana@hospital.example", "email_verified": "on",
            "name": "Ana Lima", "department": "Ward 3", "groups": "Nurses"}
    form.update(fields)
    r = client.post("/dev/idp/idp/authorize", data=form)
    assert r.status_code == 200
    return hidden_fields(r.text)


def sign_in(client: TestClient, return_to: str = "/me", **fields: str) -> TestClient:
    state = start(client, return_to)
    r = client.post("/sso/idp/mock/callback", data=idp_response(client, state, **fields))
    assert r.status_code == 303, r.text
    return client


class HandOffs:
    """Functions run in a worker thread (anyio's, which every hand-off of the app uses)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[str] = []
        real = anyio.to_thread.run_sync

        async def counted(func: Callable[..., object], *args: object, **kwargs: Any
                          ) -> object:
            inner = getattr(func, "func", func)  # starlette hands over a partial
            self.calls.append(getattr(inner, "__name__", type(inner).__name__))
            return await real(func, *args, **kwargs)

        monkeypatch.setattr(anyio.to_thread, "run_sync", counted)


class OtherProcess:
    """Another process's writer (a second ``serve`` worker): a write transaction of its own
    connection to the same SQLite file, held until released."""

    def __init__(self, db: Database) -> None:
        path = sa.make_url(db.url).database
        assert path is not None
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.conn.execute("BEGIN IMMEDIATE")

    def release(self) -> None:
        self.conn.execute("COMMIT")
        self.conn.close()
