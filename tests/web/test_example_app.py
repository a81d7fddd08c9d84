"""The example app in examples/ works as its docstring says."""

from __future__ import annotations

import importlib.util
from datetime import UTC, datetime
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from jitprov.services import admin
from jitprov.services.context import ServiceContext
from jitprov.testing.builders import HOSPITAL, setup_connection
from tests.conftest import Clock
from tests.web.helpers import make_client, sign_in

EXAMPLE = Path(__file__).parents[2] / "examples" / "fastapi_ward_rota.py"


def test_ward_rota_example_admits_nurses_and_keeps_editing_for_charge_nurses(
        ctx: ServiceContext, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    clock.now = datetime.now(UTC)
    monkeypatch.setenv("JITPROV_ISSUER", "http://testserver")
    monkeypatch.setenv("JITPROV_TENANT", "hospital")
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


def test_flask_example_admits_pharmacists_only(ctx: ServiceContext, clock: Clock,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    clock.now = datetime.now(UTC)
    monkeypatch.setenv("JITPROV_ISSUER", "http://testserver")
    monkeypatch.setenv("JITPROV_TENANT", "hospital")
    spec = importlib.util.spec_from_file_location(
        "flask_pharmacy", EXAMPLE.with_name("flask_pharmacy.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    setup_connection(ctx)
    with make_client(ctx) as sso:
        sign_in(sso, groups="Nurses")
        nurse_token = sso.get("/me/token").json()["token"]
        module.verifier.http.close()
        module.verifier.http = sso
        admin.set_mapping(ctx, "idp", HOSPITAL.format(linking="never").replace(
            "    - id: charge-nurses", "    - id: pharmacists\n      grant: [pharmacist]\n"
            "      when: contains(groups, 'Pharmacists')\n    - id: charge-nurses"), "m.yaml")
        sso.cookies.clear()
        sign_in(sso, email="chen@hospital.example", groups="Pharmacists")
        pharmacist_token = sso.get("/me/token").json()["token"]
        flask = module.app.test_client()
        assert flask.get("/stock").status_code == 401
        assert flask.get("/stock", headers={"X-Jitprov-Token": nurse_token}).status_code == 403
        assert flask.get("/stock", headers={"X-Jitprov-Roles": "pharmacist"}).status_code == 401
        r = flask.get("/stock", headers={"X-Jitprov-Token": pharmacist_token})
        assert (r.status_code, r.json["pharmacist"]) == (200, "chen@hospital.example")
