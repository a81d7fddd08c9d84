"""The PATCH engine (RFC 7644 section 3.5.2) on the vectors of tests/vectors/scim, and the
behaviours the vectors cannot show."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from jitprov.protocols.scim import errors as e
from jitprov.protocols.scim.patch import apply_patch, parse_patch
from jitprov.protocols.scim.quirks import Quirks
from jitprov.protocols.scim.resources import GROUP, SCHEMAS, USER

VECTORS = Path(__file__).parents[1] / "vectors" / "scim"
PATCH_VECTORS = sorted(p for p in VECTORS.glob("*.json")
                       if json.loads(p.read_text()).get("request") is not None)


def _run(vector: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    quirks = Quirks.strict() if vector["quirks"] == "strict" else Quirks()
    result = apply_patch(SCHEMAS[vector["kind"]], vector["resource"],
                         parse_patch(vector["request"], quirks), quirks)
    members = [{"op": m.op, "ids": None if m.ids is None else list(m.ids)}
               for m in result.members]
    return result.resource, members


def test_the_vectors_cover_every_patch_section() -> None:
    names = {p.name for p in PATCH_VECTORS}
    for section in ("3.5.2.1", "3.5.2.2", "3.5.2.3"):
        assert any(f"rfc7644-{section}-" in n for n in names), section
    assert "rfc7644-3.5.2.1-patch-add-members.json" in names


@pytest.mark.parametrize("path", PATCH_VECTORS, ids=lambda p: p.stem)
def test_patch_vector(path: Path) -> None:
    vector = json.loads(path.read_text())
    expected = vector["expected"]
    if "error" in expected:
        with pytest.raises(e.ScimError) as raised:
            _run(vector)
        assert raised.value.scim_type == expected["error"]
        assert raised.value.status == 400
    else:
        resource, members = _run(vector)
        assert (resource, members) == (expected["resource"], expected["members"])


def test_patch_never_changes_the_resource_it_was_given() -> None:
    resource = {"userName": "u", "emails": [{"value": "a@x.example", "type": "work"}]}
    snapshot = json.loads(json.dumps(resource))
    apply_patch(USER, resource, parse_patch({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": 'emails[type eq "work"].value',
                        "value": "b@x.example"}]}))
    assert resource == snapshot


def test_touched_names_each_attribute_a_patch_changes() -> None:
    result = apply_patch(USER, {"userName": "u"}, parse_patch({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "Replace", "value": {
            "name.givenName": "A", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
            ":department": "W"}}]}))
    assert result.touched == {"name", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"}


def test_dotted_keys_are_refused_when_the_quirk_is_off() -> None:
    body = {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "value": {"name.givenName": "A"}}]}
    with pytest.raises(e.InvalidPath):
        apply_patch(USER, {"userName": "u"}, parse_patch(body, Quirks.strict()),
                    Quirks.strict())


def test_boolean_strings_stay_strings_when_the_quirk_is_off() -> None:
    body = {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "path": "active", "value": "False"}]}
    strict = Quirks.strict()
    result = apply_patch(USER, {"userName": "u", "active": True}, parse_patch(body, strict),
                         strict)
    assert result.resource["active"] == "False"  # the validation that follows refuses it


def test_remove_of_active_is_refused_as_it_is_the_account_status() -> None:
    body = {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "remove", "path": "active"}]}
    with pytest.raises(e.InvalidValue):
        apply_patch(USER, {"userName": "u", "active": True}, parse_patch(body))


def test_a_members_filter_other_than_value_eq_is_invalidfilter() -> None:
    body = {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "remove", "path": 'members[display co "a"]'}]}
    with pytest.raises(e.InvalidFilter):
        apply_patch(GROUP, {"displayName": "G"}, parse_patch(body))


def test_members_removed_by_several_ids_in_one_filter() -> None:
    body = {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "remove",
                            "path": 'members[value eq "a" or value eq "b"]'}]}
    result = apply_patch(GROUP, {"displayName": "G"}, parse_patch(body))
    assert [m.ids for m in result.members] == [("a", "b")]


@pytest.mark.parametrize("body", [
    None, [], {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"]},
    {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": []},
    {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": ["x"]},
    {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
     "Operations": [{"op": "add", "path": "title"}]},
    {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
     "Operations": [{"op": "add", "path": 7, "value": 1}]},
])
def test_malformed_patch_bodies_are_scim_errors(body: Any) -> None:
    with pytest.raises(e.ScimError) as raised:
        parse_patch(body)
    assert raised.value.status == 400
