"""The example app in examples/ works as its docstring says."""

from __future__ import annotations

import importlib.util
from datetime import UTC, datetime
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from jitprov.services.context import ServiceContext
from tests.conftest import Clock
from tests.services.helpers import setup_connection
from tests.web.helpers import make_client, sign_in

EXAMPLE = Path(__file__).parents[2] / "examples" / "fastapi_ward_rota.py"


def test_ward_rota_example_admits_nurses_and_keeps_editing_for_charge_nurses(
        ctx: ServiceContext, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    clock.now = datetime.now(UTC)
    monkeypatch.setenv("JITPROV_ISSUER", "http://testserver")
    spec = importlib.util.spec_from_file_location("ward_rota", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    setup_connection(ctx)
    with make_client(ctx) as sso:
        sign_in(sso)
        token = sso.get("/me/token").json()["token"]
        module.verifier.http.close()
        module.verifier.http = sso  # the JWKS from jitprov in-process, not over the network
        with TestClient(module.app) as app:
            headers = {"X-Jitprov-Token": token}
            assert app.get("/rota", headers=headers).json()["hello"] == "Ana Lima"
            assert app.get("/rota/edit", headers=headers).status_code == 403
            assert app.get("/rota").status_code == 401
