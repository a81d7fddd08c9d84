"""SCIM filters (RFC 7644 §3.4.2.2) and PATCH paths (RFC 7644 §3.5.2): text -> a small AST.

Pure: no I/O. ``parse_filter`` reads the ``filter`` query parameter; ``parse_path`` reads a
PATCH operation's ``path``. Both raise :class:`FilterError` (the service answers 400
``scimType: invalidFilter``, or ``invalidPath`` for a path) naming the offset of the problem.

The grammar, from the RFC's ABNF (§3.4.2.2), with parentheses for grouping::

    FILTER    = orExp
    orExp     = andExp *("or" andExp)                  ; "and" binds tighter than "or"
    andExp    = unary *("and" unary)
    unary     = "not" "(" FILTER ")" / "(" FILTER ")" / valuePath / attrExp
    valuePath = attrPath "[" valFilter "]"             ; valFilter: a FILTER without valuePath
    attrExp   = attrPath "pr" / attrPath compareOp compValue
    attrPath  = [URI ":"] ATTRNAME *1("." ATTRNAME)
    compValue = "false" / "null" / "true" / number / string   ; JSON (RFC 8259)
    PATH      = attrPath / valuePath ["." ATTRNAME]

Operators and the words ``and``, ``or``, ``not``, ``true``, ``false``, ``null`` are
case-insensitive (§3.4.2.2: "Attribute names and attribute operators used in filters are case
insensitive"); operators are lower-cased in the AST, attribute names are kept as written (the
store resolves them case-insensitively).

Every node has a ``kind`` field (``"compare"``, ``"present"``, ``"and"``, ``"or"``, ``"not"``,
``"value_path"``): the store reads the AST structurally, as ``store/`` and ``protocols/`` do not
import each other.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Literal

from jitprov.core.errors import InvalidInput
from jitprov.core.text import text_problem

#: characters; a longer filter is refused before it is parsed
MAX_FILTER_LENGTH = 4096
#: nested parentheses, ``not (...)`` and ``[...]``
MAX_DEPTH = 16
#: attribute expressions (``attr op value`` / ``attr pr``) in one filter
MAX_TERMS = 100

CompareOp = Literal["eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le"]
Value = str | int | float | bool | None

COMPARE_OPS: frozenset[str] = frozenset({"eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le"})


class FilterError(InvalidInput):
    """A filter or path that cannot be parsed. ``position`` is the 0-based offset of the
    problem in the text; ``str(err)`` reads ``<message> at offset <n>``."""

    code = "invalid_filter"

    def __init__(self, message: str, position: int) -> None:
        self.message = message
        self.position = position
        super().__init__(f"{message} at offset {position}")


@dataclass(frozen=True, slots=True)
class AttrPath:
    """``[schema:]attribute[.sub_attribute]``, e.g. ``name.familyName``,
    ``urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value``."""

    attribute: str
    sub_attribute: str | None = None
    #: the schema URN prefix as written, or None
    schema: str | None = None

    def __str__(self) -> str:
        prefix = f"{self.schema}:" if self.schema else ""
        suffix = f".{self.sub_attribute}" if self.sub_attribute else ""
        return f"{prefix}{self.attribute}{suffix}"


@dataclass(frozen=True, slots=True)
class Compare:
    """``path op value``."""

    path: AttrPath
    op: CompareOp
    value: Value
    kind: Literal["compare"] = field(default="compare", init=False, repr=False)


@dataclass(frozen=True, slots=True)
class Present:
    """``path pr``."""

    path: AttrPath
    kind: Literal["present"] = field(default="present", init=False, repr=False)


@dataclass(frozen=True, slots=True)
class And:
    left: Filter
    right: Filter
    kind: Literal["and"] = field(default="and", init=False, repr=False)


@dataclass(frozen=True, slots=True)
class Or:
    left: Filter
    right: Filter
    kind: Literal["or"] = field(default="or", init=False, repr=False)


@dataclass(frozen=True, slots=True)
class Not:
    operand: Filter
    kind: Literal["not"] = field(default="not", init=False, repr=False)


@dataclass(frozen=True, slots=True)
class ValuePath:
    """``attribute[filter]``: some value of the multi-valued ``attribute`` matches
    ``filter``, whose paths name sub-attributes of one value (``type``, ``value``)."""

    path: AttrPath
    filter: Filter
    kind: Literal["value_path"] = field(default="value_path", init=False, repr=False)


Filter = Compare | Present | And | Or | Not | ValuePath


@dataclass(frozen=True, slots=True)
class Path:
    """A PATCH ``path`` (RFC 7644 §3.5.2): ``attribute`` (its ``sub_attribute`` is always
    None here), an optional value filter, and an optional sub-attribute.

    ``name.givenName`` -> ``Path(AttrPath("name"), None, "givenName")``;
    ``emails[type eq "work"].value`` -> ``Path(AttrPath("emails"), Compare(...), "value")``.
    """

    attribute: AttrPath
    value_filter: Filter | None = None
    sub_attribute: str | None = None


def parse_filter(text: str) -> Filter:
    """Parse a filter. Raises FilterError."""
    parser = _Parser(text)
    result = parser.parse_or()
    parser.skip_space()
    if not parser.at_end():
        parser.fail("expected 'and', 'or' or the end of the filter")
    return result


def parse_path(text: str) -> Path:
    """Parse a PATCH path. Raises FilterError."""
    parser = _Parser(text)
    parser.skip_space()
    start = parser.pos
    attr = parser.attr_path()
    value_filter: Filter | None = None
    sub: str | None = None
    if parser.peek() == "[":
        if attr.sub_attribute is not None:
            parser.fail("a value filter follows an attribute, not a sub-attribute", start)
        value_filter = parser.bracket()
        if parser.peek() == ".":
            parser.pos += 1
            sub = parser.name()
    elif attr.sub_attribute is not None:
        attr, sub = AttrPath(attr.attribute, None, attr.schema), attr.sub_attribute
    parser.skip_space()
    if not parser.at_end():
        parser.fail("unexpected text after the path")
    return Path(attr, value_filter, sub)


_SPACE = re.compile(r"[ \t\r\n]*")
_NAME = re.compile(r"[A-Za-z$][A-Za-z0-9_$-]*")
_WORD = re.compile(r"[A-Za-z]+")
# a schema URN prefix: urn:<segments with dots>: then the attribute; attribute names hold no ':'
_URN = re.compile(r"urn:[A-Za-z0-9._~%!$&'()*+,;=:@/-]*:", re.IGNORECASE)
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")
_DECODER = json.JSONDecoder()


class _Parser:
    def __init__(self, text: str) -> None:
        if len(text) > MAX_FILTER_LENGTH:
            raise FilterError(f"longer than {MAX_FILTER_LENGTH} characters", MAX_FILTER_LENGTH)
        self.text = text
        self.pos = 0
        self.depth = 0
        self.terms = 0
        self.in_value_path = False

    # -- helpers --------------------------------------------------------------------------------
    def fail(self, message: str, position: int | None = None) -> None:
        raise FilterError(message, self.pos if position is None else position)

    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def skip_space(self) -> None:
        match = _SPACE.match(self.text, self.pos)
        assert match is not None  # noqa: S101 (matches the empty string)
        self.pos = match.end()

    def word(self) -> str:
        """The next word, lower-cased, without consuming it ('' if none)."""
        match = _WORD.match(self.text, self.pos)
        if match is None:
            return ""
        end = match.end()
        if end < len(self.text) and (self.text[end].isalnum() or self.text[end] in "_-$.:["):
            return ""  # part of a longer name, not a keyword
        return match.group().lower()

    def take_word(self, word: str) -> bool:
        if self.word() == word:
            self.pos += len(word)
            return True
        return False

    def enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            self.fail(f"nested deeper than {MAX_DEPTH} levels")

    # -- grammar --------------------------------------------------------------------------------
    def parse_or(self) -> Filter:
        left = self.parse_and()
        while True:
            self.skip_space()
            if not self.take_word("or"):
                return left
            left = Or(left, self.parse_and())

    def parse_and(self) -> Filter:
        left = self.parse_unary()
        while True:
            self.skip_space()
            if not self.take_word("and"):
                return left
            left = And(left, self.parse_unary())

    def parse_unary(self) -> Filter:
        self.skip_space()
        if self.at_end():
            self.fail("expected an attribute, 'not' or '('")
        start = self.pos
        if self.word() == "not":
            self.pos += 3
            self.skip_space()
            if self.peek() == "(":
                return Not(self.group())
            if self.word() not in COMPARE_OPS | {"pr"}:
                self.fail("expected '(' after 'not'")
            self.pos = start  # an attribute named "not"
        if self.peek() == "(":
            return self.group()
        path = self.attr_path()
        if self.peek() == "[":
            if self.in_value_path:
                self.fail("a value filter cannot hold another value filter")
            if path.sub_attribute is not None:
                self.fail("a value filter follows an attribute, not a sub-attribute")
            return ValuePath(path, self.bracket())
        return self.attr_exp(path)

    def group(self) -> Filter:
        """``( FILTER )``, at the opening parenthesis."""
        self.enter()
        self.pos += 1
        inner = self.parse_or()
        self.skip_space()
        if self.peek() != ")":
            self.fail("expected ')'")
        self.pos += 1
        self.depth -= 1
        return inner

    def bracket(self) -> Filter:
        """``[ valFilter ]``, at the opening bracket."""
        self.enter()
        self.pos += 1
        self.in_value_path = True
        inner = self.parse_or()
        self.in_value_path = False
        self.skip_space()
        if self.peek() != "]":
            self.fail("expected ']'")
        self.pos += 1
        self.depth -= 1
        return inner

    def name(self) -> str:
        match = _NAME.match(self.text, self.pos)
        if match is None:
            self.fail("expected an attribute name")
            raise AssertionError  # unreachable: fail() raises
        self.pos = match.end()
        return match.group()

    def attr_path(self) -> AttrPath:
        schema: str | None = None
        urn = _URN.match(self.text, self.pos)
        if urn is not None:
            # the URN runs to the last ':' before the attribute name (URNs hold dots: "2.0")
            schema = urn.group()[:-1]
            self.pos = urn.end()
        attribute = self.name()
        sub: str | None = None
        if self.peek() == ".":
            self.pos += 1
            sub = self.name()
        return AttrPath(attribute, sub, schema)

    def attr_exp(self, path: AttrPath) -> Filter:
        self.terms += 1
        if self.terms > MAX_TERMS:
            self.fail(f"more than {MAX_TERMS} comparisons")
        if not self.peek().isspace():
            self.fail("expected a space and an operator after the attribute")
        self.skip_space()
        op_at = self.pos
        op = self.word()
        if op == "pr":
            self.pos += 2
            return Present(path)
        if op not in COMPARE_OPS:
            self.fail("expected an operator (eq ne co sw ew pr gt ge lt le)", op_at)
        self.pos += 2
        if not self.peek().isspace():
            self.fail("expected a space and a value after the operator")
        self.skip_space()
        return Compare(path, op, self.value())  # type: ignore[arg-type]  # checked above

    def value(self) -> Value:
        start = self.pos
        char = self.peek()
        if char == '"':
            try:
                text, end = _DECODER.raw_decode(self.text, self.pos)
            except json.JSONDecodeError as exc:
                what = ("unterminated string" if exc.msg.startswith("Unterminated")
                        else f"bad string ({exc.msg.removesuffix(' at').lower()})")
                self.fail(what, exc.pos)
            if "\x00" in text:  # no stored value holds one (PostgreSQL text cannot)
                self.fail("a string may not contain NUL (\\u0000)", start)
            problem = text_problem(text)  # an escaped lone surrogate or control character
            if problem is not None:
                self.fail(f"the string {problem}", start)
            self.pos = end
            return str(text)
        word = self.word()
        if word in ("true", "false", "null"):
            self.pos += len(word)
            return {"true": True, "false": False, "null": None}[word]
        number = _NUMBER.match(self.text, self.pos)
        if number is not None and number.end() > start:
            end = number.end()
            if end < len(self.text) and (self.text[end].isalnum() or self.text[end] in "._"):
                self.fail("bad number", start)
            self.pos = end
            if number.group(1) or number.group(2):
                return float(number.group())
            return int(number.group())
        self.fail("expected a value: a JSON string, number, true, false or null", start)
        raise AssertionError  # unreachable
