"""A Hypothesis state machine against the SCIM server, over HTTP (the app's test client):
Users and Groups created, replaced, patched and deleted one by one and through Bulk, found
through filters (GET and ``.search``, per resource type and at the root), with hostile text
in every string it sends (lone surrogates as JSON escapes, NUL and other controls, oversized
and unusual Unicode), hostile filters, paths, ids, paging, ``If-Match`` and raw bodies (a lone
surrogate's raw bytes, invalid UTF-8, deep nesting).

The property, after every step: no answer is a 5xx (a Bulk operation's status included), no
body carries a traceback, nothing is logged as an unexpected error. After every run the
tenant still reads: every page of Users and Groups, each resource the run created, the
tenant's users and access review through the admin API, and its console user list, search
and user pages.

Bounded: :data:`RUNS` runs of :data:`STEPS` steps per database (about ten seconds each); under
``CI`` the runs are derandomized (the ``ci`` Hypothesis profile of tests/conftest.py).
"""

from __future__ import annotations

import json
import logging
from typing import Any, TypeVar
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    multiple,
    rule,
    run_state_machine_as_test,
)
from starlette.testclient import TestClient

from jitprov.services import admin, console
from jitprov.services.context import ServiceContext
from jitprov.services.scim import tokens as scim_tokens
from tests.fuzz.checks import ErrorLog, assert_sound
from tests.strategies import hostile_text
from tests.web.scim_helpers import ENTERPRISE, GROUP_SCHEMA, PATCH_SCHEMA, USER_SCHEMA

#: runs per database, and steps per run
RUNS = 30
STEPS = 30
#: characters of one query value (past the 1 KiB string limit)
URL_CHARS = 1100
SEARCH = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"
BULK = "urn:ietf:params:scim:api:messages:2.0:BulkRequest"

# -- what the machine sends ---------------------------------------------------------------------

T = TypeVar("T")


def rarely(usual: st.SearchStrategy[T], unusual: st.SearchStrategy[Any],
           one_in: int = 5) -> st.SearchStrategy[Any]:
    """``unusual`` about once in ``one_in`` draws, else ``usual``: a request with several
    values then mostly fails on one of them, and often gets through to change the state."""
    return st.integers(1, one_in).flatmap(lambda n: unusual if n == 1 else usual)


_plain = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7e), min_size=1, max_size=12)
#: a string value: mostly plain or ordinary Unicode, sometimes hostile
text = rarely(_plain | st.text(st.characters(exclude_categories=["Cc", "Cs"]), min_size=1,
                               max_size=12), hostile_text)
#: anything JSON a client may put where a value belongs
json_value = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63) | st.floats() | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=6)

USER_ATTRIBUTES = ["userName", "displayName", "title", "externalId", "nickName",
                   "profileUrl", "userType", "preferredLanguage", "locale", "timezone",
                   "name.givenName", "name.familyName", "name.formatted",
                   "emails.value", "emails.type", "phoneNumbers.value", "addresses.locality",
                   "groups.value", "groups.display", "active", "meta.created",
                   "meta.lastModified", "id",
                   f"{ENTERPRISE}:department", f"{ENTERPRISE}:employeeNumber",
                   f"{ENTERPRISE}:manager.value"]
GROUP_ATTRIBUTES = ["displayName", "externalId", "members.value", "members.display", "id",
                    "meta.lastModified"]
attribute = rarely(st.sampled_from(USER_ATTRIBUTES + GROUP_ATTRIBUTES), text)
COMPARISONS = ["eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le"]


@st.composite
def filters(draw: st.DrawFn, depth: int = 0) -> str:
    """A SCIM filter: mostly well formed (comparisons, presence, and/or/not, value paths)
    with hostile values; sometimes hostile text as a whole."""
    kind = draw(st.integers(0, 11))
    if kind == 0:
        return draw(hostile_text)
    if kind == 1 and depth < 2:
        joiner = draw(st.sampled_from([" and ", " or ", " AND "]))
        return joiner.join(draw(st.lists(filters(depth + 1), min_size=2, max_size=4)))
    if kind == 2 and depth < 2:
        return f"not ({draw(filters(depth + 1))})"
    if kind == 3 and depth < 2:
        return f"emails[{draw(filters(depth + 1))}]"
    if kind == 4:
        return f"{draw(attribute)} pr"
    quoted = text.map(json.dumps) | text.map(lambda t: json.dumps(t, ensure_ascii=False))
    value = draw(rarely(quoted, st.sampled_from(
        ["true", "false", "null", "1", "-1e309", "2026-01-01T00:00:00Z", '"2026-13-45"']),
        one_in=3))
    return f"{draw(attribute)} {draw(st.sampled_from(COMPARISONS))} {value}"


@st.composite
def users(draw: st.DrawFn, serial: int) -> dict[str, Any]:
    """A User body: a fresh userName (or a hostile one), some attributes of every shape."""
    body: dict[str, Any] = {"schemas": [USER_SCHEMA],
                            "userName": f"u{serial}-{draw(_plain)}@fuzz.example"}
    if draw(st.integers(0, 5)) == 0:
        body["userName"] = draw(text)
    optional = {
        "displayName": text, "title": text, "externalId": text, "nickName": text,
        "active": rarely(st.booleans(), json_value),
        "name": st.fixed_dictionaries({}, optional={"givenName": text, "familyName": text,
                                                     "formatted": text}),
        "emails": st.lists(st.fixed_dictionaries(
            {"value": text}, optional={"type": st.sampled_from(["work", "home"]) | text,
                                       "primary": st.booleans()}), max_size=3),
        "phoneNumbers": st.lists(st.fixed_dictionaries({"value": text}), max_size=2),
        "addresses": st.lists(st.fixed_dictionaries({}, optional={
            "locality": text, "streetAddress": text}), max_size=2),
        ENTERPRISE: st.fixed_dictionaries({}, optional={
            "department": text, "employeeNumber": text,
            "manager": st.fixed_dictionaries({"value": text})}),
        "password": text,
    }
    for key in draw(st.lists(st.sampled_from(sorted(optional)), unique=True, max_size=5)):
        body[key] = draw(optional[key])
    if ENTERPRISE in body:
        body["schemas"] = [USER_SCHEMA, ENTERPRISE]
    if draw(st.integers(0, 9)) == 0:  # an unknown or hostile attribute
        body[draw(text)] = draw(json_value)
    return body


def _patch_operation(paths: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """A PATCH operation: mostly add/replace/remove of a known path with a string, a
    sub-object or a list; sometimes any op, any path (a value filter), any JSON value."""
    value = rarely(text | st.dictionaries(
        st.sampled_from(["givenName", "title", "displayName", "value", "type"]), text,
        min_size=1, max_size=2), json_value, one_in=6)
    return st.fixed_dictionaries(
        {"op": rarely(st.sampled_from(["add", "replace", "remove", "Replace"]), text,
                      one_in=10),
         "value": rarely(value, st.none(), one_in=10)},
        optional={"path": rarely(st.sampled_from(paths), filters().map(
            lambda f: f"emails[{f}].value") | text, one_in=6)})


def _send(client: TestClient, method: str, url: str, headers: dict[str, str],
          body: Any = None, query: dict[str, str] | None = None) -> Any:
    """One request; a JSON body goes out with ``\\u`` escapes (how a lone surrogate travels),
    a query value with a lone surrogate as its CESU-8 bytes, cut at :data:`URL_CHARS` (the
    HTTP client refuses longer URLs)."""
    if query:
        url += "?" + "&".join(f"{k}={_url_text(v)}" for k, v in query.items())
    content = body if isinstance(body, bytes) or body is None else json.dumps(body).encode(
        "ascii")
    return client.request(method, url, headers=headers, content=content)


def _url_text(value: str) -> str:
    """``value`` for a URL path: percent-encoded, a lone surrogate as its CESU-8 bytes."""
    return quote(value[:URL_CHARS].encode("utf-8", "surrogatepass"), safe="")


#: bodies no JSON encoder writes: raw bytes of a lone surrogate (which Python's JSON reader
#: takes), invalid UTF-8, a raw control character, truncated and deeply nested JSON
RAW_BODIES = [
    b'{"schemas":["' + USER_SCHEMA.encode() + b'"],"userName":"a\xed\xa0\x80@x.example"}',
    b'{"schemas":["' + USER_SCHEMA.encode() + b'"],"userName":"b@x.example",'
    b'"title":"\xed\xb0\x80"}',
    b'{"schemas":["' + GROUP_SCHEMA.encode() + b'"],"displayName":"\xff\xfe"}',
    b'{"schemas":["' + USER_SCHEMA.encode() + b'"],"userName":"a\x01@x.example"}',
    b'{"schemas":', b"", b"null", b"[]", b'"x"', b"[" * 5000 + b"]" * 5000,
    b'{"a":' * 3000 + b"1" + b"}" * 3000, b"\xef\xbb\xbf{}", b'{"schemas":"' + b"x" * 100 + b'"}',
]


class ScimMachine(RuleBasedStateMachine):
    """One SCIM client doing what a buggy or hostile IdP does, each run in a tenant of its
    own (so a run replays alike while Hypothesis shrinks it)."""

    ctx: ServiceContext
    client: TestClient
    admin_headers: dict[str, str]
    errors: ErrorLog
    tenants = 0

    user_ids = Bundle("users")
    group_ids = Bundle("groups")

    def __init__(self) -> None:
        super().__init__()
        ScimMachine.tenants += 1
        self.tenant = f"fuzz-{ScimMachine.tenants}"
        admin.create_tenant(self.ctx, self.tenant)
        token = scim_tokens.create_token(self.ctx, self.tenant, "fuzz")[1]
        self.headers = {"Authorization": f"Bearer {token}",
                        "Content-Type": "application/scim+json"}
        self.created: dict[str, str] = {}  # id -> "Users" | "Groups"
        self.serial = 0

    def send(self, method: str, path: str, body: Any = None,
             query: dict[str, str] | None = None, **headers: str) -> Any:
        response = _send(self.client, method, f"/scim/v2/{self.tenant}{path}",
                         {**self.headers, **headers}, body, query)
        assert_sound(response, f"{method} {path}", self.errors)
        return response

    def next_serial(self) -> int:
        self.serial += 1
        return self.serial

    def remember(self, response: Any, kind: str) -> Any:
        if response.status_code == 201:
            self.created[response.json()["id"]] = kind
            return response.json()["id"]
        return multiple()

    @initialize(target=user_ids)
    def first_user(self) -> Any:
        body = {"schemas": [USER_SCHEMA], "userName": f"first{self.next_serial()}@fuzz.example"}
        response = self.send("POST", "/Users", body)
        assert response.status_code == 201, response.text
        return self.remember(response, "Users")

    # -- Users ------------------------------------------------------------------------------

    @rule(target=user_ids, data=st.data())
    def create_user(self, data: st.DataObject) -> Any:
        body = data.draw(users(self.next_serial()))
        return self.remember(self.send("POST", "/Users", body), "Users")

    @rule(user_id=user_ids, data=st.data())
    def replace_user(self, user_id: str, data: st.DataObject) -> None:
        self.send("PUT", f"/Users/{user_id}", data.draw(users(self.next_serial())))

    @rule(user_id=user_ids, operations=st.lists(_patch_operation(USER_ATTRIBUTES),
                                                min_size=1, max_size=3))
    def patch_user(self, user_id: str, operations: list[dict[str, Any]]) -> None:
        self.send("PATCH", f"/Users/{user_id}",
                  {"schemas": [PATCH_SCHEMA], "Operations": operations})

    @rule(user_id=consumes(user_ids))
    def delete_user(self, user_id: str) -> None:
        self.send("DELETE", f"/Users/{user_id}")
        self.created.pop(user_id, None)

    @rule(user_id=user_ids, attributes=rarely(st.none(), attribute | text),
          excluded=rarely(st.none(), attribute | text))
    def get_user(self, user_id: str, attributes: str | None, excluded: str | None) -> None:
        query = {k: v for k, v in (("attributes", attributes),
                                   ("excludedAttributes", excluded)) if v is not None}
        self.send("GET", f"/Users/{user_id}", query=query)

    # -- Groups -----------------------------------------------------------------------------

    @rule(target=group_ids, name=text, members=st.lists(user_ids, max_size=3),
          extra=rarely(st.just([]), st.lists(text, max_size=2)),
          external_id=st.none() | text)
    def create_group(self, name: str, members: list[str], extra: list[str],
                     external_id: str | None) -> Any:
        body: dict[str, Any] = {"schemas": [GROUP_SCHEMA], "displayName": name,
                                "members": [{"value": m} for m in [*members, *extra]]}
        if external_id is not None:
            body["externalId"] = external_id
        return self.remember(self.send("POST", "/Groups", body), "Groups")

    @rule(group_id=group_ids, members=st.lists(rarely(user_ids, text), max_size=3),
          operation=st.sampled_from(["add", "remove", "replace"]),
          name=st.none() | text)
    def patch_group(self, group_id: str, members: list[str], operation: str,
                    name: str | None) -> None:
        operations: list[dict[str, Any]] = [
            {"op": operation, "path": "members", "value": [{"value": m} for m in members]}]
        if operation == "remove" and members:
            operations.append({"op": "remove",
                               "path": f'members[value eq {json.dumps(members[0])}]'})
        if name is not None:
            operations.append({"op": "replace", "value": {"displayName": name}})
        self.send("PATCH", f"/Groups/{group_id}",
                  {"schemas": [PATCH_SCHEMA], "Operations": operations})

    @rule(group_id=group_ids, operations=st.lists(
        _patch_operation(GROUP_ATTRIBUTES), min_size=1, max_size=2))
    def patch_group_freely(self, group_id: str, operations: list[dict[str, Any]]) -> None:
        self.send("PATCH", f"/Groups/{group_id}",
                  {"schemas": [PATCH_SCHEMA], "Operations": operations})

    @rule(group_id=consumes(group_ids))
    def delete_group(self, group_id: str) -> None:
        self.send("DELETE", f"/Groups/{group_id}")
        self.created.pop(group_id, None)

    @rule(collection=st.sampled_from(["/Users", "/Groups"]),
          resource_id=hostile_text | st.sampled_from(["..", "%00", "bulkId:x", " "]),
          method=st.sampled_from(["GET", "PUT", "PATCH", "DELETE"]),
          if_match=st.sampled_from(["", "*", 'W/"1"', '"', "W/", "\x00"]) | text,
          body=st.sampled_from(RAW_BODIES) | json_value)
    def odd_request(self, collection: str, resource_id: str, method: str, if_match: str,
                    body: Any) -> None:
        """A resource id, an If-Match or a body no client should send."""
        headers = {"If-Match": if_match.encode("ascii", "replace").decode()}
        self.send(method, f"{collection}/{_url_text(resource_id)}",
                  None if method in ("GET", "DELETE") else body, **headers)

    @rule(path=st.sampled_from(["/Users", "/Groups", "/Bulk", "/.search", "/Users/.search"]),
          body=st.sampled_from(RAW_BODIES),
          content_type=st.sampled_from(["application/scim+json", "application/json",
                                        "application/scim+json; charset=utf-16", "text/plain"]))
    def raw_body(self, path: str, body: bytes, content_type: str) -> None:
        self.send("POST", path, body, **{"Content-Type": content_type})

    @rule(group_id=group_ids, name=text, members=st.lists(rarely(user_ids, text), max_size=3))
    def replace_group(self, group_id: str, name: str, members: list[str]) -> None:
        self.send("PUT", f"/Groups/{group_id}", {
            "schemas": [GROUP_SCHEMA], "displayName": name,
            "members": [{"value": m} for m in members]})

    # -- queries ----------------------------------------------------------------------------

    @rule(collection=st.sampled_from(["/Users", "/Groups"]), filter_text=filters(),
          sort_by=st.none() | attribute,
          order=rarely(st.sampled_from([None, "descending", "ascending"]), text),
          start=rarely(st.none() | st.sampled_from(["0", "1", "2", "-5"]),
                       st.sampled_from(["2147483648", "x", "1e3", "9" * 30])),
          count=rarely(st.none() | st.sampled_from(["0", "1", "1001", "-1"]),
                       st.sampled_from(["2.5", "9" * 30, "", "x"])))
    def query(self, collection: str, filter_text: str, sort_by: str | None,
              order: str | None, start: str | None, count: str | None) -> None:
        query = {"filter": filter_text}
        for key, value in (("sortBy", sort_by), ("sortOrder", order), ("startIndex", start),
                           ("count", count)):
            if value is not None:
                query[key] = value
        self.send("GET", collection, query=query)

    @rule(path=st.sampled_from(["/.search", "/Users/.search", "/Groups/.search"]),
          filter_text=rarely(st.none() | filters(), json_value),
          attributes=rarely(st.none() | st.lists(attribute, max_size=2),
                            st.lists(json_value, min_size=1, max_size=2) | json_value),
          excluded=rarely(st.none(), st.lists(attribute, max_size=2)),
          start=rarely(st.none() | st.integers(-3, 5), st.integers(-3, 2**31 + 1) | json_value),
          count=rarely(st.none() | st.integers(-3, 5), st.integers(-3, 2**31 + 1) | json_value),
          sort_by=rarely(st.none(), attribute | json_value))
    def search(self, path: str, filter_text: Any, attributes: Any, excluded: Any,
               start: Any, count: Any, sort_by: Any) -> None:
        body: dict[str, Any] = {"schemas": [SEARCH]}
        for key, value in (("filter", filter_text), ("attributes", attributes),
                           ("excludedAttributes", excluded), ("startIndex", start),
                           ("count", count), ("sortBy", sort_by)):
            if value is not None:
                body[key] = value
        self.send("POST", path, body)

    # -- Bulk -------------------------------------------------------------------------------

    @rule(data=st.data(), known=st.lists(user_ids | group_ids, max_size=2),
          fail_on_errors=rarely(st.none(), st.integers(-1, 3) | json_value))
    def bulk(self, data: st.DataObject, known: list[str], fail_on_errors: Any) -> None:
        operations: list[Any] = []
        for index in range(data.draw(st.integers(1, 4))):
            kind = data.draw(st.integers(0, 6))
            if kind == 0:
                operations.append({"method": "POST", "path": "/Users", "bulkId": f"b{index}",
                                   "data": data.draw(users(self.next_serial()))})
            elif kind == 1:
                operations.append({"method": "POST", "path": "/Groups", "bulkId": f"g{index}",
                                   "data": {"schemas": [GROUP_SCHEMA],
                                            "displayName": data.draw(text),
                                            "members": [{"value": f"bulkId:b{index - 1}"}]}})
            elif kind == 2 and known:
                target = data.draw(st.sampled_from(known))
                kind_path = self.created.get(target, "Users")
                operations.append({"method": "PATCH", "path": f"/{kind_path}/{target}",
                                   "data": {"schemas": [PATCH_SCHEMA], "Operations": data.draw(
                                       st.lists(_patch_operation(USER_ATTRIBUTES),
                                                min_size=1, max_size=2))}})
            elif kind == 3 and known:
                target = data.draw(st.sampled_from(known))
                if self.created.get(target, "Users") == "Users":
                    operations.append({"method": "PUT", "path": f"/Users/{target}",
                                       "data": data.draw(users(self.next_serial()))})
                else:
                    operations.append({"method": "DELETE", "path": f"/Groups/{target}"})
            elif kind == 4:
                operations.append({"method": data.draw(st.sampled_from(
                    ["PUT", "DELETE", "GET", "PATCH"]) | text),
                    "path": data.draw(st.sampled_from(
                        ["/Users/bulkId:b0", "/Groups/bulkId:zz", "/Users", "/Nope/1"]) | text),
                    "data": data.draw(json_value), "version": data.draw(json_value)})
            else:
                operations.append(data.draw(json_value))
        body: dict[str, Any] = {"schemas": [BULK], "Operations": operations}
        if fail_on_errors is not None:
            body["failOnErrors"] = fail_on_errors
        response = self.send("POST", "/Bulk", body)
        if response.status_code == 200:
            for outcome in response.json()["Operations"]:
                assert int(outcome["status"]) < 500, outcome
                if outcome["status"] == "201":
                    kind_path = outcome["location"].rsplit("/", 2)[-2]
                    self.created[outcome["location"].rsplit("/", 1)[-1]] = kind_path

    # -- the tenant still reads ---------------------------------------------------------------

    def teardown(self) -> None:
        for collection in ("/Users", "/Groups"):
            start = 1
            while True:
                page = self.send("GET", collection, query={"startIndex": str(start),
                                                           "count": "50"})
                assert page.status_code == 200, page.text
                listed = page.json()
                start += listed["itemsPerPage"]
                if not listed["Resources"] or start > listed["totalResults"]:
                    break
        for resource_id, kind in self.created.items():
            got = self.send("GET", f"/{kind}/{resource_id}")
            assert got.status_code in (200, 404), got.text  # 404: deleted through Bulk
        for path in (f"/api/tenants/{self.tenant}/users",
                     f"/api/tenants/{self.tenant}/access-review"):
            response = self.client.get(path, headers=self.admin_headers)
            assert_sound(response, f"GET {path}", self.errors, ok=True)
        # the console (its session cookie is on the client): the user list, a search, and
        # the page of each user
        for query in ("", "&q=u", "&q=%E2%80%AE"):
            response = self.client.get(f"/admin/users?tenant={self.tenant}{query}")
            assert_sound(response, "GET /admin/users", self.errors, ok=True)
        for resource_id, kind in self.created.items():
            if kind == "Users":
                response = self.client.get(f"/admin/users/{resource_id}")
                assert_sound(response, "GET /admin/users/{id}", self.errors)
                assert response.status_code in (200, 404), response.text


@pytest.mark.filterwarnings("ignore:Generating overly large repr")
def test_scim_never_fails_and_the_tenant_still_reads(client: TestClient, ctx: ServiceContext,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    ScimMachine.ctx = ctx
    ScimMachine.client = client
    link = console.create_bootstrap_link(ctx, "http://testserver")  # an admin of every tenant
    signed_in = client.post("/admin/bootstrap", data={"token": link.url.split("#", 1)[1]})
    assert signed_in.status_code == 303, signed_in.text
    ScimMachine.admin_headers = {
        "Authorization": f"Bearer {admin.create_admin_token(ctx, 'fuzz')[1]}"}
    ScimMachine.errors = ErrorLog(caplog)
    with caplog.at_level(logging.ERROR):
        ScimMachine.errors.probe()
        run_state_machine_as_test(ScimMachine, settings=settings(
            max_examples=RUNS, stateful_step_count=STEPS, database=None,
            suppress_health_check=list(HealthCheck)))
