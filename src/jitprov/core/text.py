"""The one input rule for text that enters jitprov, and the safety net for text already stored.

A string is acceptable when it holds Unicode scalar values only (no lone surrogate: JSON's
``"\\ud800"`` decodes to one, and neither UTF-8 nor PostgreSQL can hold it) and no C0 control
character, except tab, CR and LF where the field is free text (``multiline``). NUL is refused
everywhere: PostgreSQL's text and ``->>`` cannot carry it, and no identity attribute needs it.

Every entry point (SCIM bodies and filters, the admin API, console forms, IdP claims, mapping
files, the CLI) calls :func:`check_text` or :func:`check_tree` and renders the
:class:`InvalidText` it raises in its protocol's words. Reads call :func:`safe_tree` only
when rendering fails, so a row written before this rule still reads (lone surrogates become
U+FFFD in the answer; the row itself is left for ``jitprov doctor``-style repair).

Pure: no I/O; one precompiled regular expression per rule, so a check costs one scan.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from jitprov.core.errors import InvalidInput

#: lone surrogates and every C0 control but tab, LF and CR
_BAD_TEXT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff]")
#: the same, tab/LF/CR included: for names, identifiers, paths
_BAD_LINE = re.compile("[\x00-\x1f\ud800-\udfff]")
_SURROGATE = re.compile("[\ud800-\udfff]")


class InvalidText(InvalidInput):
    """A string that breaks the input rule. ``field`` names where it was (an attribute path,
    a form field, a claim); ``str(err)`` is a sentence fit for any protocol's error body."""

    code = "invalid_text"

    def __init__(self, field: str, reason: str) -> None:
        self.field = shown(field)
        self.reason = reason
        super().__init__(f"{self.field}: {reason}")


def shown(name: str) -> str:
    """``name`` (a field or attribute path, which may be the bad text itself) with every
    character the rule refuses spelled ``\\uXXXX``: safe in any error message or log."""
    return _BAD_LINE.sub(lambda m: f"\\u{ord(m.group()):04x}", name)


def text_problem(value: str, *, multiline: bool = True) -> str | None:
    """Why ``value`` breaks the rule, or None when it does not."""
    found = (_BAD_TEXT if multiline else _BAD_LINE).search(value)
    if found is None:
        return None
    char = found.group()
    if "\ud800" <= char <= "\udfff":
        return "contains an invalid Unicode character (a lone surrogate)"
    if char == "\x00":
        return "contains a NUL character"
    return f"contains a control character (U+{ord(char):04X})"


def all_clean(values: list[str]) -> bool:
    """Whether every string of ``values`` keeps the rule (free text: tab, CR and LF allowed):
    one scan of them joined, for a caller that checks many strings and needs no name unless
    one is bad (it then looks again, one by one, with :func:`text_problem`)."""
    return _BAD_TEXT.search("".join(values)) is None


def check_text(value: str, field: str, *, multiline: bool = True,
               max_chars: int | None = None) -> str:
    """``value`` unchanged, or InvalidText naming ``field``."""
    problem = text_problem(value, multiline=multiline)
    if problem is not None:
        raise InvalidText(field, problem)
    if max_chars is not None and len(value) > max_chars:
        raise InvalidText(field, f"is longer than {max_chars} characters")
    return value


def check_tree(value: Any, field: str, *, max_chars: int | None = None,
               max_items: int | None = None) -> None:
    """Check every string of a JSON value (object keys included), naming the first bad one by
    its dotted path under ``field``; ``max_items`` bounds every list. A container met twice
    (a YAML alias) is checked once, so an alias bomb costs its size, not its expansion."""
    seen: set[int] = set()
    stack: list[tuple[Any, str]] = [(value, field)]
    while stack:
        item, name = stack.pop()
        if isinstance(item, str):
            check_text(item, name, max_chars=max_chars)
            continue
        if not isinstance(item, Mapping | list):
            continue
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, Mapping):
            children = []
            for key, child in item.items():
                path = f"{name}.{key}" if name else str(key)
                if isinstance(key, str):
                    check_text(key, path, multiline=False, max_chars=max_chars)
                children.append((child, path))
            stack.extend(reversed(children))
        else:
            if max_items is not None and len(item) > max_items:
                raise InvalidText(name, f"has more than {max_items} values")
            stack.extend((child, name) for child in reversed(item))


def safe_text(value: str) -> str:
    """``value`` with lone surrogates replaced by U+FFFD: encodable as UTF-8, for display."""
    return _SURROGATE.sub("\ufffd", value)


def safe_tree(value: Any) -> Any:
    """A JSON value with :func:`safe_text` applied to every string (keys included)."""
    if isinstance(value, str):
        return safe_text(value)
    if isinstance(value, Mapping):
        return {safe_tree(k): safe_tree(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [safe_tree(v) for v in value]
    return value
