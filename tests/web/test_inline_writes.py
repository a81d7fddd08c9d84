"""Writes served on the event loop, through HTTP: on SQLite a SCIM User write and the SAML ACS run
their service in the worker's event loop (no thread hand-off), and when another writer holds
the write turn they wait for it there, the loop serving other requests meanwhile, first come
first served, nothing written twice; PostgreSQL always uses the thread. SQLite's write-ahead
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
from jitprov.store.database import Checkpointer, Ran
from jitprov.testing.builders import setup_connection
from jitprov.testing.saml_idp import FakeSamlIdp, add_connection
from jitprov.web.routes import sso
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
def test_a_scim_write_behind_another_process_waits_on_the_event_loop_which_serves_on(
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
    assert begins == [True]  # begun on the loop once the turn came
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
    assert begins == [True]
    with ctx.db.engine.connect() as conn:
        assert [conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
                for table in (t.account, t.session)] == [1, 1]
    types = [e.type for e in audit_export.iter_events(ctx, "hospital")]
    assert types == ["tenant.created", "connection.created", "account.created"]


class TurnTaken:
    """``ctx.db.run_inline`` counted, with the write turn held by another writer until the
    event loop's first try finds it taken: that try declines, and the writer lets go."""

    def __init__(self, ctx: ServiceContext, monkeypatch: pytest.MonkeyPatch,
                 release: Any) -> None:
        self.tries: list[bool] = []
        run_inline = ctx.db.run_inline

        def counted(fn: Any, /, *args: Any, **kwargs: Any) -> Any:
            outcome = run_inline(fn, *args, **kwargs)
            self.tries.append(isinstance(outcome, Ran))
            if self.tries.count(False) == 1 and not self.tries[-1]:
                release()
            return outcome

        monkeypatch.setattr(ctx.db, "run_inline", counted)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_login_behind_another_processs_brief_write_waits_for_it_on_the_event_loop(
        ctx: ServiceContext, begins: list[bool], monkeypatch: pytest.MonkeyPatch) -> None:
    """Another process (a second worker) writes when the ACS's provisioning comes to its
    turn: the provisioning is declined before it does any work, the event loop tries again
    after a pause, once that write is done, and signs the person in there: no worker
    thread, and the provisioning run once."""
    idp = add_connection(ctx)
    browser = make_client(ctx, dev_mode=False)
    relay_state, request_id = start(browser, "/me")
    form = {"SAMLResponse": response(ctx, idp, request_id), "RelayState": relay_state}
    hand_offs = HandOffs(monkeypatch)
    other: list[OtherProcess] = []

    def check_then_other_writes(*args: Any, **kwargs: Any) -> Any:
        checked = check(*args, **kwargs)
        other.append(OtherProcess(ctx.db))  # between the check and the provisioning
        return checked

    check = sso.check_saml_response
    monkeypatch.setattr(sso, "check_saml_response", check_then_other_writes)
    provisionings: list[object] = []
    finish = sso.finish_saml_login

    def counted_finish(*args: Any, **kwargs: Any) -> Any:
        provisionings.append(args)
        return finish(*args, **kwargs)

    monkeypatch.setattr(sso, "finish_saml_login", counted_finish)
    turn = TurnTaken(ctx, monkeypatch, lambda: other[0].release())
    begins.clear()
    r = browser.post(ACS_PATH, data=form)
    assert r.status_code == 303, r.text
    assert turn.tries == [True, False, True]  # the check; the provisioning, twice
    assert len(provisionings) == 1  # its declined try did nothing
    assert begins == [True]
    assert hand_offs.calls == []
    assert browser.get("/me").json()["email"] == "ada@hospital.example"
    types = [e.type for e in audit_export.iter_events(ctx, "hospital")]
    assert types.count("account.created") == 1


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_scim_write_behind_a_thread_of_this_process_waits_for_it_on_the_event_loop(
        ctx: ServiceContext, begins: list[bool], monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker thread of this process holds the write turn (another request's write, a
    checkpoint): the SCIM create waits on the event loop for it, not in a thread behind it."""
    setup_connection(ctx)
    token = scim_token(ctx)
    holding, done = threading.Event(), threading.Event()
    lock = ctx.db.write_lock
    assert lock is not None

    def hold() -> None:
        with lock:
            holding.set()
            done.wait(10)

    holder = threading.Thread(target=hold)

    def let_go() -> None:
        done.set()
        holder.join()

    with make_client(ctx) as client:
        assert client.get(f"{BASE}/Users", headers=auth(token)).status_code == 200
        hand_offs = HandOffs(monkeypatch)
        turn = TurnTaken(ctx, monkeypatch, let_go)
        holder.start()
        assert holding.wait(10)
        begins.clear()
        try:
            created = client.post(f"{BASE}/Users", json=user(), headers=auth(token))
        finally:
            let_go()
    assert created.status_code == 201, created.text
    assert turn.tries == [False, True]
    assert begins == [True]
    assert hand_offs.calls == []


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_writes_waiting_for_the_turn_are_served_first_come_first_served(
        ctx: ServiceContext, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another process holds the write turn; a SCIM create waits for it on the event loop,
    and a second one sent meanwhile lines up behind it: it does not try before the first is
    written, however the pauses fall, and both are created once the turn comes."""
    setup_connection(ctx)
    token = scim_token(ctx)
    with make_client(ctx) as client:  # the token known to the worker, as after any request
        assert client.get(f"{BASE}/Users", headers=auth(token)).status_code == 200
    tries: list[tuple[str, bool]] = []
    run_inline = ctx.db.run_inline

    def recorded(fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        outcome = run_inline(fn, *args, **kwargs)
        body = next((a for a in args if isinstance(a, dict)), {})
        tries.append((str(body.get("userName")), isinstance(outcome, Ran)))
        return outcome

    monkeypatch.setattr(ctx.db, "run_inline", recorded)

    async def two_creates() -> list[httpx.Response]:
        held = OtherProcess(ctx.db)
        app = make_client(ctx, dev_mode=False).app
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://testserver") as client:
            first = asyncio.create_task(client.post(
                f"{BASE}/Users", json=user(userName="first@hospital.example"),
                headers=auth(token)))
            await asyncio.sleep(0.1)  # the first is waiting for the turn
            second = asyncio.create_task(client.post(
                f"{BASE}/Users", json=user(userName="second@hospital.example"),
                headers=auth(token)))
            await asyncio.sleep(0.1)
            assert not first.done() and not second.done()
            held.release()
            return [await asyncio.wait_for(first, 10), await asyncio.wait_for(second, 10)]

    answers = asyncio.run(two_creates())
    assert [a.status_code for a in answers] == [201, 201], [a.text for a in answers]
    names = [name for name, _ in tries]
    assert "second@hospital.example" in names
    # the second's first try comes after the first's success, and succeeds
    first_written = tries.index(("first@hospital.example", True))
    assert names.index("second@hospital.example") == first_written + 1
    assert tries[first_written + 1] == ("second@hospital.example", True)
    assert all(name == "first@hospital.example" for name in names[:first_written])


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_refusal_whose_audit_waits_for_another_process_is_counted_once(
        ctx: ServiceContext, monkeypatch: pytest.MonkeyPatch) -> None:
    """A replayed response is refused on the event loop; another process takes the write
    turn just before the refusal's audit, so the call is run again once it is done: one
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
