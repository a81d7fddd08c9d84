"""Helpers of the SCIM web tests: a tenant with a SCIM token, and request shorthands."""

from __future__ import annotations

from typing import Any

from starlette.testclient import TestClient

from jitprov.services.context import ServiceContext
from jitprov.services.scim import tokens as scim_tokens

USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"
SCIM_JSON = "application/scim+json"
BASE = "/scim/v2/hospital"


def scim_token(ctx: ServiceContext, tenant: str = "hospital", *, name: str = "entra",
               connection: str | None = "idp") -> str:
    return scim_tokens.create_token(ctx, tenant, name, connection=connection)[1]


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Content-Type": SCIM_JSON}


def user(user_name: str = "ana@hospital.example", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"schemas": [USER_SCHEMA], "userName": user_name,
                            "name": {"givenName": "Ana", "familyName": "Lima"},
                            "emails": [{"value": user_name, "type": "work", "primary": True}],
                            "active": True}
    body.update(extra)
    return body


def patch(*operations: dict[str, Any]) -> dict[str, Any]:
    return {"schemas": [PATCH_SCHEMA], "Operations": list(operations)}


def assert_scim_error(response: Any, status: int, scim_type: str | None = None) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(SCIM_JSON)
    body = response.json()
    assert body["schemas"] == [ERROR_SCHEMA]
    assert body["status"] == str(status)
    if scim_type is not None:
        assert body.get("scimType") == scim_type, body


class Scim:
    """A SCIM client of the app under test."""

    def __init__(self, client: TestClient, token: str, base: str = BASE) -> None:
        self.client = client
        self.headers = auth(token)
        self.base = base

    def get(self, path: str, **params: Any) -> Any:
        return self.client.get(self.base + path, headers=self.headers, params=params)

    def post(self, path: str, body: Any) -> Any:
        return self.client.post(self.base + path, headers=self.headers, json=body)

    def put(self, path: str, body: Any, **headers: str) -> Any:
        return self.client.put(self.base + path, headers={**self.headers, **headers},
                               json=body)

    def patch(self, path: str, body: Any, **headers: str) -> Any:
        return self.client.patch(self.base + path, headers={**self.headers, **headers},
                                 json=body)

    def delete(self, path: str, **headers: str) -> Any:
        return self.client.delete(self.base + path, headers={**self.headers, **headers})
