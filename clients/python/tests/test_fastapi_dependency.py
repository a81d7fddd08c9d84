"""requires_role, the FastAPI dependency (FastAPI is optional: skipped without it)."""

from __future__ import annotations

import pytest

from jitprov_stand_in import Issuer

pytest.importorskip("fastapi")

from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

import jitprov_client
from jitprov_client import Identity
from jitprov_client.fastapi import requires_role


def test_the_dependency_answers_401_403_or_the_identity(issuer: Issuer) -> None:
    verifier = issuer.verifier()
    api = FastAPI()

    @api.get("/ward")
    def ward(who: Identity = Depends(requires_role("nurse", verifier=verifier))) -> dict[str, str]:
        return {"sub": who.sub}

    @api.get("/pharmacy")
    def pharmacy(who: Identity = Depends(requires_role("pharmacist", "chief-pharmacist",
                                                       verifier=verifier))) -> dict[str, str]:
        return {"sub": who.sub}

    @api.get("/anyone")
    def anyone(who: Identity = Depends(requires_role(verifier=verifier))) -> dict[str, str]:
        return {"sub": who.sub}

    token = {"X-Jitprov-Token": issuer.token()}
    with TestClient(api) as client:
        assert client.get("/ward").status_code == 401
        assert client.get("/ward", headers={"X-Jitprov-Roles": "nurse"}).status_code == 401
        assert client.get("/ward", headers=token).status_code == 200
        assert client.get("/pharmacy", headers=token).status_code == 403
        assert client.get("/anyone", headers=token).status_code == 200
        chief = {"X-Jitprov-Token": issuer.token(roles=["chief-pharmacist"])}
        assert client.get("/pharmacy", headers=chief).status_code == 200


def test_the_package_offers_the_dependency_by_its_short_name() -> None:
    assert jitprov_client.requires_role is requires_role
    with pytest.raises(AttributeError):
        jitprov_client.no_such_name  # noqa: B018
