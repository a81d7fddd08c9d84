"""Through the admin API of an app built from its settings (the composition root installs the
outbound guard): a tenant admin cannot make the server fetch from loopback or the private
network, unless the operator allowlisted it (JITPROV_OUTBOUND_ALLOW)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from jitprov.services import admin
from jitprov.services.context import ServiceContext
from jitprov.settings import Settings, SettingsError, load_settings
from jitprov.testing.builders import setup_connection
from jitprov.web.app import create_app
from tests.cli.test_saml_cli import MetadataServer
from tests.conftest import TEST_SECRET_KEY


@pytest.fixture
def metadata_server() -> Iterator[MetadataServer]:
    served = MetadataServer()
    thread = threading.Thread(target=served.server.serve_forever, daemon=True)
    thread.start()
    yield served
    served.server.shutdown()
    served.server.server_close()


def _api(ctx: ServiceContext, **settings: object) -> tuple[TestClient, dict[str, str]]:
    setup_connection(ctx)
    _, token = admin.create_admin_token(ctx, "ops")
    app = create_app(Settings(base_url="https://sso.hospital.example",
                              secret_key=TEST_SECRET_KEY, **settings),  # type: ignore[arg-type]
                     db=ctx.db)
    client = TestClient(app, base_url="https://sso.hospital.example",
                        raise_server_exceptions=False)
    return client, {"Authorization": f"Bearer {token}"}


def test_saml_metadata_and_oidc_discovery_on_loopback_are_refused(
        ctx: ServiceContext, metadata_server: MetadataServer) -> None:
    client, auth = _api(ctx)
    saml = client.post("/api/connections/saml", headers=auth, json={
        "tenant": "hospital", "slug": "okta", "idp_metadata_url": metadata_server.url})
    port = metadata_server.server.server_address[1]
    oidc = client.post("/api/connections/oidc", headers=auth, json={
        "tenant": "hospital", "slug": "kc", "client_secret": "s3cret",
        "config": {"issuer": f"http://127.0.0.1:{port}", "client_id": "jitprov"}})
    assert (saml.status_code, oidc.status_code) == (400, 400), (saml.text, oidc.text)
    assert "OutboundRefused" in saml.text and "OutboundRefused" in oidc.text
    assert [c.slug for c in admin.list_connections(ctx)] == ["idp"]


@pytest.mark.parametrize("host", ["[64:ff9b::a9fe:a9fe]", "[2002:a9fe:a9fe::1]",
                                  "[::ffff:169.254.169.254]", "[::169.254.169.254]"])
def test_an_ipv6_address_a_translator_carries_to_a_private_one_is_refused(
        ctx: ServiceContext, host: str) -> None:
    """NAT64 (DNS64 networks), 6to4 and the IPv4-mapped and -compatible forms reach the cloud
    metadata address through a gateway: refused like it, before any packet leaves (an attempt
    would fail here with another error: no such route)."""
    client, auth = _api(ctx)
    saml = client.post("/api/connections/saml", headers=auth, json={
        "tenant": "hospital", "slug": "okta",
        "idp_metadata_url": f"https://{host}/latest/meta-data/"})
    assert saml.status_code == 400, saml.text
    assert "OutboundRefused" in saml.text


def test_the_operators_allowlist_lets_a_local_idp_in(
        ctx: ServiceContext, metadata_server: MetadataServer) -> None:
    client, auth = _api(ctx, outbound_allow=("127.0.0.1/32",))
    saml = client.post("/api/connections/saml", headers=auth, json={
        "tenant": "hospital", "slug": "okta", "idp_metadata_url": metadata_server.url})
    assert saml.status_code == 201, saml.text


def test_the_allowlist_setting_is_read_and_checked() -> None:
    env = {"JITPROV_SECRET_KEY": TEST_SECRET_KEY,
           "JITPROV_OUTBOUND_ALLOW": "127.0.0.1/32, 10.0.0.0/8"}
    assert load_settings(env).outbound_allow == ("127.0.0.1/32", "10.0.0.0/8")
    with pytest.raises(SettingsError, match="JITPROV_OUTBOUND_ALLOW"):
        load_settings({**env, "JITPROV_OUTBOUND_ALLOW": "intranet"})
