"""SCIM filters and PATCH paths (RFC 7644 §3.4.2.2, §3.5.2): text -> AST, with errors that name
the offset of the problem."""

from __future__ import annotations

import json
from pathlib import Path as FilePath
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jitprov.protocols.scim.filter import (
    MAX_DEPTH,
    MAX_FILTER_LENGTH,
    MAX_TERMS,
    And,
    AttrPath,
    Compare,
    Filter,
    FilterError,
    Not,
    Or,
    Path,
    Present,
    ValuePath,
    parse_filter,
    parse_path,
)

VECTORS = FilePath(__file__).parent.parent / "vectors" / "scim"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


def as_tree(node: Filter) -> Any:
    """The AST in the vectors' JSON form."""
    if isinstance(node, And | Or):
        return {node.kind: [as_tree(node.left), as_tree(node.right)]}
    if isinstance(node, Not):
        return {"not": as_tree(node.operand)}
    if isinstance(node, Present):
        return {"present": str(node.path)}
    if isinstance(node, Compare):
        return {"compare": [str(node.path), node.op, node.value]}
    return {"value_path": [str(node.path), as_tree(node.filter)]}


def load(name: str) -> list[dict[str, Any]]:
    vectors: list[dict[str, Any]] = json.loads((VECTORS / name).read_text())["vectors"]
    return vectors


@pytest.mark.parametrize("vector", load("rfc7644-3.4.2.2-filters.json"),
                         ids=lambda v: v["name"])
def test_parses_the_rfc_7644_3_4_2_2_example_filters(vector: dict[str, Any]) -> None:
    assert vector["ast"] == as_tree(parse_filter(vector["filter"]))


@pytest.mark.parametrize("vector", load("rfc7644-3.4.2.2-invalid-filters.json"),
                         ids=lambda v: v["name"])
def test_refuses_invalid_filters_naming_the_offset(vector: dict[str, Any]) -> None:
    with pytest.raises(FilterError) as refused:
        parse_filter(vector["filter"])

    assert (vector["position"], vector["message"]) == (refused.value.position,
                                                       refused.value.message)
    assert str(refused.value).endswith(f"at offset {vector['position']}")


USER_NAME = AttrPath("userName")


@pytest.mark.parametrize("op", ["eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le"])
def test_parses_every_comparison_operator_in_any_case(op: str) -> None:
    expected = Compare(USER_NAME, op, "x")  # type: ignore[arg-type]

    assert expected == parse_filter(f'userName {op} "x"')
    assert expected == parse_filter(f'userName {op.upper()} "x"')


@pytest.mark.parametrize(("text", "value"), [
    ('"a\\"b\\\\c\\u00e9\\n"', 'a"b\\c\u00e9\n'),
    ("true", True), ("False", False), ("NULL", None), ("42", 42), ("-1.5", -1.5),
    ("1e3", 1000.0), ('""', ""),
])
def test_values_are_json(text: str, value: object) -> None:
    parsed = parse_filter(f"x eq {text}")

    assert isinstance(parsed, Compare)
    assert (value, type(value)) == (parsed.value, type(parsed.value))


def test_and_binds_tighter_than_or() -> None:
    a, b, c = (Present(AttrPath(n)) for n in "abc")

    assert Or(a, And(b, c)) == parse_filter("a pr or b pr and c pr")
    assert Or(And(a, b), c) == parse_filter("a pr and b pr or c pr")
    assert And(Or(a, b), c) == parse_filter("(a pr or b pr) and c pr")
    assert Or(Or(a, b), c) == parse_filter("a pr or b pr or c pr")


def test_not_negates_a_parenthesised_filter() -> None:
    a, b = Present(AttrPath("a")), Present(AttrPath("b"))

    assert And(Not(Or(a, b)), a) == parse_filter("not (a pr or b pr) and a pr")
    assert Not(a) == parse_filter("NOT(a pr)")
    assert Not(Not(a)) == parse_filter("not (not (a pr))")


def test_words_that_are_also_keywords_can_be_attribute_names() -> None:
    assert Present(AttrPath("not")) == parse_filter("not pr")
    assert Compare(AttrPath("and"), "eq", "or") == parse_filter('and eq "or"')
    assert And(Present(AttrPath("order")), Present(AttrPath("notes"))) == parse_filter(
        "order pr and notes pr")


def test_attribute_paths_take_a_schema_urn_and_a_sub_attribute() -> None:
    parsed = parse_filter(f'{ENTERPRISE}:manager.value eq "26118915-6090-4610-87e4-49d8ca9f808d"')

    assert Compare(AttrPath("manager", "value", ENTERPRISE), "eq",
                   "26118915-6090-4610-87e4-49d8ca9f808d") == parsed
    assert Compare(AttrPath("name", "familyName", "urn:ietf:params:scim:schemas:core:2.0:User"),
                   "co", "O'Malley") == parse_filter(
        "urn:ietf:params:scim:schemas:core:2.0:User:name.familyName co \"O'Malley\"")
    assert Present(AttrPath("lastModified", None, "urn:example:v1.0:Meta")) == parse_filter(
        "urn:example:v1.0:Meta:lastModified pr")


def test_complex_attribute_filters_hold_a_logical_expression() -> None:
    parsed = parse_filter('emails[type eq "work" and not (value ew ".org")] or members pr')

    assert Or(ValuePath(AttrPath("emails"), And(
        Compare(AttrPath("type"), "eq", "work"),
        Not(Compare(AttrPath("value"), "ew", ".org")))),
        Present(AttrPath("members"))) == parsed


def test_whitespace_between_tokens_is_free() -> None:
    assert And(Present(AttrPath("a")), Present(AttrPath("b"))) == parse_filter(
        "  ( a   pr )\tand\n( b pr )  ")


def test_limits_refuse_oversized_and_deeply_nested_filters() -> None:
    with pytest.raises(FilterError, match="longer than"):
        parse_filter('a eq "' + "x" * MAX_FILTER_LENGTH + '"')
    with pytest.raises(FilterError, match="nested deeper") as deep:
        parse_filter("(" * (MAX_DEPTH + 1) + "a pr" + ")" * (MAX_DEPTH + 1))
    assert MAX_DEPTH == deep.value.position
    with pytest.raises(FilterError, match="comparisons"):
        parse_filter(" or ".join(["a pr"] * (MAX_TERMS + 1)))
    parse_filter("(" * MAX_DEPTH + "a pr" + ")" * MAX_DEPTH)
    parse_filter(" or ".join(["a pr"] * MAX_TERMS))


# -- PATCH paths (RFC 7644 §3.5.2) --------------------------------------------------------------
@pytest.mark.parametrize(("text", "expected"), [
    ("userName", Path(AttrPath("userName"))),
    ("name.givenName", Path(AttrPath("name"), None, "givenName")),
    ('members[value eq "2819c223"]',
     Path(AttrPath("members"), Compare(AttrPath("value"), "eq", "2819c223"))),
    ('emails[type eq "work"].value',
     Path(AttrPath("emails"), Compare(AttrPath("type"), "eq", "work"), "value")),
    ('addresses[type eq "work" and primary eq true].streetAddress',
     Path(AttrPath("addresses"), And(Compare(AttrPath("type"), "eq", "work"),
                                     Compare(AttrPath("primary"), "eq", True)),
          "streetAddress")),
    (f"{ENTERPRISE}:manager",
     Path(AttrPath("manager", None, ENTERPRISE))),
    (f"{ENTERPRISE}:manager.value",
     Path(AttrPath("manager", None, ENTERPRISE), None, "value")),
    ("urn:ietf:params:scim:schemas:core:2.0:User:name.familyName",
     Path(AttrPath("name", None, "urn:ietf:params:scim:schemas:core:2.0:User"), None,
          "familyName")),
])
def test_parses_patch_paths_of_rfc_7644_3_5_2(text: str, expected: Path) -> None:
    assert expected == parse_path(text)


@pytest.mark.parametrize(("text", "position"), [
    ("", 0), ("members[", 8), ('members[value eq "x"', 20), ('members[value eq "x"].', 22),
    ('members[value eq "x"] extra', 22), ("name.givenName.x", 14),
    ('name.givenName[value eq "x"]', 0),
])
def test_refuses_bad_patch_paths(text: str, position: int) -> None:
    with pytest.raises(FilterError) as refused:
        parse_path(text)

    assert position == refused.value.position


def test_refuses_a_nul_in_a_string_value() -> None:
    # no stored value can hold one (PostgreSQL text cannot): a clear 400, not a database error
    with pytest.raises(FilterError, match="NUL") as refused:
        parse_filter('userName eq "a\\u0000b"')

    assert refused.value.position == 12


@pytest.mark.parametrize("escaped", ["\\ud800", "\\udc00", "\\u0001", "\\u001f", "\\b"])
def test_refuses_a_lone_surrogate_or_control_character_spelled_as_an_escape(
        escaped: str) -> None:
    # the text rule of core.text, on the decoded string: the raw filter text is clean ASCII
    with pytest.raises(FilterError, match=r"surrogate|control character") as refused:
        parse_filter(f'title eq "a{escaped}b"')

    assert refused.value.position == 9
    assert parse_filter('title eq "a\\tb"') == Compare(
        AttrPath("title", None, None), "eq", "a\tb")


# -- round trip: any AST, printed, parses back to itself ---------------------------------------
_NAMES = st.sampled_from(["userName", "title", "emails", "name", "x-1", "not", "and", "$ref"])
_PATHS = st.builds(AttrPath, _NAMES, st.none() | st.sampled_from(["value", "familyName"]),
                   st.none() | st.just(ENTERPRISE))
_VALUES = st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.text(
    st.characters(codec="utf-8").filter(lambda c: c >= " " or c in "\t\n\r"),
    max_size=8)  # NUL, other C0 controls, lone surrogates: refused, below
_OPS = st.sampled_from(["eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le"])
_ATOMS = st.builds(Compare, _PATHS, _OPS, _VALUES) | st.builds(Present, _PATHS)
_FILTERS = st.recursive(
    _ATOMS | st.builds(ValuePath, st.builds(AttrPath, _NAMES), _ATOMS),
    lambda c: st.builds(And, c, c) | st.builds(Or, c, c) | st.builds(Not, c), max_leaves=8)


def render(node: Filter) -> str:
    """A fully parenthesised text for ``node``."""
    if isinstance(node, And | Or):
        return f"({render(node.left)}) {node.kind} ({render(node.right)})"
    if isinstance(node, Not):
        return f"not ({render(node.operand)})"
    if isinstance(node, Present):
        return f"{node.path} pr"
    if isinstance(node, Compare):
        return f"{node.path} {node.op} {json.dumps(node.value)}"
    return f"{node.path}[{render(node.filter)}]"


@given(_FILTERS)
def test_a_printed_filter_parses_back_to_the_same_ast(node: Filter) -> None:
    assert node == parse_filter(render(node))


@given(st.text(max_size=40))
def test_any_text_parses_or_fails_with_a_filter_error(text: str) -> None:
    try:
        parse_filter(text)
    except FilterError as err:
        assert 0 <= err.position <= len(text)
