"""Fixtures shared by the suite: databases (SQLite and PostgreSQL), a service context with a
controllable clock.

PostgreSQL: ``JITPROV_TEST_DATABASE_URL`` (default ``postgresql://postgres@127.0.0.1:5432/test``).
A throwaway database is created per test session and dropped at the end. When PostgreSQL is
unreachable the PostgreSQL half of the suite is skipped, unless ``JITPROV_REQUIRE_POSTGRES=1``
(CI), where it fails.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import settings as hypothesis_settings

from jitprov.services import logs
from jitprov.services.context import ServiceContext
from jitprov.services.secretbox import SecretBox
from jitprov.store.database import Database, normalise_url
from jitprov.store.tables import metadata
from tests.pgbouncer import PgBouncer
from tests.pgbouncer import executable as pgbouncer_executable

PG_URL = os.environ.get("JITPROV_TEST_DATABASE_URL",
                        "postgresql://postgres@127.0.0.1:5432/test")
REQUIRE_PG = os.environ.get("JITPROV_REQUIRE_POSTGRES") == "1"
REDIS_URL = os.environ.get("JITPROV_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
REQUIRE_REDIS = os.environ.get("JITPROV_REQUIRE_REDIS") == "1"
TEST_SECRET_KEY = "CWlAw4rAwH7uS1Ox89zChdCpFHHHFVXMAomYbPwKEus"

# No per-example deadline: this is a shared 2-core machine, and speed is measured in bench/.
# CI replays a fixed seed so a red run can be reproduced; locally examples vary each run.
hypothesis_settings.register_profile("dev", deadline=None)
hypothesis_settings.register_profile("ci", deadline=None, derandomize=True, max_examples=200)
hypothesis_settings.load_profile("ci" if os.environ.get("CI") else "dev")


@pytest.fixture(autouse=True)
def _keep_logging() -> Iterator[None]:
    """A command run in-process (`serve`, `dev`) sets up the process's logging, even when it
    then refuses to start: put the root logger back as it was after each test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logs.reset()  # structlog's events through the standard library again, as caplog reads


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 11, 28, 7, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for each test (migrating per test is slow)."""
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    db = Database.connect(f"sqlite:///{path}", pool_size=1)
    db.upgrade()
    db.dispose()
    return path


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test session."""
    admin_url = normalise_url(PG_URL)
    try:
        admin_engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin_engine.connect() as conn:
            conn.execute(sa.text("select 1"))
    except sa.exc.OperationalError as exc:
        message = f"PostgreSQL unreachable at {PG_URL}: {str(exc.orig).strip()[:200]}"
        if REQUIRE_PG:
            pytest.fail(message)
        pytest.skip(message)
    name = f"jitprov_test_{uuid.uuid4().hex[:10]}"
    with admin_engine.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    db = Database.connect(url, pool_size=1)
    db.upgrade()
    db.dispose()
    yield url
    with admin_engine.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin_engine.dispose()


@pytest.fixture
def redis_url() -> str:
    """The machine's Redis (``JITPROV_TEST_REDIS_URL``) for the shared rate limits; skipped
    when unreachable, unless ``JITPROV_REQUIRE_REDIS=1`` (CI), where it fails."""
    host, port = REDIS_URL.split("//", 1)[1].split("/", 1)[0].split(":")
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
    except OSError:
        if REQUIRE_REDIS:
            pytest.fail(f"Redis is required and unreachable at {REDIS_URL}")
        pytest.skip(f"Redis unreachable at {REDIS_URL}")
    return REDIS_URL


def _truncate_postgres(db: Database) -> None:
    names = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
    with db.engine.begin() as conn:
        conn.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))


@pytest.fixture(scope="session")
def pgbouncer() -> Iterator[PgBouncer]:
    """A PgBouncer in transaction mode in front of the test PostgreSQL (fails under CI when
    it is not installed, like PostgreSQL itself)."""
    binary = pgbouncer_executable()
    if binary is None:
        message = "pgbouncer is not installed (apt-get install pgbouncer)"
        if REQUIRE_PG:
            pytest.fail(message)
        pytest.skip(message)
    bouncer = PgBouncer()
    bouncer.start(binary)
    yield bouncer
    bouncer.stop()


def fresh_database_url(kind: str, request: pytest.FixtureRequest, tmp_path: Path,
                       sqlite_template: Path) -> str:
    """The URL of an empty, migrated database of ``kind``: ``sqlite``, ``postgresql``, or
    ``pgbouncer`` (the same PostgreSQL database, through a transaction pooler)."""
    if kind == "sqlite":
        path = tmp_path / "jitprov.db"
        shutil.copy(sqlite_template, path)
        return f"sqlite:///{path}"
    url: str = request.getfixturevalue("postgres_url")
    db = Database.connect(url, pool_size=1)
    _truncate_postgres(db)
    db.dispose()
    if kind == "pgbouncer":
        bouncer: PgBouncer = request.getfixturevalue("pgbouncer")
        return bouncer.url_for(url)
    return url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path,
                 sqlite_template: Path) -> str:
    """The URL of an empty, migrated database: once on SQLite, once on PostgreSQL."""
    return fresh_database_url(request.param, request, tmp_path, sqlite_template)


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database.connect(database_url)
    yield database
    database.dispose()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def ctx(db: Database, clock: Clock) -> ServiceContext:
    return ServiceContext(db=db, secretbox=SecretBox(TEST_SECRET_KEY), clock=clock)
