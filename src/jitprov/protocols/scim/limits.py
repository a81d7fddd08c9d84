"""What a SCIM string, list and resource may hold: the input rule of ``core.text`` (valid
Unicode, no NUL or other C0 control but tab/CR/LF) and size limits, checked on the request
body before anything else reads it, so a refusal is a 400 ``invalidValue`` naming the
attribute and nothing is stored.

The limits (documented in the README's SCIM section):

- a string value: at most :data:`MAX_STRING` characters (``userName``: 255, checked apart;
  ``x509Certificates`` values, base64 DER: :data:`MAX_CERTIFICATE`);
- a multi-valued attribute: at most :data:`MAX_VALUES` values, except a Group's ``members``
  (bounded by ``maxPayloadSize`` and stored as rows, never echoed whole in a list page);
- a whole resource: at most :data:`MAX_RESOURCE` characters of names and strings, ``members``
  aside.

With them a User renders in about 64 KiB at most; a list page is further cut at
:data:`MAX_PAGE_CHARS` of JSON (:func:`bounded_page`), so one response stays within a few MiB
whatever ``count`` asks for.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from jitprov.core.text import all_clean, shown, text_problem
from jitprov.protocols.scim.errors import InvalidFilter, InvalidValue

MAX_STRING = 1024
MAX_CERTIFICATE = 16 * 1024
MAX_VALUES = 100
MAX_RESOURCE = 64 * 1024
#: characters of resources in one list response; past it the page is cut short (a smaller
#: ``itemsPerPage``; the client asks for the next page from there, RFC 7644 section 3.4.2.4)
MAX_PAGE_CHARS = 8 * 1024 * 1024
MAX_FILTER = 8 * 1024

_LONGER = {"x509certificates": MAX_CERTIFICATE}
_UNCOUNTED = frozenset({"members"})
_SCALARS = (bool, int, float, type(None))


def surely_fine(payload: Any, *, max_values: int | None, max_total: int | None) -> bool:
    """The fast path of the checks below: True only when ``payload`` (parsed JSON) surely
    keeps every rule (no bad text, no string past :data:`MAX_STRING`, no list past
    ``max_values``, at most ``max_total`` characters of strings, keys included). It declines
    (False) when unsure: a longer certificate, a long ``members`` list, anything but JSON's
    types; the caller then walks the payload slowly and names what is wrong, if anything.
    Why: one scan of all strings joined costs about a third of a check per string."""
    strings: list[str] = []
    stack: list[Any] = [payload]
    values: Iterable[Any]
    try:
        while stack:
            item = stack.pop()
            kind = type(item)
            if kind is dict:
                strings.extend(item)
                values = item.values()
            elif kind is list:
                if max_values is not None and len(item) > max_values:
                    return False
                values = item
            else:
                return False
            for value in values:
                if type(value) is str:
                    strings.append(value)
                elif type(value) not in _SCALARS:
                    stack.append(value)
        if max(map(len, strings), default=0) > MAX_STRING:
            return False
        if max_total is not None and sum(map(len, strings)) > max_total:
            return False
        return all_clean(strings)
    except TypeError:  # a key that is not a string: not JSON
        return False


class _Walk:
    """One pass over a JSON body: every string checked, sizes added up."""

    __slots__ = ("size",)

    def __init__(self) -> None:
        self.size = 0

    def value(self, value: Any, where: str, top: str, *, counted: bool = True) -> None:
        if isinstance(value, str):
            self.string(value, where, _LONGER.get(top, MAX_STRING), counted=counted)
        elif isinstance(value, Mapping):
            for key, item in value.items():
                name = f"{where}.{key}" if where else str(key)
                if isinstance(key, str):
                    self.string(key, name, MAX_STRING, counted=counted)
                self.value(item, name, top or str(key).lower(), counted=counted)
        elif isinstance(value, list):
            if top not in _UNCOUNTED and len(value) > MAX_VALUES:
                raise InvalidValue(f"{shown(where)} has more than {MAX_VALUES} values")
            for item in value:
                self.value(item, where, top, counted=counted)

    def string(self, value: str, where: str, limit: int, *, counted: bool) -> None:
        problem = text_problem(value)
        if problem is not None:
            raise InvalidValue(f"{shown(where) or 'a value'} {problem}")
        if len(value) > limit:
            raise InvalidValue(f"{shown(where)} is longer than {limit} characters")
        if counted:
            self.size += len(value)


def check_resource(kind: str, payload: Mapping[str, Any]) -> None:
    """Refuse a User or Group body (POST, PUT, a PATCH's result, a Bulk operation's data)
    holding bad text, an oversized string or list, or more than :data:`MAX_RESOURCE`
    characters. An extension's attributes are named ``urn:...:User:department``."""
    if not surely_fine(payload, max_values=MAX_VALUES, max_total=MAX_RESOURCE):
        walk_resource(kind, payload)


def walk_resource(kind: str, payload: Mapping[str, Any]) -> None:
    """:func:`check_resource` the slow way: string by string, naming the first bad one."""
    walk = _Walk()
    for key, value in payload.items():
        if not isinstance(key, str):
            continue
        walk.string(key, key, MAX_STRING, counted=True)
        lowered = key.lower()
        if lowered.startswith("urn:") and isinstance(value, Mapping):
            for sub_key, sub_value in value.items():
                name = f"{key}:{sub_key}"
                walk.string(str(sub_key), name, MAX_STRING, counted=True)
                walk.value(sub_value, name, str(sub_key).lower())
            continue
        walk.value(value, key, lowered, counted=lowered not in _UNCOUNTED)
    if walk.size > MAX_RESOURCE:
        raise InvalidValue(f"the {kind} is larger than {MAX_RESOURCE} characters")


def check_patch_text(operations: list[Any]) -> None:
    """Refuse PATCH operations holding bad text or oversized strings (the result is checked
    again as a resource by the caller); ``members`` values are not counted."""
    if not surely_fine(operations, max_values=None, max_total=None):
        walk_patch_text(operations)


def walk_patch_text(operations: list[Any]) -> None:
    """:func:`check_patch_text` the slow way, naming the first bad string."""
    walk = _Walk()
    for index, op in enumerate(operations):
        walk.value(op, f"Operations[{index}]", "members", counted=False)


def bounded_page(bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The leading resources of a list page that fit in :data:`MAX_PAGE_CHARS` of JSON (at
    least one): the ListResponse then says so with a smaller ``itemsPerPage``, and the client
    asks for the next page from there."""
    total = 0
    for index, body in enumerate(bodies):
        total += len(json.dumps(body, ensure_ascii=False, separators=(",", ":")))
        if total > MAX_PAGE_CHARS and index > 0:
            return bodies[:index]
    return bodies


def check_filter(text: str) -> str:
    """A filter string: the input rule, and at most :data:`MAX_FILTER` characters. Raises
    InvalidFilter."""
    problem = text_problem(text)
    if problem is not None:
        raise InvalidFilter(f"the filter {problem}")
    if len(text) > MAX_FILTER:
        raise InvalidFilter(f"the filter is longer than {MAX_FILTER} characters")
    return text
