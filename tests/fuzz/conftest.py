"""Fixtures of the fuzzers: the app's test client over a tenant with a connection."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from jitprov.services.context import ServiceContext
from jitprov.testing.builders import setup_connection
from tests.web.helpers import make_client


@pytest.fixture
def client(ctx: ServiceContext) -> Iterator[TestClient]:
    setup_connection(ctx)
    with make_client(ctx) as c:
        yield c
