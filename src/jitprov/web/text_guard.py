"""The input rule of ``core.text`` at the HTTP edge: every path, query string, form field and
JSON body (the admin API, the console's forms, the device and break-glass pages) is checked
before a route sees it; bad text is a 400 in the caller's shape (JSON on ``/api``, a readable
page elsewhere), naming the field, and nothing is stored.

Forms are checked as the routes read them (Starlette's ``request.form()``): URL-encoded or
``multipart/form-data``, parsed by Starlette's own multipart parser (the same limits, the
same decoding), whose text fields and field names are checked; a file part's name and
content are a route's to judge (no route takes files today). The media type is that of the
first ``Content-Type`` header, the one Starlette reads.

SCIM is left to its routes, which answer in SCIM's words (``invalidValue`` naming the
attribute, ``invalidFilter``). A body larger than :data:`MAX_CHECKED` bytes is passed on
unchecked: the routes that take such bodies bound them themselves, and the services check
what they keep.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncGenerator, Callable
from typing import Any
from urllib.parse import parse_qsl

from starlette.datastructures import Headers
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from jitprov.core.text import InvalidText, check_text, check_tree
from jitprov.web.errors import render_error

MAX_CHECKED = 4 * 1024 * 1024
_FORM = "application/x-www-form-urlencoded"
_JSON = "application/json"
_MULTIPART = "multipart/form-data"


#: fields whose text a parser with line-accurate errors checks itself (the mapping YAML: the
#: editor shows where a bad character is; ``load_policy`` refuses it, escapes included)
OWN_CHECK = frozenset({"mapping"})

#: what URL-encoded text (a query string, a form body) needs to decode to a character the rule
#: refuses: a C0 control as is, or percent-encoded. Decoding replaces invalid UTF-8 (no lone
#: surrogate can come out of it), so text without either decodes to clean names and values
#: and needs no parsing here; text with one is parsed and checked field by field.
_MAYBE_BAD = re.compile(r"[\x00-\x1f]|%[01][0-9A-Fa-f]")
#: the same for a body, in two scans: one alternation tries both branches at every byte, ten
#: times slower on a SAMLResponse (10 KB, every ``+ / =`` percent-encoded) than deleting the
#: controls (a C loop) and one literal-led search
_ENCODED_CONTROL = re.compile(rb"%[01][0-9A-Fa-f]")
_CONTROLS = bytes(range(0x20))


def _maybe_bad_body(body: bytes) -> bool:
    """Whether a URL-encoded body may decode to a character the rule refuses."""
    return (len(body.translate(None, _CONTROLS)) != len(body)
            or _ENCODED_CONTROL.search(body) is not None)


def _check_pairs(pairs: list[tuple[str, str]]) -> None:
    for key, value in pairs:
        check_text(key, "a field name", multiline=False)
        if key not in OWN_CHECK:
            check_text(value, key)


def _check_body(content_type: str, body: bytes) -> None:
    if not body:
        return
    if content_type == _FORM:
        if not _maybe_bad_body(body):
            return
        _check_pairs(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    elif content_type == _JSON or content_type.endswith("+json"):
        try:
            value = json.loads(body)
        except ValueError:
            return  # malformed JSON: the route's validation answers it
        if isinstance(value, dict):
            for key, item in value.items():
                check_text(key, "a field name", multiline=False)
                if key not in OWN_CHECK:
                    check_tree(item, key)
        else:
            check_tree(value, "")


async def _check_multipart(scope: Scope, body: bytes) -> None:
    """Check a complete ``multipart/form-data`` body's field names and text fields."""
    async def chunks() -> AsyncGenerator[bytes, None]:
        yield body

    try:
        form = await MultiPartParser(Headers(scope=scope), chunks()).parse()
    except MultiPartException:
        return  # malformed: the route's own parsing answers it
    try:
        for key, value in form.multi_items():
            check_text(key, "a field name", multiline=False)
            if isinstance(value, str) and key not in OWN_CHECK:
                check_text(value, key)
    finally:
        await form.close()


class TextGuard:
    """Pure ASGI middleware: refuse a request whose text breaks the input rule."""

    def __init__(self, app: ASGIApp, templates: Jinja2Templates) -> None:
        self.app = app
        self.templates = templates

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/scim/"):
            await self.app(scope, receive, send)
            return
        replay: Callable[[], Any] = receive
        try:
            check_text(scope["path"], "the path", multiline=False)
            query = scope.get("query_string", b"").decode("latin-1")
            if query and _MAYBE_BAD.search(query) is not None:
                _check_pairs(parse_qsl(query, keep_blank_values=True, errors="replace"))
            content_type = (_content_type(scope)
                            if scope["method"] in ("POST", "PUT", "PATCH", "DELETE") else "")
            if content_type in (_FORM, _JSON, _MULTIPART) or content_type.endswith("+json"):
                messages, body, complete = await _buffer(receive)
                replay = _replayer(messages, receive)
                if complete and content_type == _MULTIPART:
                    await _check_multipart(scope, body)
                elif complete:
                    _check_body(content_type, body)
        except InvalidText as bad:
            request = Request(scope)
            response = render_error(request, self.templates, 400, bad.code,
                                    f"invalid input: {bad}")
            await response(scope, receive, send)
            return
        await self.app(scope, replay, send)


def _content_type(scope: Scope) -> str:
    """The request's media type (``Content-Type`` without parameters), lower-case; the first
    one when a request repeats the header, as Starlette's ``request.headers.get`` (what the
    routes' parsing reads)."""
    value: bytes
    for key, value in scope["headers"]:
        if key.lower() == b"content-type":
            return value.decode("latin-1").split(";")[0].strip().lower()
    return ""


async def _buffer(receive: Receive) -> tuple[list[Message], bytes, bool]:
    """The body's messages read so far, the body, and whether it is complete (not past
    :data:`MAX_CHECKED`)."""
    messages: list[Message] = []
    size = 0
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            return messages, b"", False
        size += len(message.get("body", b""))
        if not message.get("more_body", False):
            return messages, b"".join(m.get("body", b"") for m in messages), True
        if size > MAX_CHECKED:
            return messages, b"", False


def _replayer(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay
