"""Regenerate the SCIM PATCH and resource vectors of this folder (one JSON file each, named
after the RFC section it exercises, or ``quirk-<vendor>-...`` for a tolerated deviation).

    .venv/bin/python tests/vectors/scim/generate.py

``rfc7644-3.4.2.2-*`` (filters) belong to the store's suite and are not written here.

PATCH vector: ``{"section", "description", "kind", "quirks": "default"|"strict",
"resource", "request", "expected": {"resource", "members"} | {"error": scimType}}``.
Resource vector: ``{"section", "description", "kind", "payload",
"expected": {"resource"} | {"error": scimType}}``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"

ANA: dict[str, Any] = {
    "userName": "ana@hospital.example", "active": True,
    "name": {"givenName": "Ana", "familyName": "Lima"},
    "emails": [{"value": "ana@hospital.example", "type": "work", "primary": True},
               {"value": "ana@home.example", "type": "home"}],
}
NURSES: dict[str, Any] = {"displayName": "Nurses"}


def ops(*operations: dict[str, Any]) -> dict[str, Any]:
    return {"schemas": [PATCH], "Operations": list(operations)}


def patch_vector(section: str, description: str, kind: str, resource: dict[str, Any],
                 request: dict[str, Any], *, result: dict[str, Any] | None = None,
                 members: list[dict[str, Any]] | None = None, error: str | None = None,
                 quirks: str = "default") -> dict[str, Any]:
    expected: dict[str, Any] = {"error": error} if error else {
        "resource": result, "members": members or []}
    return {"section": section, "description": description, "kind": kind, "quirks": quirks,
            "resource": resource, "request": request, "expected": expected}


def with_(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    out = json.loads(json.dumps(base))
    out.update(changes)
    return out


PATCH_VECTORS: dict[str, dict[str, Any]] = {
    "rfc7644-3.5.2.1-patch-add-members": patch_vector(
        "RFC 7644 3.5.2.1", "add members to a group: a set operation, the group body untouched",
        "Group", NURSES, ops({"op": "add", "path": "members",
                              "value": [{"value": "u1", "display": "Ana"}, {"value": "u2"}]}),
        result=NURSES, members=[{"op": "add", "ids": ["u1", "u2"]}]),
    "rfc7644-3.5.2.1-patch-add-without-path": patch_vector(
        "RFC 7644 3.5.2.1", "add without path: each key of the value is an attribute",
        "User", ANA, ops({"op": "add", "value": {"title": "Nurse", "nickName": "Ana"}}),
        result=with_(ANA, title="Nurse", nickName="Ana")),
    "rfc7644-3.5.2.1-patch-add-multi-valued-appends": patch_vector(
        "RFC 7644 3.5.2.1", "add to a multi-valued attribute appends; a new primary value "
        "makes the others non-primary", "User", ANA,
        ops({"op": "add", "path": "emails",
             "value": [{"value": "ana@ward3.example", "type": "other", "primary": True}]}),
        result=with_(ANA, emails=[{"value": "ana@hospital.example", "type": "work"},
                                  {"value": "ana@home.example", "type": "home"},
                                  {"value": "ana@ward3.example", "type": "other",
                                   "primary": True}])),
    "rfc7644-3.5.2.1-patch-add-complex-merges": patch_vector(
        "RFC 7644 3.5.2.1", "add to a complex attribute merges its sub-attributes",
        "User", ANA, ops({"op": "add", "path": "name", "value": {"middleName": "M"}}),
        result=with_(ANA, name={"givenName": "Ana", "familyName": "Lima",
                                "middleName": "M"})),
    "rfc7644-3.5.2.1-patch-add-extension-attribute": patch_vector(
        "RFC 7644 3.5.2.1", "add an enterprise attribute by its full path", "User", ANA,
        ops({"op": "add", "path": f"{ENTERPRISE}:department", "value": "Ward 3"}),
        result=with_(ANA, **{ENTERPRISE: {"department": "Ward 3"}})),
    "rfc7644-3.5.2.2-patch-remove-member-by-filter": patch_vector(
        "RFC 7644 3.5.2.2", "remove one member by a value filter (Okta's form)", "Group",
        NURSES, ops({"op": "remove", "path": 'members[value eq "u1"]'}),
        result=NURSES, members=[{"op": "remove", "ids": ["u1"]}]),
    "rfc7644-3.5.2.2-patch-remove-all-members": patch_vector(
        "RFC 7644 3.5.2.2", "remove members without a filter removes them all", "Group",
        NURSES, ops({"op": "remove", "path": "members"}),
        result=NURSES, members=[{"op": "remove", "ids": None}]),
    "rfc7644-3.5.2.2-patch-remove-filtered-value": patch_vector(
        "RFC 7644 3.5.2.2", "remove the values a filter selects", "User", ANA,
        ops({"op": "remove", "path": 'emails[type eq "home"]'}),
        result=with_(ANA, emails=[ANA["emails"][0]])),
    "rfc7644-3.5.2.2-patch-remove-sub-attribute": patch_vector(
        "RFC 7644 3.5.2.2", "remove a sub-attribute of a complex attribute", "User", ANA,
        ops({"op": "remove", "path": "name.familyName"}),
        result=with_(ANA, name={"givenName": "Ana"})),
    "rfc7644-3.5.2.2-patch-remove-without-path-is-notarget": patch_vector(
        "RFC 7644 3.5.2.2", "remove without a path fails with noTarget", "User", ANA,
        ops({"op": "remove"}), error="noTarget", quirks="strict"),
    "rfc7644-3.5.2.2-patch-remove-required-is-invalid": patch_vector(
        "RFC 7644 3.5.2.2", "userName is required: removing it is refused", "User", ANA,
        ops({"op": "remove", "path": "userName"}), error="invalidValue"),
    "rfc7644-3.5.2.3-patch-replace-filtered-sub-attribute": patch_vector(
        "RFC 7644 3.5.2.3", "replace a sub-attribute of the values a filter selects",
        "User", ANA, ops({"op": "replace", "path": 'emails[type eq "work"].value',
                          "value": "ana.lima@hospital.example"}),
        result=with_(ANA, emails=[{"value": "ana.lima@hospital.example", "type": "work",
                                   "primary": True}, ANA["emails"][1]])),
    "rfc7644-3.5.2.3-patch-replace-unmatched-filter-is-notarget": patch_vector(
        "RFC 7644 3.5.2.3", "a filter that matches nothing is noTarget (RFC, strict)",
        "User", ANA, ops({"op": "replace", "path": 'emails[type eq "other"].value',
                          "value": "x@example.org"}), error="noTarget", quirks="strict"),
    "rfc7644-3.5.2.3-patch-replace-multi-valued-replaces-all": patch_vector(
        "RFC 7644 3.5.2.3", "replace a multi-valued attribute replaces every value", "User",
        ANA, ops({"op": "replace", "path": "emails", "value": [{"value": "new@x.example"}]}),
        result=with_(ANA, emails=[{"value": "new@x.example"}])),
    "rfc7644-3.5.2.3-patch-replace-complex-keeps-unspecified": patch_vector(
        "RFC 7644 3.5.2.3", "replace a complex attribute: unspecified sub-attributes stay",
        "User", ANA, ops({"op": "replace", "path": "name", "value": {"givenName": "Ann"}}),
        result=with_(ANA, name={"givenName": "Ann", "familyName": "Lima"})),
    "rfc7644-3.5.2.3-patch-replace-members": patch_vector(
        "RFC 7644 3.5.2.3", "replace members: the set becomes exactly the value", "Group",
        NURSES, ops({"op": "replace", "path": "members", "value": [{"value": "u3"}]}),
        result=NURSES, members=[{"op": "replace", "ids": ["u3"]}]),
    "rfc7644-3.5.2-patch-read-only-is-mutability": patch_vector(
        "RFC 7644 3.5.2", "groups of a User is read-only: mutability", "User", ANA,
        ops({"op": "add", "path": "groups", "value": [{"value": "g1"}]}), error="mutability"),
    "rfc7644-3.5.2-patch-unknown-attribute-is-invalidpath": patch_vector(
        "RFC 7644 3.5.2", "a path naming no attribute is invalidPath", "User", ANA,
        ops({"op": "replace", "path": "shoeSize", "value": "42"}), error="invalidPath"),
    "rfc7644-3.5.2-patch-bad-op-is-invalidsyntax": patch_vector(
        "RFC 7644 3.5.2", "an op other than add, remove, replace", "User", ANA,
        ops({"op": "move", "path": "title", "value": "x"}), error="invalidSyntax"),
    "rfc7644-3.5.2-patch-missing-schema-is-invalidsyntax": patch_vector(
        "RFC 7644 3.5.2", "a body without the PatchOp schema", "User", ANA,
        {"Operations": [{"op": "replace", "path": "title", "value": "x"}]},
        error="invalidSyntax"),
    "rfc7644-3.5.2-patch-attack-nested-value-filter": patch_vector(
        "RFC 7644 3.5.2", "attack: a value filter inside a value filter", "User", ANA,
        ops({"op": "remove", "path": 'emails[value[type eq "work"] pr]'}),
        error="invalidPath"),
    "rfc7644-3.5.2-patch-attack-deep-nesting": patch_vector(
        "RFC 7644 3.5.2", "attack: a path nested past the parser's depth limit", "User", ANA,
        ops({"op": "remove", "path": "emails[" + "(" * 40 + 'type eq "work"' + ")" * 40
             + "]"}), error="invalidPath"),
    "rfc7644-3.5.2-patch-members-sub-attribute-is-invalidpath": patch_vector(
        "RFC 7644 3.5.2", "members.display cannot be patched", "Group", NURSES,
        ops({"op": "replace", "path": "members.display", "value": "x"}),
        error="mutability"),
    "quirk-entra-op-any-case-boolean-strings": patch_vector(
        "Entra ID quirks op_any_case, boolean_strings", '"Replace" with "False"', "User",
        ANA, ops({"op": "Replace", "path": "active", "value": "False"}),
        result=with_(ANA, active=False)),
    "quirk-entra-op-any-case-strict-is-invalidsyntax": patch_vector(
        "Entra ID quirk op_any_case, off", '"Replace" is refused by the strict RFC reading',
        "User", ANA, ops({"op": "Replace", "path": "active", "value": False}),
        error="invalidSyntax", quirks="strict"),
    "quirk-entra-dotted-keys": patch_vector(
        "Entra ID quirk dotted_keys", "pathless replace whose keys are paths", "User", ANA,
        ops({"op": "Replace", "value": {"name.givenName": "Ann",
                                        f"{ENTERPRISE}:department": "Ward 3"}}),
        result=with_(ANA, name={"givenName": "Ann", "familyName": "Lima"},
                     **{ENTERPRISE: {"department": "Ward 3"}})),
    "quirk-entra-remove-member-value-list": patch_vector(
        "Entra ID quirk remove_value_list", "remove members named in the value", "Group",
        NURSES, ops({"op": "Remove", "path": "members",
                     "value": [{"value": "u1"}, {"value": "u2"}]}),
        result=NURSES, members=[{"op": "remove", "ids": ["u1", "u2"]}]),
    "quirk-entra-members-added-in-batches": patch_vector(
        "Entra ID", "several add operations of members in one PATCH, in order", "Group",
        NURSES, ops({"op": "Add", "path": "members", "value": [{"value": "u1"}]},
                    {"op": "Add", "path": "members", "value": [{"value": "u2"}]}),
        result=NURSES, members=[{"op": "add", "ids": ["u1"]}, {"op": "add", "ids": ["u2"]}]),
    "quirk-entra-create-unmatched-filter": patch_vector(
        "Entra ID quirk create_unmatched_filter", "add to an email type the user lacks",
        "User", ANA, ops({"op": "Add", "path": 'emails[type eq "other"].value',
                          "value": "ana@other.example"}),
        result=with_(ANA, emails=[*ANA["emails"],
                                  {"type": "other", "value": "ana@other.example"}])),
    "quirk-okta-active-false-pathless": patch_vector(
        "Okta (standard)", "Okta's deactivation: replace without path", "User", ANA,
        ops({"op": "replace", "value": {"active": False}}), result=with_(ANA, active=False)),
}


def resource_vector(section: str, description: str, kind: str, payload: dict[str, Any], *,
                    result: dict[str, Any] | None = None,
                    error: str | None = None) -> dict[str, Any]:
    return {"section": section, "description": description, "kind": kind,
            "payload": payload,
            "expected": {"error": error} if error else {"resource": result}}


RESOURCE_VECTORS: dict[str, dict[str, Any]] = {
    "rfc7643-4.1-user-minimal": resource_vector(
        "RFC 7643 4.1", "userName alone", "User", {"schemas": [USER], "userName": "bjensen"},
        result={"userName": "bjensen"}),
    "rfc7643-4.1-user-full-with-enterprise": resource_vector(
        "RFC 7643 4.1, 4.3", "a realistic user with the enterprise extension", "User",
        {"schemas": [USER, ENTERPRISE], "userName": "ana@hospital.example",
         "externalId": "00u1", "active": True, "displayName": "Ana Lima",
         "name": {"givenName": "Ana", "familyName": "Lima"},
         "emails": [{"value": "ana@hospital.example", "type": "work", "primary": True}],
         "phoneNumbers": [{"value": "+351 21 000 0000", "type": "work"}],
         ENTERPRISE: {"department": "Ward 3", "employeeNumber": "42"}},
        result={"userName": "ana@hospital.example", "externalId": "00u1", "active": True,
                "displayName": "Ana Lima", "name": {"givenName": "Ana", "familyName": "Lima"},
                "emails": [{"value": "ana@hospital.example", "type": "work",
                            "primary": True}],
                "phoneNumbers": [{"value": "+351 21 000 0000", "type": "work"}],
                ENTERPRISE: {"department": "Ward 3", "employeeNumber": "42"}}),
    "rfc7644-3.3-user-read-only-attributes-ignored": resource_vector(
        "RFC 7644 3.3", "id, meta and groups in a POST are ignored", "User",
        {"schemas": [USER], "userName": "bjensen", "id": "chosen-by-client",
         "meta": {"resourceType": "User"}, "groups": [{"value": "g1"}]},
        result={"userName": "bjensen"}),
    "rfc7644-3.3-user-nulls-are-unassigned": resource_vector(
        "RFC 7644 3.3", "null is the same as absent", "User",
        {"schemas": [USER], "userName": "bjensen", "title": None, "name": None},
        result={"userName": "bjensen"}),
    "rfc7643-4.1-user-unknown-attribute-is-invalidsyntax": resource_vector(
        "RFC 7643 4.1", "an attribute no schema defines", "User",
        {"schemas": [USER], "userName": "bjensen", "shoeSize": 42}, error="invalidSyntax"),
    "rfc7643-3-user-unknown-extension-is-ignored": resource_vector(
        "RFC 7643 3", "an extension URN the server does not support, beside the core schema, "
        "and the object under it: ignored", "User",
        {"schemas": [USER, "urn:example:params:scim:schemas:extension:hr:2.0"],
         "userName": "bjensen",
         "urn:example:params:scim:schemas:extension:hr:2.0": {"badge": "B-12"}},
        result={"userName": "bjensen"}),
    "rfc7643-3-group-entra-adscim-urn-is-ignored": resource_vector(
        "RFC 7643 3", "Entra ID's own Group schema URN beside the core one", "Group",
        {"schemas": [GROUP, "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/"
                            "2.0/Group"], "displayName": "Pharmacy", "externalId": "8aa1"},
        result={"displayName": "Pharmacy", "externalId": "8aa1"}),
    "rfc7643-3-user-without-the-core-schema-is-invalidsyntax": resource_vector(
        "RFC 7643 3", "only a schema URN the server does not know", "User",
        {"schemas": ["urn:example:evil"], "userName": "bjensen"}, error="invalidSyntax"),
    "rfc7643-3-user-undeclared-urn-attribute-is-invalidsyntax": resource_vector(
        "RFC 7643 3", "attributes under a URN that schemas does not declare", "User",
        {"schemas": [USER], "userName": "bjensen", "urn:example:evil": {"x": "1"}},
        error="invalidSyntax"),
    "rfc7643-4.1-user-missing-username-is-invalidvalue": resource_vector(
        "RFC 7643 4.1", "userName is required", "User",
        {"schemas": [USER], "displayName": "No Name"}, error="invalidValue"),
    "rfc7643-4.1-user-bad-email-is-invalidvalue": resource_vector(
        "RFC 7643 4.1.2", "an email value that is not an address", "User",
        {"schemas": [USER], "userName": "bjensen", "emails": [{"value": "not-an-email"}]},
        error="invalidValue"),
    "rfc7643-2.4-user-two-primary-values-is-invalidvalue": resource_vector(
        "RFC 7643 2.4", "primary true appears at most once", "User",
        {"schemas": [USER], "userName": "bjensen",
         "emails": [{"value": "a@x.example", "primary": True},
                    {"value": "b@x.example", "primary": True}]}, error="invalidValue"),
    "rfc7643-2.3.2-user-wrong-type-is-invalidvalue": resource_vector(
        "RFC 7643 2.3", "a complex attribute given as a string", "User",
        {"schemas": [USER], "userName": "bjensen", "name": "Barbara"}, error="invalidValue"),
    "rfc7643-4.2-group-with-members": resource_vector(
        "RFC 7643 4.2", "a group with members", "Group",
        {"schemas": [GROUP], "displayName": "Nurses",
         "members": [{"value": "u1"}, {"value": "u2"}]},
        result={"displayName": "Nurses", "members": [{"value": "u1"}, {"value": "u2"}]}),
    "rfc7643-4.2-group-missing-displayname-is-invalidvalue": resource_vector(
        "RFC 7643 4.2", "displayName is required", "Group", {"schemas": [GROUP]},
        error="invalidValue"),
    "quirk-entra-capitalised-attribute-names": resource_vector(
        "Entra ID", "attribute names are case-insensitive (RFC 7643 2.1): Entra capitalises",
        "User", {"schemas": [USER], "UserName": "UserName123", "Active": True,
                 "DisplayName": "BobIsAmazing",
                 "emails": [{"Primary": True, "type": "work", "value": "bob@x.example"}]},
        result={"userName": "UserName123", "active": True, "displayName": "BobIsAmazing",
                "emails": [{"primary": True, "type": "work", "value": "bob@x.example"}]}),
    "quirk-entra-manager-without-ref": resource_vector(
        "Entra ID quirk manager_without_ref", "manager without $ref", "User",
        {"schemas": [USER, ENTERPRISE], "userName": "u",
         ENTERPRISE: {"Department": "bob", "Manager": {"Value": "SuzzyQ"}}},
        result={"userName": "u", ENTERPRISE: {"department": "bob",
                                              "manager": {"value": "SuzzyQ"}}}),
}


def main() -> None:
    for name, vector in {**PATCH_VECTORS, **RESOURCE_VECTORS}.items():
        (HERE / f"{name}.json").write_text(json.dumps(vector, indent=2) + "\n")


if __name__ == "__main__":
    main()
