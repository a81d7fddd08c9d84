"""jitprov behind a real PgBouncer in transaction mode: it notices by itself (one log line),
keeps its statement timeout, never relies on server-side prepared statements, and a login and
SCIM work through it; the pool sizes and the mode are settings."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from jitprov.core.errors import DatabaseNotReady
from jitprov.services.context import ServiceContext, database_limits, open_database
from jitprov.services.secretbox import SecretBox
from jitprov.settings import SettingsError, load_settings
from jitprov.store.database import Database, DatabaseLimits
from jitprov.testing.builders import setup_connection
from tests.conftest import TEST_SECRET_KEY, Clock
from tests.pgbouncer import PgBouncer
from tests.web.helpers import make_client, sign_in
from tests.web.scim_helpers import auth, scim_token, user

pytestmark = pytest.mark.postgres


@pytest.fixture
def pooled_url(postgres_url: str,
               pgbouncer: PgBouncer) -> str:
    from tests.conftest import _truncate_postgres

    db = Database.connect(postgres_url, pool_size=1)
    _truncate_postgres(db)
    db.dispose()
    return pgbouncer.url_for(postgres_url)


@pytest.fixture
def pooled(pooled_url: str, caplog: pytest.LogCaptureFixture) -> Iterator[Database]:
    with caplog.at_level(logging.WARNING, logger="jitprov.database"):
        db = Database.connect(pooled_url, pool_size=2,
                              limits=DatabaseLimits(statement_timeout=1.0))
        yield db
    db.dispose()


def test_the_pooler_is_noticed_once_and_repeated_statements_work(
        pooled: Database, caplog: pytest.LogCaptureFixture) -> None:
    for i in range(20):  # psycopg would prepare server-side from the 5th run of a statement
        with pooled.engine.begin() as conn:
            assert conn.execute(sa.text("SELECT count(*) + :i FROM tenant"),
                                {"i": i}).scalar_one() == i
    assert pooled.pooling.on
    warnings = [r for r in caplog.records if r.name == "jitprov.database"]
    assert len(warnings) == 1 and "transaction pooler" in warnings[0].getMessage()


def test_the_statement_timeout_still_holds_through_the_pooler(pooled: Database) -> None:
    with pytest.raises(sa.exc.OperationalError, match="statement timeout"):
        with pooled.engine.begin() as conn:
            conn.execute(sa.text("SELECT pg_sleep(3)"))
    with pooled.engine.begin() as conn:  # the connection goes back to the pool unharmed
        assert conn.execute(sa.text("SELECT 1")).scalar_one() == 1


def test_pooling_off_through_a_pooler_is_a_clear_error(pooled_url: str) -> None:
    db = Database.connect(pooled_url, pool_size=1, pooling="off")
    try:
        with pytest.raises(DatabaseNotReady, match="unsupported startup parameter"):
            db.current_revision()
    finally:
        db.dispose()


def test_a_login_and_scim_through_the_pooler(pooled_url: str, clock: Clock) -> None:
    settings = load_settings({"JITPROV_SECRET_KEY": TEST_SECRET_KEY,
                              "JITPROV_DATABASE_URL": pooled_url,
                              "JITPROV_DB_TRANSACTION_POOLING": "on",
                              "JITPROV_DB_POOL_SIZE": "3", "JITPROV_DB_MAX_OVERFLOW": "0"})
    db = open_database(settings)
    assert (db.engine.pool.size(), db.pooling.on) == (3, True)  # type: ignore[attr-defined]
    ctx = ServiceContext(db=db, secretbox=SecretBox(TEST_SECRET_KEY), clock=clock)
    try:
        setup_connection(ctx)
        token = scim_token(ctx)
        with make_client(ctx) as client:
            for n in range(8):  # more than psycopg's prepare threshold
                created = client.post("/scim/v2/hospital/Users", headers=auth(token),
                                      json=user(f"user{n}@hospital.example"))
                assert created.status_code == 201, created.text
            listed = client.get("/scim/v2/hospital/Users", headers=auth(token))
            assert listed.json()["totalResults"] == 8
            sign_in(client)
            me = client.get("/me")
            assert me.status_code == 200 and me.json()["email"] == "ana@hospital.example"
    finally:
        db.dispose()


@pytest.mark.parametrize(("name", "value"), [("JITPROV_DB_TRANSACTION_POOLING", "maybe"),
                                             ("JITPROV_DB_POOL_SIZE", "0"),
                                             ("JITPROV_DB_POOL_SIZE", "many"),
                                             ("JITPROV_DB_MAX_OVERFLOW", "-1")])
def test_pool_settings_are_checked_at_start(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        load_settings({"JITPROV_SECRET_KEY": TEST_SECRET_KEY, name: value})


def test_the_pool_limits_reach_the_engine() -> None:
    settings = load_settings({"JITPROV_SECRET_KEY": TEST_SECRET_KEY,
                              "JITPROV_DB_POOL_SIZE": "7", "JITPROV_DB_MAX_OVERFLOW": "3",
                              "JITPROV_DB_POOL_TIMEOUT": "2"})
    assert (settings.db_pool_size, settings.db_max_overflow) == (7, 3)
    assert database_limits(settings).pool_timeout == 2
