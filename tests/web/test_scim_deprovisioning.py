"""Deprovisioning from the IdP, end to end over HTTP: an account made by a JIT login is found
by the IdP's SCIM filter, deactivated with PATCH ``active: false``, and the browser's old
session is refused on its very next request (forward-auth included); the IdP's next SSO
login does not bring the account back."""

from __future__ import annotations

from starlette.testclient import TestClient

from jitprov.services.context import ServiceContext
from jitprov.store.unit_of_work import UnitOfWork
from tests.web.helpers import idp_response, sign_in, start
from tests.web.scim_helpers import Scim, patch, scim_token


def test_scim_deactivation_refuses_the_next_request_of_an_sso_session(
        client: TestClient, ctx: ServiceContext) -> None:
    sign_in(client)
    assert client.get("/auth/verify").status_code == 200
    scim = Scim(client, scim_token(ctx))
    found = scim.get("/Users", filter='userName eq "ana@hospital.example"').json()
    assert found["totalResults"] == 1
    user_id = found["Resources"][0]["id"]

    # Entra ID's form: a capitalised op and the boolean as a string
    r = scim.patch(f"/Users/{user_id}", patch({"op": "Replace", "path": "active",
                                              "value": "False"}))

    assert r.status_code in (200, 204), r.text
    assert client.get("/auth/verify").status_code == 401
    assert client.get("/me").status_code == 401
    with UnitOfWork(ctx.db, readonly=True) as uow:
        account = uow.accounts.view(user_id).account
    assert account.status == "deactivated"


def test_the_next_sso_login_of_a_scim_deactivated_account_is_refused(
        client: TestClient, ctx: ServiceContext) -> None:
    sign_in(client)
    scim = Scim(client, scim_token(ctx))
    user_id = scim.get("/Users", filter='userName eq "ana@hospital.example"'
                       ).json()["Resources"][0]["id"]
    scim.patch(f"/Users/{user_id}", patch({"op": "replace", "value": {"active": False}}))
    client.cookies.clear()

    state = start(client)
    r = client.post("/sso/idp/mock/callback", data=idp_response(client, state))

    assert r.status_code == 403, r.text  # a readable refusal page, no session
    assert "deactivated" in r.text
    assert client.get("/me").status_code == 401
    assert scim.get(f"/Users/{user_id}").json()["active"] is False
