"""Fixtures of the client's own tests (the stand-in for jitprov is in jitprov_stand_in.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from jitprov_stand_in import Issuer


@pytest.fixture
def issuer() -> Iterator[Issuer]:
    fake = Issuer()
    yield fake
    for http in fake.clients:
        http.close()
