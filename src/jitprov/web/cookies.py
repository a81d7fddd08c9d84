"""``Set-Cookie`` headers, written directly where Starlette's would be plain text.

Starlette's ``Response.set_cookie`` builds a ``SimpleCookie`` and a ``Morsel`` for each
header, checks the name against a regular expression, sorts the attributes and, for a
deletion, formats the current time: 11-15 µs a cookie here, and a login sets or clears three
or four. jitprov's cookie names are fixed words and hex digits and their values base64url
text (a sealed one with its ``=`` padding), so :func:`set_cookie` writes the header itself
when the name holds only the characters the standard library leaves as they are and the
value only those it leaves as they are or between double quotes, and hands anything else (a
value it escapes, a name it refuses, a path or domain that is not plain ASCII, an attribute
it would leave out) to Starlette's method. Either way the header's bytes are
Starlette's, as a property test checks: attributes in the standard library's order
(``Domain``, ``expires``, ``HttpOnly``, ``Max-Age``, ``Path``, ``SameSite``, ``Secure``), a
deletion's value ``""`` and its ``expires`` the current second.
"""

from __future__ import annotations

import re
import time
from typing import Literal

from starlette.responses import Response

SameSite = Literal["lax", "strict", "none"]

#: a name or value the standard library writes as it is (``http.cookies._LegalChars``)
_PLAIN = re.compile(r"[A-Za-z0-9!#$%&'*+\-.^_`|~:]+").fullmatch
#: a value it writes between double quotes and otherwise as it is (``_UnescapedChars``: a
#: sealed value's base64 padding ``=``), the empty value included
_QUOTED = re.compile(r"[A-Za-z0-9!#$%&'*+\-.^_`|~: ()/<=>?@\[\]{}]*").fullmatch
#: attribute names the standard library refuses as a cookie's name (``Morsel._reserved``,
#: and ``partitioned``, which it refuses from Python 3.14)
_RESERVED = frozenset({"expires", "path", "comment", "domain", "max-age", "secure",
                       "httponly", "version", "samesite", "partitioned"})
#: a path or domain written as it is: printable ASCII, no separator
_ATTRIBUTE = re.compile(r"[!-:<-~]+").fullmatch
_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = (None, "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov",
           "Dec")


def set_cookie(response: Response, name: str, value: str, *, max_age: int, path: str,
               samesite: SameSite, secure: bool, httponly: bool = True,
               domain: str | None = None) -> None:
    """Add the header Starlette's ``response.set_cookie`` with these arguments would add."""
    header = _header(name, value, max_age=max_age, path=path, samesite=samesite,
                     secure=secure, httponly=httponly, domain=domain, deleting=False)
    if header is None:
        response.set_cookie(name, value, max_age=max_age, path=path, domain=domain,
                            secure=secure, httponly=httponly, samesite=samesite)
    else:
        response.raw_headers.append((b"set-cookie", header))


def delete_cookie(response: Response, name: str, *, path: str, samesite: SameSite,
                  secure: bool, httponly: bool = True, domain: str | None = None) -> None:
    """Add the header Starlette's ``response.delete_cookie`` with these arguments would add:
    an empty value, ``Max-Age=0`` and ``expires`` now."""
    header = _header(name, "", max_age=0, path=path, samesite=samesite, secure=secure,
                     httponly=httponly, domain=domain, deleting=True)
    if header is None:
        response.delete_cookie(name, path=path, domain=domain, secure=secure,
                               httponly=httponly, samesite=samesite)
    else:
        response.raw_headers.append((b"set-cookie", header))


def _header(name: str, value: str, *, max_age: int, path: str, samesite: str, secure: bool,
            httponly: bool, domain: str | None, deleting: bool) -> bytes | None:
    """The header's value, or None where Starlette's path must write it."""
    if (not _PLAIN(name) or name.lower() in _RESERVED or type(max_age) is not int
            or not _ATTRIBUTE(path) or samesite not in ("lax", "strict", "none")
            or (domain is not None and not _ATTRIBUTE(domain))):
        return None
    if _PLAIN(value):
        coded = value
    elif _QUOTED(value):
        coded = f'"{value}"'
    else:
        return None
    parts = [f"{name}={coded}"]
    if domain is not None:
        parts.append(f"Domain={domain}")
    if deleting:
        parts.append(f"expires={_now()}")
    if httponly:
        parts.append("HttpOnly")
    parts.append(f"Max-Age={max_age}")
    parts.append(f"Path={path}")
    parts.append(f"SameSite={samesite}")
    if secure:
        parts.append("Secure")
    return "; ".join(parts).encode("ascii")


def _now() -> str:
    """The current second as the standard library writes a cookie's ``expires``."""
    year, month, day, hh, mm, ss, weekday, _, _ = time.gmtime(time.time())
    return (f"{_WEEKDAYS[weekday]}, {day:02d} {_MONTHS[month]:>3} {year:4d} "
            f"{hh:02d}:{mm:02d}:{ss:02d} GMT")
