"""The SCIM size and text limits: the fast path (one scan of every string joined) agrees
with the slow walk that names the bad attribute, on hostile payloads of every shape."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jitprov.protocols.scim import limits
from jitprov.protocols.scim.errors import InvalidValue
from tests.strategies import hostile_text

_keys = st.sampled_from(["userName", "title", "name", "givenName", "emails", "value",
                         "members", "x509Certificates", "urn:ietf:params:scim:schemas:"
                         "extension:enterprise:2.0:User", "department"]) | hostile_text
_strings = st.one_of(st.text(max_size=20), hostile_text,
                     st.integers(1000, 1100).map(lambda n: "x" * n),
                     st.integers(16_000, 16_500).map(lambda n: "c" * n))
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | _strings,
    lambda inner: st.lists(inner, max_size=4)
    | st.integers(99, 102).flatmap(lambda n: st.lists(st.just("v"), min_size=n, max_size=n))
    | st.dictionaries(_keys, inner, max_size=4),
    max_leaves=12)
payloads = st.dictionaries(_keys, _json, max_size=6)


def _verdict(check: Any, *args: Any) -> str | None:
    try:
        check(*args)
    except InvalidValue as exc:
        return str(exc)
    return None


@given(payloads)
def test_the_fast_path_passes_only_what_the_walk_passes(payload: dict[str, Any]) -> None:
    slow = _verdict(limits.walk_resource, "User", payload)
    if limits.surely_fine(payload, max_values=limits.MAX_VALUES,
                          max_total=limits.MAX_RESOURCE):
        assert slow is None
    assert _verdict(limits.check_resource, "User", payload) == slow


@given(st.lists(st.dictionaries(_keys, _json, max_size=3), max_size=3))
def test_the_fast_path_of_patch_operations_agrees(operations: list[Any]) -> None:
    slow = _verdict(limits.walk_patch_text, operations)
    if limits.surely_fine(operations, max_values=None, max_total=None):
        assert slow is None
    assert _verdict(limits.check_patch_text, operations) == slow


@pytest.mark.parametrize("payload", [
    {"userName": "ana", "title": "Head\tnurse\r\n"},
    {"userName": "ana", "emails": [{"value": "a@b.c", "type": "work"}] * 3,
     "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "W3"}},
])
def test_an_ordinary_user_takes_the_fast_path(payload: dict[str, Any]) -> None:
    assert limits.surely_fine(payload, max_values=limits.MAX_VALUES,
                              max_total=limits.MAX_RESOURCE)


@pytest.mark.parametrize("payload", [
    {"title": "\ud800"}, {"title": "a\x00"}, {"t\x1bitle": "x"}, {"title": "x" * 1025},
    {"emails": [{"value": "a"}] * 101}, {"x509Certificates": [{"value": "c" * 2000}]},
    {"members": [{"value": "m"}] * 101}, {"a": (1, 2)}, {1: "x"},
])
def test_the_fast_path_declines_what_it_cannot_vouch_for(payload: dict[Any, Any]) -> None:
    assert not limits.surely_fine(payload, max_values=limits.MAX_VALUES,
                                  max_total=limits.MAX_RESOURCE)
