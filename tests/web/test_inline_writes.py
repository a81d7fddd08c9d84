"""Writes served on the event loop, through HTTP: on SQLite a SCIM User write and the SAML ACS run
their service in the worker's event loop when the write turn is free (no thread hand-off), and
in a worker thread when another writer holds it, with the loop serving other requests
meanwhile and nothing written twice; PostgreSQL always uses the thread. SQLite's write-ahead
log is copied back by a thread of its own, not by the commit that fills it."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import sqlalchemy as sa

from jitprov.services import audit_export, metrics
from jitprov.services.context import ServiceContext
from jitprov.services.login import flow
from jitprov.store import tables as t
from jitprov.store.database import Checkpointer
from jitprov.testing.builders import setup_connection
from jitprov.testing.saml_idp import FakeSamlIdp, add_connection
from tests.web.helpers import HandOffs, OtherProcess, make_client
from tests.web.scim_helpers import BASE, GROUP_SCHEMA, auth, patch, scim_token, user
from tests.web.test_saml_routes import ACS_PATH, response, start


@pytest.fixture
def begins(ctx: ServiceContext) -> Iterator[list[bool]]:
    """For each write transaction begun: whether it began on a running event loop (the
    worker's loop thread) rather than in a worker thread."""
    seen: list[bool] = []

    def on_begin(conn: sa.Connection) -> None:
        if conn.get_execution_options().get("readonly"):
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            seen.append(False)
        else:
            seen.append(True)

    sa.event.listen(ctx.db.engine, "begin", on_begin)
    yield seen
    sa.event.remove(ctx.db.engine, "begin", on_begin)


def test_a_scim_user_write_runs_on_the_event_loop_on_sqlite_and_in_a_thread_on_postgresql(
        ctx: ServiceContext, begins: list[bool]) -> None:
    setup_connection(ctx)
    token = scim_token(ctx)
    with make_client(ctx) as client:
        assert client.get(f"{BASE}/Users", headers=auth(token)).status_code == 200
        begins.clear()  # the token's first use is recorded in a thread, as any other read
        created = client.post(f"{BASE}/Users", json=user(), headers=auth(token))
        assert created.status_code == 201, created.text
        location = f"{BASE}/Users/{created.json()['id']}"
        patched = client.patch(location, headers=auth(token), json=patch(
            {"op": "replace", "path": "displayName", "value": "Ana L."}))
        assert patched.status_code == 200, patched.text
        assert patched.json()["displayName"] == "Ana L."
        replaced = client.put(location, headers=auth(token),
                              json=user(displayName="Ana Lima"))
        assert replaced.status_code == 200, replaced.text
        assert client.delete(location, headers=auth(token)).status_code == 204
        assert client.get(location, headers=auth(token)).status_code == 404
        on_loop = ctx.db.dialect == "sqlite"
        assert begins and begins == [on_loop] * len(begins), begins
        begins.clear()  # a Group's write may carry thousands of members: always a thread
        group = client.post(f"{BASE}/Groups", headers=auth(token),
                            json={"schemas": [GROUP_SCHEMA], "displayName": "Nurses"})
        assert group.status_code == 201, group.text
        assert begins == [False]


def test_the_acs_signs_in_on_the_event_loop_on_sqlite_and_in_one_thread_on_postgresql(
        ctx: ServiceContext, begins: list[bool], monkeypatch: pytest.MonkeyPatch) -> None:
    idp = add_connection(ctx)
    browser = make_client(ctx, dev_mode=False)
    relay_state, request_id = start(browser, "/me")
    begins.clear()
    hand_offs = HandOffs(monkeypatch)
    r = browser.post(ACS_PATH, data={"SAMLResponse": response(ctx, idp, request_id),
                                     "RelayState": relay_state})
    assert r.status_code == 303, r.text
    on_loop = ctx.db.dialect == "sqlite"
    assert begins == [on_loop], begins
    # PostgreSQL: the Response's check and the provisioning share one hand-off
    assert hand_offs.calls == ([] if on_loop else ["both"])
    assert browser.get("/me").json()["email"] == "ada@hospital.example"


async def _while_held(ctx: ServiceContext, method: str, path: str,
                      **kwargs: Any) -> tuple[httpx.Response, list[int]]:
    """Send the request while another process holds the write turn; while it waits, ask
    ``GET /healthz`` twice (answered, so the event loop is free), then release the writer.
    Returns the request's answer and the statuses of the probes."""
    held = OtherProcess(ctx.db)
    app = make_client(ctx, dev_mode=False).app
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://testserver") as client:
        task = asyncio.create_task(client.request(method, path, **kwargs))
        probes = []
        for _ in range(2):
            await asyncio.sleep(0.2)
            probes.append((await asyncio.wait_for(client.get("/healthz"), 5)).status_code)
            assert not task.done(), "the write did not wait for the other process"
        held.release()
        return await asyncio.wait_for(task, 10), probes


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_scim_write_behind_another_process_waits_in_a_thread_and_the_loop_serves_on(
        ctx: ServiceContext, begins: list[bool]) -> None:
    setup_connection(ctx)
    token = scim_token(ctx)
    with make_client(ctx) as client:  # the token known to the worker, as after any request
        assert client.get(f"{BASE}/Users", headers=auth(token)).status_code == 200
    begins.clear()
    answer, probes = asyncio.run(_while_held(ctx, "POST", f"{BASE}/Users", json=user(),
                                             headers=auth(token)))
    assert answer.status_code == 201, answer.text
    assert probes == [200, 200]
    assert begins == [False]  # given up on the loop, begun in a thread once the turn came
    with ctx.db.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(t.account)
                            ).scalar_one() == 1
    created = [e for e in audit_export.iter_events(ctx, "hospital")
               if e.type == "account.created"]
    assert len(created) == 1


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_saml_login_behind_another_process_signs_in_once(
        ctx: ServiceContext, begins: list[bool]) -> None:
    idp: FakeSamlIdp = add_connection(ctx)
    browser = make_client(ctx, dev_mode=False)
    relay_state, request_id = start(browser, "/me")
    cookie = "; ".join(f"{name}={value}" for name, value in browser.cookies.items())
    form = urlencode({"SAMLResponse": response(ctx, idp, request_id),
                      "RelayState": relay_state})
    begins.clear()
    answer, probes = asyncio.run(_while_held(
        ctx, "POST", ACS_PATH, content=form,
        headers={"content-type": "application/x-www-form-urlencoded", "cookie": cookie}))
    assert answer.status_code == 303, answer.text
    assert "jitprov_session=" in answer.headers["set-cookie"]
    assert probes == [200, 200]
    assert begins == [False]
    with ctx.db.engine.connect() as conn:
        assert [conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
                for table in (t.account, t.session)] == [1, 1]
    types = [e.type for e in audit_export.iter_events(ctx, "hospital")]
    assert types == ["tenant.created", "connection.created", "account.created"]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_refusal_whose_audit_waits_for_another_process_is_counted_once(
        ctx: ServiceContext, monkeypatch: pytest.MonkeyPatch) -> None:
    """A replayed response is refused on the event loop; another process takes the write
    turn just before the refusal's audit, so the call is run again in a thread: one
    ``login.failed`` and one count in the metrics, not two."""
    idp = add_connection(ctx, allow_idp_initiated=True)
    form = urlencode({"SAMLResponse": response(ctx, idp, None), "RelayState": "/me"})
    headers = {"content-type": "application/x-www-form-urlencoded"}
    client = make_client(ctx, dev_mode=False)
    assert client.post(ACS_PATH, content=form, headers=headers).status_code == 303

    def replays() -> float:
        return metrics.REGISTRY.get_sample_value("jitprov_logins_total",
                                                 {"outcome": "replay"}) or 0.0

    before = replays()
    others: list[OtherProcess] = []
    audit_failure = flow.record_login_failure

    def behind_another_writer(*args: Any, **kwargs: Any) -> None:
        if not others:  # the first try only: the other process writes for 0.3 s
            others.append(OtherProcess(ctx.db))
            threading.Timer(0.3, others[0].release).start()
        audit_failure(*args, **kwargs)

    monkeypatch.setattr(flow, "record_login_failure", behind_another_writer)
    refused = client.post(ACS_PATH, content=form, headers=headers)
    assert refused.status_code == 400, refused.text
    assert others  # the race happened
    assert replays() - before == 1
    failed = [e for e in audit_export.iter_events(ctx, "hospital") if e.type == "login.failed"]
    assert [e.data.get("code") for e in failed] == ["replay"]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_write_ahead_log_is_copied_back_by_a_thread_of_its_own(
        ctx: ServiceContext, monkeypatch: pytest.MonkeyPatch) -> None:
    """No commit checkpoints (``wal_autocheckpoint=0`` on every connection); the checkpoint
    thread does, every few commits, so the log starts over instead of growing."""
    monkeypatch.setattr(Checkpointer, "EVERY", 8)
    setup_connection(ctx)
    token = scim_token(ctx)
    with ctx.db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar_one() == 0
    wal = f"{sa.make_url(ctx.db.url).database}-wal"
    with make_client(ctx) as client:
        for i in range(200):
            r = client.post(f"{BASE}/Users", json=user(f"person{i}@hospital.example"),
                            headers=auth(token))
            assert r.status_code == 201, r.text
    assert ctx.db.checkpointer is not None
    deadline = time.monotonic() + 5
    while ctx.db.checkpointer.done < 200 // 8 - 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ctx.db.checkpointer.done >= 200 // 8 - 2
    # 200 creates write ~3,000 pages (12 MB) of log; a log started over every 8 holds ~130
    assert os.path.getsize(wal) < 2_000_000
    threads = [th for th in threading.enumerate() if th.name == "jitprov-checkpoint"]
    ctx.db.dispose()
    for th in threads:
        th.join(5)
        assert not th.is_alive()
