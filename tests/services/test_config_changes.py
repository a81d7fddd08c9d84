"""What the CLI or API changes reaches the other running nodes within seconds, no restart."""

from __future__ import annotations

import pytest

from jitprov.core.provisioning import Update
from jitprov.services import admin, context
from jitprov.services.common import LoginRefused
from jitprov.services.context import ServiceContext
from jitprov.services.login.flow import provision_on_login
from jitprov.services.secretbox import SecretBox
from jitprov.store.database import Database
from jitprov.testing.builders import HOSPITAL, nurse, setup_connection
from tests.conftest import TEST_SECRET_KEY


class Monotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def other_node(database_url: str) -> ServiceContext:
    """A second server process's context: its own engine and caches, the same database."""
    return ServiceContext(db=Database.connect(database_url, pool_size=2),
                          secretbox=SecretBox(TEST_SECRET_KEY))


def test_mapping_changed_on_one_node_applies_on_another_within_seconds(
        ctx: ServiceContext, other_node: ServiceContext,
        monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Monotonic()
    monkeypatch.setattr(context.time, "monotonic", clock)
    setup_connection(ctx)
    provision_on_login(other_node, "idp", nurse())  # the other node caches the connection
    admin.set_mapping(ctx, "idp", HOSPITAL.format(linking="never").replace(
        "default: [staff]", "default: [staff, badge]"), "v2.yaml")
    clock.now += 3  # seconds: past the connection cache's TTL
    result = provision_on_login(other_node, "idp", nurse())
    assert isinstance(result.decision, Update)
    assert {"role": "badge", "source": "rule:idp/default"} in \
        result.decision.changes.as_dict()["grants_added"]  # type: ignore[operator]
    other_node.db.dispose()


def test_disabled_connection_refuses_logins_on_every_node(
        ctx: ServiceContext, other_node: ServiceContext,
        monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Monotonic()
    monkeypatch.setattr(context.time, "monotonic", clock)
    setup_connection(ctx)
    provision_on_login(other_node, "idp", nurse())
    admin.set_connection_enabled(ctx, "idp", enabled=False)
    clock.now += 3
    with pytest.raises(LoginRefused) as refused:
        provision_on_login(other_node, "idp", nurse())
    assert refused.value.code == "connection_disabled"
    other_node.db.dispose()
