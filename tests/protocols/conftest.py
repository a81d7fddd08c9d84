"""Fixtures for the protocol adapters: a fake OpenID Provider behind ``httpx.MockTransport``."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from jitprov.protocols.oidc import OidcConfig, ProviderMetadata, Providers
from tests.protocols.oidc_fakes import CLIENT_ID, ISSUER, FakeClock, FakeProvider


@pytest.fixture
def idp() -> FakeProvider:
    return FakeProvider()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def http(idp: FakeProvider) -> Iterator[httpx.Client]:
    with idp.client() as client:
        yield client


@pytest.fixture
def providers(http: httpx.Client, clock: FakeClock) -> Providers:
    return Providers(http, clock=clock)


@pytest.fixture
def config() -> OidcConfig:
    return OidcConfig.parse({"issuer": ISSUER, "client_id": CLIENT_ID})


@pytest.fixture
def metadata(providers: Providers, config: OidcConfig) -> ProviderMetadata:
    return providers.metadata(config.issuer)
