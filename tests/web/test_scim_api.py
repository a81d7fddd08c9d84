"""The SCIM HTTP API: status codes, headers and RFC 7644 section 3.12 error bodies for every
bad input, none of which reaches the catch-all 500."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from starlette.testclient import TestClient

from jitprov.protocols.scim import discovery
from jitprov.services import admin
from jitprov.services.context import ServiceContext
from jitprov.services.scim import tokens as scim_tokens
from jitprov.services.scim.dispatch import RESOURCES
from tests.web.scim_helpers import (
    BASE,
    GROUP_SCHEMA,
    SCIM_JSON,
    Scim,
    assert_scim_error,
    auth,
    patch,
    scim_token,
    user,
)

BULK = "urn:ietf:params:scim:api:messages:2.0:BulkRequest"


@pytest.fixture
def scim(client: TestClient, ctx: ServiceContext) -> Scim:
    return Scim(client, scim_token(ctx))


@pytest.fixture(autouse=True)
def no_unexpected_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Bad inputs are answered on purpose: nothing may reach the catch-all."""
    with caplog.at_level(logging.ERROR, logger="jitprov.scim"):
        yield
    assert [r.getMessage() for r in caplog.records if r.name == "jitprov.scim"] == []


def _created(scim: Scim, body: dict[str, Any] | None = None) -> dict[str, Any]:
    r = scim.post("/Users", body or user())
    assert r.status_code == 201, r.text
    result: dict[str, Any] = r.json()
    return result


def test_create_answers_201_with_location_etag_and_scim_json(scim: Scim) -> None:
    r = scim.post("/Users", user())
    assert r.status_code == 201
    assert r.headers["content-type"] == SCIM_JSON
    body = r.json()
    assert r.headers["location"] == body["meta"]["location"]
    assert r.headers["etag"] == body["meta"]["version"] == 'W/"1"'


def test_if_match_mismatch_is_412_and_a_match_succeeds(scim: Scim) -> None:
    user_id = _created(scim)["id"]
    stale = scim.put(f"/Users/{user_id}", user(displayName="X"), **{"If-Match": 'W/"5"'})
    assert_scim_error(stale, 412)
    ok = scim.put(f"/Users/{user_id}", user(displayName="X"), **{"If-Match": 'W/"1"'})
    assert (ok.status_code, ok.headers["etag"]) == (200, 'W/"2"')
    assert_scim_error(scim.delete(f"/Users/{user_id}", **{"If-Match": 'W/"1"'}), 412)
    not_modified = scim.client.get(f"{BASE}/Users/{user_id}",
                                   headers={**scim.headers, "If-None-Match": 'W/"2"'})
    assert not_modified.status_code == 304


@pytest.mark.parametrize(("content", "content_type", "scim_type"), [
    (b"{not json", SCIM_JSON, "invalidSyntax"),
    (b"", SCIM_JSON, "invalidSyntax"),
    (b"[1, 2]", SCIM_JSON, "invalidSyntax"),
    (b'"a string"', SCIM_JSON, "invalidSyntax"),
    (b"\xff\xfe", SCIM_JSON, "invalidSyntax"),
    (b"[" * 100_000 + b"]" * 100_000, SCIM_JSON, "invalidSyntax"),
    (b'{"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "a", '
     b'"name": ' + b'{"a": ' * 900 + b"1" + b"}" * 900 + b"}", SCIM_JSON, "invalidSyntax"),
    (b'{"userName": "a"}', "text/plain", "invalidSyntax"),
    (b'{"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "a", '
     b'"shoeSize": 1}', SCIM_JSON, "invalidSyntax"),
    (b'{"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"]}', SCIM_JSON,
     "invalidValue"),
    (b'{"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": 5}',
     SCIM_JSON, "invalidValue"),
    (b'{"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "a", '
     b'"emails": "a@b.c"}', SCIM_JSON, "invalidValue"),
])
def test_bad_bodies_are_400_with_a_scim_type(client: TestClient, ctx: ServiceContext,
                                              content: bytes, content_type: str,
                                              scim_type: str) -> None:
    headers = {**auth(scim_token(ctx)), "Content-Type": content_type}
    assert_scim_error(client.post(f"{BASE}/Users", content=content, headers=headers), 400,
                      scim_type)


def test_uniqueness_is_409_with_scim_type(scim: Scim) -> None:
    _created(scim)
    assert_scim_error(scim.post("/Users", user()), 409, "uniqueness")
    scim.post("/Groups", {"schemas": [GROUP_SCHEMA], "displayName": "Nurses"})
    assert_scim_error(scim.post("/Groups", {"schemas": [GROUP_SCHEMA],
                                            "displayName": "NURSES"}), 409, "uniqueness")


@pytest.mark.parametrize(("params", "scim_type"), [
    ({"filter": "userName eq"}, "invalidFilter"),
    ({"filter": 'nope eq "x"'}, "invalidFilter"),
    ({"filter": "(" * 50 + 'userName eq "x"' + ")" * 50}, "invalidFilter"),
    ({"filter": "x" * 5000}, "invalidFilter"),
    ({"startIndex": "one"}, "invalidValue"),
    ({"count": "1.5"}, "invalidValue"),
    ({"startIndex": "9" * 40}, "invalidValue"),
    ({"sortOrder": "sideways"}, "invalidValue"),
    ({"sortBy": "shoeSize"}, "invalidFilter"),
])
def test_bad_queries_are_400(scim: Scim, params: dict[str, str], scim_type: str) -> None:
    assert_scim_error(scim.get("/Users", **params), 400, scim_type)


@pytest.mark.parametrize(("operation", "scim_type"), [
    ({"op": "replace", "path": "id", "value": "x"}, "mutability"),
    ({"op": "add", "path": "groups", "value": [{"value": "g"}]}, "mutability"),
    ({"op": "replace", "path": "shoeSize", "value": 1}, "invalidPath"),
    ({"op": "replace", "path": "emails[", "value": 1}, "invalidPath"),
    ({"op": "replace", "path": 'emails[type eq "x"].value', "value": 1}, "invalidValue"),
    ({"op": "remove"}, "noTarget"),
    ({"op": "jump", "path": "title", "value": "x"}, "invalidSyntax"),
])
def test_bad_patches_are_400(scim: Scim, operation: dict[str, Any], scim_type: str) -> None:
    user_id = _created(scim)["id"]
    assert_scim_error(scim.patch(f"/Users/{user_id}", patch(operation)), 400, scim_type)


def test_unknown_resources_endpoints_and_methods(scim: Scim) -> None:
    assert_scim_error(scim.get("/Users/nobody"), 404)
    assert_scim_error(scim.get("/Groups/nobody"), 404)
    assert_scim_error(scim.get("/Nothing/here"), 404)
    assert_scim_error(scim.get("/Schemas/urn:nope"), 404)
    assert_scim_error(scim.get("/ResourceTypes/Device"), 404)
    assert_scim_error(scim.delete("/Users"), 405)
    assert_scim_error(scim.patch("/ServiceProviderConfig", {}), 405)


def test_authentication_fails_closed_with_scim_401(client: TestClient,
                                                   ctx: ServiceContext) -> None:
    token = scim_token(ctx)
    admin.create_tenant(ctx, "clinic")
    other = scim_tokens.create_token(ctx, "clinic", "okta")[1]
    for headers in ({}, {"Authorization": "Basic dXNlcjpwYXNz"},
                    {"Authorization": "Bearer "}, {"Authorization": f"Bearer {other}"},
                    {"Authorization": f"Bearer {token}x"}):
        r = client.get(f"{BASE}/Users", headers=headers)
        assert_scim_error(r, 401)
        assert r.headers["www-authenticate"].startswith("Bearer")
    assert_scim_error(client.get("/scim/v2/nowhere/Users", headers=auth(token)), 401)
    assert client.get(f"{BASE}/Users", headers=auth(token)).status_code == 200
    assert client.get("/scim/v2/clinic/Users", headers=auth(other)).status_code == 200


def test_a_body_larger_than_max_payload_size_is_413_before_parsing(scim: Scim) -> None:
    big = b'{"a": "' + b"x" * (discovery.MAX_PAYLOAD_SIZE + 1) + b'"}'
    r = scim.client.post(f"{BASE}/Users", content=big, headers=scim.headers)
    assert_scim_error(r, 413)

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while reading
        for _ in range(3):
            yield b"x" * (discovery.MAX_PAYLOAD_SIZE // 2)

    r = scim.client.post(f"{BASE}/Bulk", content=chunks(), headers=scim.headers)
    assert_scim_error(r, 413)


def test_bulk_resolves_bulk_ids_and_reports_each_operation(scim: Scim) -> None:
    r = scim.post("/Bulk", {"schemas": [BULK], "Operations": [
        {"method": "POST", "path": "/Users", "bulkId": "ana", "data": user()},
        {"method": "POST", "path": "/Groups", "bulkId": "nurses", "data": {
            "schemas": [GROUP_SCHEMA], "displayName": "Nurses",
            "members": [{"value": "bulkId:ana"}]}},
        {"method": "PATCH", "path": "/Users/bulkId:ana", "data": patch(
            {"op": "replace", "path": "title", "value": "Nurse"})},
        {"method": "POST", "path": "/Users", "bulkId": "dup", "data": user()},
        {"method": "DELETE", "path": "/Groups/bulkId:nurses"},
    ]})
    assert r.status_code == 200
    results = r.json()["Operations"]
    assert [o["status"] for o in results] == ["201", "201", "200", "409", "204"]
    assert results[3]["response"]["scimType"] == "uniqueness"
    ana = scim.get("/Users", filter='title eq "Nurse"').json()
    assert ana["totalResults"] == 1 and results[0]["location"].endswith(ana["Resources"][0]["id"])


def test_bulk_stops_after_fail_on_errors_and_enforces_max_operations(scim: Scim) -> None:
    bad = {"method": "POST", "path": "/Users", "bulkId": "x", "data": {"userName": 1}}
    good = {"method": "POST", "path": "/Users", "bulkId": "y", "data": user()}
    r = scim.post("/Bulk", {"schemas": [BULK], "failOnErrors": 1,
                            "Operations": [bad, good]})
    assert [o["status"] for o in r.json()["Operations"]] == ["400"]
    too_many = [good] * (discovery.MAX_OPERATIONS + 1)
    assert_scim_error(scim.post("/Bulk", {"schemas": [BULK], "Operations": too_many}), 413)
    assert_scim_error(scim.post("/Bulk", {"Operations": []}), 400, "invalidSyntax")
    r = scim.post("/Bulk", {"schemas": [BULK], "Operations": [
        {"method": "PUT", "path": "/Users/bulkId:missing", "data": user()},
        {"method": "POST", "path": "/Devices", "bulkId": "d", "data": {}}, "junk"]})
    assert [o["status"] for o in r.json()["Operations"]] == ["400", "400", "400"]


def test_search_by_post(scim: Scim) -> None:
    _created(scim)
    search = {"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
              "filter": 'userName sw "ana"', "attributes": ["userName"], "count": 10}
    r = scim.post("/Users/.search", search)
    assert r.status_code == 200
    assert [set(u) for u in r.json()["Resources"]] == [{"schemas", "id", "userName"}]
    assert scim.post("/.search", search).json()["totalResults"] == 1
    assert_scim_error(scim.post("/Users/.search", {"filter": "x"}), 400, "invalidSyntax")


def test_pagination_and_sorting(scim: Scim) -> None:
    for name in ("c", "a", "b"):
        _created(scim, user(f"{name}@hospital.example"))
    page = scim.get("/Users", sortBy="userName", sortOrder="descending", startIndex="2",
                    count="1").json()
    assert (page["totalResults"], page["startIndex"], page["itemsPerPage"]) == (3, 2, 1)
    assert page["Resources"][0]["userName"] == "b@hospital.example"
    capped = scim.get("/Users", count=str(discovery.MAX_RESULTS * 10)).json()
    assert capped["itemsPerPage"] == 3


def test_discovery_endpoints(scim: Scim) -> None:
    config = scim.get("/ServiceProviderConfig").json()
    assert config["bulk"]["maxOperations"] == discovery.MAX_OPERATIONS
    assert config["bulk"]["maxPayloadSize"] == discovery.MAX_PAYLOAD_SIZE
    ids = [s["id"] for s in scim.get("/Schemas").json()["Resources"]]
    assert "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User" in ids
    user_schema = scim.get("/Schemas/urn:ietf:params:scim:schemas:core:2.0:User").json()
    assert user_schema["meta"]["location"].endswith(
        "/Schemas/urn:ietf:params:scim:schemas:core:2.0:User")
    assert scim.get("/ResourceTypes/Group").json()["endpoint"] == "/Groups"


def test_an_unexpected_failure_is_a_scim_500_without_internals(
        scim: Scim, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("secret internal detail")

    monkeypatch.setitem(RESOURCES, "User", replace(RESOURCES["User"], get=broken))
    r = scim.get("/Users/anything")
    assert_scim_error(r, 500)
    assert "secret" not in r.text
    assert any("unhandled SCIM error" in rec.getMessage() for rec in caplog.records)
    caplog.clear()  # expected here: the autouse check is for the other tests


@pytest.mark.parametrize("text", [
    "userName eq 1e999", 'meta.created gt "nonsense"', "meta.lastModified ge 5",
    'emails[type eq "work"] pr', 'emails[value sw "a"] and not (active eq false)',
    "active gt true", 'name.familyName co ""', "userName eq null", "userName pr",
    'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq "W"',
    'groups.value eq "x"', "id eq 5", 'userName eq "\\u0000"',
])
def test_odd_filters_are_answered_never_a_500(scim: Scim, text: str) -> None:
    _created(scim)
    r = scim.get("/Users", filter=text)
    assert r.status_code in (200, 400), r.text
    if r.status_code == 400:
        assert_scim_error(r, 400, "invalidFilter")
