"""50 simultaneous first logins of one new subject: one account, one account.created event."""

from __future__ import annotations

import multiprocessing
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from jitprov.services import admin, audit_export
from jitprov.services.context import ServiceContext
from jitprov.services.login.flow import provision_on_login
from jitprov.services.secretbox import SecretBox
from jitprov.store.database import Database
from jitprov.testing.builders import nurse, setup_connection
from tests.conftest import TEST_SECRET_KEY

LOGINS = 50


def test_simultaneous_first_logins_in_threads_create_one_account(ctx: ServiceContext) -> None:
    setup_connection(ctx)
    barrier = threading.Barrier(LOGINS)

    def login(_: int) -> str:
        barrier.wait()
        return provision_on_login(ctx, "idp", nurse(subject="shift-worker")).account_id

    with ThreadPoolExecutor(LOGINS) as pool:
        ids = set(pool.map(login, range(LOGINS)))
    assert len(ids) == 1
    assert len(admin.list_accounts(ctx, "hospital")) == 1
    types = [e.type for e in audit_export.iter_events(ctx, "hospital")]
    assert types.count("account.created") == 1
    assert types.count("login.succeeded") == LOGINS - 1
    assert all(r.intact for r in audit_export.verify(ctx, "hospital"))


def _login_in_process(url: str, start: Any) -> str:
    db = Database.connect(url, pool_size=1)
    ctx = ServiceContext(db=db, secretbox=SecretBox(TEST_SECRET_KEY))
    start.wait(30)
    try:
        return provision_on_login(ctx, "idp", nurse(subject="night-shift")).account_id
    finally:
        db.dispose()


def test_simultaneous_first_logins_in_processes_create_one_account(
        ctx: ServiceContext, database_url: str) -> None:
    setup_connection(ctx)
    mp = multiprocessing.get_context("spawn")
    with mp.Manager() as manager, mp.Pool(6) as pool:
        start = manager.Event()
        pending = [pool.apply_async(_login_in_process, (database_url, start))
                   for _ in range(12)]
        start.set()
        ids = {p.get(timeout=120) for p in pending}
    assert len(ids) == 1
    types = [e.type for e in audit_export.iter_events(ctx, "hospital")]
    assert types.count("account.created") == 1
