"""The cost of SCIM filters through the HTTP API, on SQLite and PostgreSQL: a disjunction of
many terms on ``groups`` answers (one lookup of the groups' members, not one subquery per
term per user), and a filter that would still make too many comparisons per row is a 400
``invalidFilter`` saying why. The SQL shape itself is pinned in
``tests/store/test_sqlite_plans.py``; the timings are in ``bench/scim_store.py``."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from jitprov.services.context import ServiceContext
from jitprov.store.scim.filter_cost import MAX_FILTER_COST
from tests.web.scim_helpers import GROUP_SCHEMA, Scim, assert_scim_error, scim_token, user


@pytest.fixture
def scim(client: TestClient, ctx: ServiceContext) -> Scim:
    return Scim(client, scim_token(ctx))


def _ids(scim: Scim, names: list[str]) -> list[str]:
    ids = []
    for name in names:
        r = scim.post("/Users", user(f"{name}@hospital.example", title=f"t-{name}"))
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    return ids


def _names(body: dict[str, Any]) -> set[str]:
    return {u["userName"] for u in body["Resources"]}


def test_a_hundred_groups_value_terms_answer_with_the_members(scim: Scim) -> None:
    ana, bob, _ = _ids(scim, ["ana", "bob", "eve"])
    r = scim.post("/Groups", {"schemas": [GROUP_SCHEMA], "displayName": "Nurses",
                              "members": [{"value": ana}, {"value": bob}]})
    assert r.status_code == 201, r.text
    group = r.json()["id"]
    terms = [f'groups.value eq "g{i}"' for i in range(99)] + [f'groups.value eq "{group}"']

    r = scim.get("/Users", filter=" or ".join(terms))

    assert r.status_code == 200, r.text
    assert _names(r.json()) == {"ana@hospital.example", "bob@hospital.example"}
    any_of = " or ".join(f'groups[value eq "{v}"]' for v in ["a", "b", group, "c"])
    r = scim.get("/Users", filter=f'({any_of}) and title eq "t-ana"')
    assert _names(r.json()) == {"ana@hospital.example"}
    r = scim.get("/Users", filter="not (" + " or ".join(terms) + ")")
    assert _names(r.json()) == {"eve@hospital.example"}


def test_eq_terms_on_one_attribute_count_once(scim: Scim) -> None:
    _ids(scim, ["ana", "bob"])
    text = " or ".join(f'title eq "t-{n}"' for n in ["ana", "bob", *map(str, range(98))])

    r = scim.get("/Users", filter=text)

    assert r.status_code == 200, r.text
    assert _names(r.json()) == {"ana@hospital.example", "bob@hospital.example"}


@pytest.mark.parametrize("text", [
    " or ".join(f'title co "{i}"' for i in range(MAX_FILTER_COST + 1)),
    " or ".join(f'groups.value co "{i}"' for i in range(100)),
    " and ".join(f'emails[value sw "{i}"]' for i in range(MAX_FILTER_COST + 1)),
])
def test_a_filter_over_the_cost_budget_is_an_invalid_filter_saying_why(
        scim: Scim, text: str) -> None:
    _ids(scim, ["ana"])

    r = scim.get("/Users", filter=text)

    assert_scim_error(r, 400, "invalidFilter")
    assert "too costly" in r.json()["detail"]
    assert f"at most {MAX_FILTER_COST}" in r.json()["detail"]


def test_a_filter_at_the_budget_answers(scim: Scim) -> None:
    _ids(scim, ["ana"])
    text = " or ".join(f'title co "{i}"' for i in range(MAX_FILTER_COST - 1)) + ' or title co "ana"'

    r = scim.get("/Users", filter=text)

    assert r.status_code == 200, r.text
    assert _names(r.json()) == {"ana@hospital.example"}
