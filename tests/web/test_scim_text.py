"""Hostile text through SCIM: a lone surrogate, a NUL or another control character, an
oversized string. Each is refused with 400 before anything is stored, and a tenant whose
rows already hold such values (written before the check existed) still reads."""

from __future__ import annotations

import importlib.util
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from jitprov.protocols.scim import limits
from jitprov.services.context import ServiceContext
from jitprov.store.database import MIGRATIONS
from tests.web.scim_helpers import (
    BASE,
    GROUP_SCHEMA,
    Scim,
    assert_scim_error,
    scim_token,
    user,
)

SEARCH = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"
BULK = "urn:ietf:params:scim:api:messages:2.0:BulkRequest"
SURROGATE = "\ud800"


@pytest.fixture
def scim(client: TestClient, ctx: ServiceContext) -> Scim:
    return Scim(client, scim_token(ctx))


@pytest.fixture(autouse=True)
def no_unexpected_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Hostile text is answered on purpose: nothing may reach the catch-all."""
    with caplog.at_level(logging.ERROR, logger="jitprov.scim"):
        yield
    assert [r.getMessage() for r in caplog.records if r.name == "jitprov.scim"] == []


def raw(scim: Scim, path: str, body: Any, method: str = "POST") -> Any:
    """Send ``body`` as JSON with \\u escapes, as an IdP would: a lone surrogate travels as
    the six characters ``\\ud800``, which is valid JSON."""
    return scim.client.request(method, BASE + path, headers=scim.headers,
                               content=json.dumps(body).encode("ascii"))


def _detail(response: Any) -> str:
    return str(response.json()["detail"])


@pytest.mark.parametrize("where", ["givenName", "title", "externalId", "department"])
@pytest.mark.parametrize("bad", [SURROGATE, "a\x00b", "a\x1bb"])
def test_user_with_bad_text_is_refused_naming_the_attribute(scim: Scim, where: str,
                                                            bad: str) -> None:
    body = user()
    if where == "givenName":
        body["name"]["givenName"] = bad
    elif where == "department":
        body["schemas"] = [*body["schemas"],
                           "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]
        body["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"] = {
            "department": bad}
    else:
        body[where] = bad
    r = raw(scim, "/Users", body)
    assert_scim_error(r, 400, "invalidValue")
    assert where in _detail(r)
    listed = scim.get("/Users")
    assert listed.status_code == 200 and listed.json()["totalResults"] == 0


def test_tab_and_newlines_stay_allowed(scim: Scim) -> None:
    r = raw(scim, "/Users", user(title="Head\tnurse\r\nWard 3"))
    assert r.status_code == 201, r.text
    assert r.json()["title"] == "Head\tnurse\r\nWard 3"


def test_group_display_name_and_patch_and_put_are_checked(scim: Scim) -> None:
    r = raw(scim, "/Groups", {"schemas": [GROUP_SCHEMA], "displayName": "N" + SURROGATE})
    assert_scim_error(r, 400, "invalidValue")
    assert "displayName" in _detail(r)
    created = raw(scim, "/Users", user())
    uid = created.json()["id"]
    op = {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
          "Operations": [{"op": "replace", "path": "title", "value": "x\x00"}]}
    assert_scim_error(raw(scim, f"/Users/{uid}", op, "PATCH"), 400, "invalidValue")
    op["Operations"] = [{"op": "replace", "value": {"name": {"givenName": SURROGATE}}}]
    assert_scim_error(raw(scim, f"/Users/{uid}", op, "PATCH"), 400, "invalidValue")
    assert_scim_error(raw(scim, f"/Users/{uid}", user(title=SURROGATE), "PUT"), 400,
                      "invalidValue")
    got = scim.get(f"/Users/{uid}")
    assert got.status_code == 200 and "title" not in got.json()


def test_bulk_refuses_bad_text_per_operation(scim: Scim) -> None:
    body = {"schemas": [BULK], "Operations": [
        {"method": "POST", "path": "/Users", "bulkId": "a", "data": user(title=SURROGATE)}]}
    r = raw(scim, "/Bulk", body)
    assert r.status_code == 200, r.text
    assert r.json()["Operations"][0]["status"] == "400"
    assert scim.get("/Users").json()["totalResults"] == 0


@pytest.mark.parametrize("text", [f'name.givenName eq "{SURROGATE}"',
                                  'name.givenName eq "a\x00"', f'title co "{SURROGATE}"'])
def test_filter_with_bad_text_is_invalid_filter(scim: Scim, text: str) -> None:
    r = raw(scim, "/Users/.search", {"schemas": [SEARCH], "filter": text})
    assert_scim_error(r, 400, "invalidFilter")
    r = scim.client.get(BASE + "/Users?filter=" + text.replace(SURROGATE, "%ED%A0%80")
                        .replace("\x00", "%00").replace(" ", "%20").replace('"', "%22"),
                        headers=scim.headers)
    assert r.status_code in (200, 400), r.text  # invalid UTF-8 in a URL decodes to U+FFFD
    if "\x00" in text:
        assert_scim_error(r, 400, "invalidFilter")


def test_search_with_non_string_attributes_is_invalid_value(scim: Scim) -> None:
    for path in ("/.search", "/Users/.search", "/Groups/.search"):
        for attributes in ([{}], [1], [None]):
            r = raw(scim, path, {"schemas": [SEARCH], "attributes": attributes})
            assert_scim_error(r, 400, "invalidValue")
            r = raw(scim, path, {"schemas": [SEARCH], "excludedAttributes": attributes})
            assert_scim_error(r, 400, "invalidValue")


def test_oversized_strings_and_resources_are_refused(scim: Scim) -> None:
    r = raw(scim, "/Users", user(title="x" * 2_000_000))
    assert r.status_code in (400, 413), r.text
    r = raw(scim, "/Users", user(title="x" * 1025))
    assert_scim_error(r, 400, "invalidValue")
    assert "title" in _detail(r)
    many = [{"value": f"u{i}@hospital.example", "type": "work"} for i in range(101)]
    assert_scim_error(raw(scim, "/Users", user(emails=many)), 400, "invalidValue")
    big = user(addresses=[{"streetAddress": "s" * 1000} for _ in range(70)])
    assert_scim_error(raw(scim, "/Users", big), 400, "invalidValue")
    assert scim.get("/Users").json()["totalResults"] == 0
    ok = raw(scim, "/Users", user(title="x" * 1024))
    assert ok.status_code == 201, ok.text


def _poison(ctx: ServiceContext, value: str) -> None:
    """Write ``value`` into a stored user's givenName and title, as a version without the
    check did (the JSON text escapes it, so both databases take it)."""
    with ctx.db.engine.begin() as conn:
        row = conn.execute(sa.text("select id, scim from account where user_name_lower = "
                                   "'ana@hospital.example'")).one()
        resource = row.scim if isinstance(row.scim, dict) else json.loads(row.scim)
        resource["name"]["givenName"] = value
        resource["title"] = value
        conn.execute(sa.text("update account set scim = :r where id = :i"),
                     {"r": json.dumps(resource), "i": row.id})


def _scrub(ctx: ServiceContext) -> int:
    """Run the repair pass of migration 0015 (what an upgrade does to rows stored before)."""
    path = MIGRATIONS / "versions" / "0015_scrub_hostile_text.py"
    spec = importlib.util.spec_from_file_location("scrub_0015", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with ctx.db.engine.begin() as conn:
        return int(module.scrub(conn))


@pytest.mark.parametrize("bad", [SURROGATE, "\x00", "a\x01b"])
def test_a_tenant_with_stored_bad_rows_still_reads(scim: Scim, ctx: ServiceContext,
                                                   bad: str) -> None:
    created = raw(scim, "/Users", user())
    uid = created.json()["id"]
    raw(scim, "/Users", user("bo@hospital.example"))
    _poison(ctx, bad)
    got = scim.get(f"/Users/{uid}")
    assert got.status_code == 200, got.text
    assert got.json()["name"]["givenName"] == bad.replace(SURROGATE, "\ufffd")
    listed = scim.get("/Users")
    assert listed.status_code == 200 and listed.json()["totalResults"] == 2
    assert _scrub(ctx) == 1
    assert _scrub(ctx) == 0
    for text in ('name.givenName eq "Ana"', 'title co "x"', 'userName sw "bo"'):
        r = scim.get("/Users", filter=text)
        assert r.status_code == 200, (text, r.text)
    assert scim.get(f"/Users/{uid}").json()["name"]["givenName"] in ("\ufffd", "", "ab")


def test_a_list_page_is_cut_at_its_size_bound(scim: Scim,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    for i in range(5):
        assert raw(scim, "/Users", user(f"u{i}@hospital.example",
                                        title="t" * 1000)).status_code == 201
    monkeypatch.setattr(limits, "MAX_PAGE_CHARS", 3000)
    first = scim.get("/Users", count=5).json()
    assert first["totalResults"] == 5
    assert 1 <= first["itemsPerPage"] < 5 == first["totalResults"]
    assert len(first["Resources"]) == first["itemsPerPage"]
    seen = [r["userName"] for r in first["Resources"]]
    start = 1 + first["itemsPerPage"]
    while start <= 5:
        page = scim.get("/Users", startIndex=start, count=5).json()
        seen += [r["userName"] for r in page["Resources"]]
        start += page["itemsPerPage"]
    assert sorted(seen) == [f"u{i}@hospital.example" for i in range(5)]
    root = raw(scim, "/.search", {"schemas": [SEARCH], "count": 5}).json()
    assert root["itemsPerPage"] < 5 and root["totalResults"] == 5


@pytest.mark.parametrize("escaped", ["\\ud800", "\\udfff", "\\u0001", "\\u001b"])
def test_a_bad_character_escaped_inside_a_filter_string_is_invalid_filter(
        scim: Scim, escaped: str) -> None:
    """The filter's own JSON string escapes (``"\\ud800"`` spelled with a backslash in the
    filter text) decode to the same bad text: refused, never sent to the database."""
    assert raw(scim, "/Users", user()).status_code == 201
    text = f'name.givenName eq "{escaped}" or userName eq "ana@hospital.example"'
    for path in ("/.search", "/Users/.search", "/Groups/.search"):
        assert_scim_error(raw(scim, path, {"schemas": [SEARCH], "filter": text}), 400,
                          "invalidFilter")
    assert_scim_error(scim.get("/Users", filter=text), 400, "invalidFilter")
    assert_scim_error(scim.get("/Groups", filter=f'displayName eq "{escaped}"'), 400,
                      "invalidFilter")
    ok = scim.get("/Users", filter='userName eq "ana@hospital.example" and title eq "\\t"')
    assert ok.status_code == 200, ok.text  # tab stays allowed in free text


def test_a_root_search_filter_no_resource_type_can_take_is_invalid_filter(scim: Scim) -> None:
    """RFC 7644 section 3.4.3: a filter the server cannot parse is a 400 at the root too
    (one that names attributes of one type only still matches that type)."""
    for text in ("((", 'userName eq "\\ud800"', "title eq 5"):
        assert_scim_error(raw(scim, "/.search", {"schemas": [SEARCH], "filter": text}), 400,
                          "invalidFilter")
    ok = raw(scim, "/.search", {"schemas": [SEARCH], "filter": 'displayName eq "Nurses"'})
    assert ok.status_code == 200, ok.text


@pytest.mark.parametrize("field", ["startIndex", "count"])
@pytest.mark.parametrize("number", ["Infinity", "-Infinity", "NaN", "1e999"])
def test_a_non_finite_number_in_paging_is_invalid_value(scim: Scim, field: str,
                                                        number: str) -> None:
    """Python's JSON (like many clients) reads ``Infinity`` and ``NaN``: an integer field
    holding one is a 400, not an overflow."""
    for path in ("/.search", "/Users/.search", "/Groups/.search"):
        body = f'{{"schemas": ["{SEARCH}"], "{field}": {number}}}'.encode()
        r = scim.client.post(BASE + path, headers=scim.headers, content=body)
        assert_scim_error(r, 400, "invalidValue")
    body = f'{{"schemas": ["{BULK}"], "Operations": [], "failOnErrors": {number}}}'.encode()
    assert_scim_error(scim.client.post(BASE + "/Bulk", headers=scim.headers, content=body),
                      400, "invalidValue")
