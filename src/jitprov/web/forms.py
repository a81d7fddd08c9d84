"""An urlencoded form read as ``urllib.parse.parse_qs`` reads it, faster for base64 values.

A SAMLResponse is 5-15 KB of base64 sent as a form field: percent-encoding leaves it as is
but for its ``+``, ``/`` and ``=``, escaped as ``%2B``, ``%2F`` and ``%3D``, a few hundred
times in one value. ``parse_qs`` unquotes it escape by escape (80-90 µs for 10 KB, read twice
in a SAML login on plain http: the bounce, then the ACS); three replacements give the same
text in about half that. Anything else (a ``+``, another escape, lower-case hex) goes to
``unquote_plus`` as ``parse_qs`` would: the shortcut declines when unsure, and a property test
holds it to ``parse_qs``.
"""

from __future__ import annotations

from collections.abc import Collection
from urllib.parse import unquote_plus

#: base64's characters that percent-encoding escapes, as ``urlencode`` writes them
_BASE64_ESCAPES = (("%2B", "+"), ("%2F", "/"), ("%3D", "="))


def form_fields(text: str, names: Collection[str], *, max_fields: int) -> dict[str, str]:
    """The first non-empty value of each of ``names`` in the urlencoded ``text``:
    ``{name: values[0] for name, values in parse_qs(text, max_num_fields=max_fields).items()
    if name in names}``. Raises ValueError past ``max_fields`` fields, as ``parse_qs``."""
    if text.count("&") + 1 > max_fields:
        raise ValueError("Max number of fields exceeded")
    found: dict[str, str] = {}
    for part in text.split("&"):
        name, equals, value = part.partition("=")
        if not equals or not value:  # parse_qs drops a field without a value
            continue
        name = _unquote(name)
        if name in names and name not in found:
            found[name] = _unquote(value)
    return found


def _unquote(text: str) -> str:
    """``unquote_plus(text)``; base64's three escapes by replacement when they are all."""
    if "+" not in text:
        if "%" not in text:
            return text
        plain = text
        for escaped, character in _BASE64_ESCAPES:
            plain = plain.replace(escaped, character)
        if "%" not in plain:
            return plain
    return unquote_plus(text)
