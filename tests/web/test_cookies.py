"""Set-Cookie headers written directly (web/cookies.py) are Starlette's, byte for byte."""

from __future__ import annotations

import time
from unittest import mock

import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.responses import Response
from starlette.testclient import TestClient

from jitprov.web import cookies
from tests.web.helpers import idp_response, start

_PLAIN = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-.^_`|~:"
#: plain characters mostly, and now and then one the standard library quotes or refuses
_TEXT = st.text(st.one_of(st.sampled_from(_PLAIN), st.sampled_from(' ";,=\\\x7fé\n/[]')),
                max_size=12)
_NAMES = st.one_of(_TEXT, st.sampled_from(["jitprov_session", "Path", "expires", "Secure",
                                           "partitioned", "max-age"]))
_ATTRIBUTES = st.one_of(st.sampled_from(["/", "/sso/", "/admin", "/device"]), _TEXT)
_DOMAINS = st.one_of(st.none(), st.sampled_from(["example.org", ".example.org"]), _TEXT)
_SAMESITE = st.sampled_from(["lax", "strict", "none"])
#: a second in the past the standard library's and this module's clocks both read
_FROZEN = 1_765_000_000.25


def _starlette(name: str, value: str | None, **kw: object) -> list[tuple[bytes, bytes]]:
    response = Response()
    response.raw_headers.clear()
    if value is None:
        response.delete_cookie(name, **kw)  # type: ignore[arg-type]
    else:
        response.set_cookie(name, value, **kw)  # type: ignore[arg-type]
    return response.raw_headers


def _ours(name: str, value: str | None, **kw: object) -> list[tuple[bytes, bytes]]:
    response = Response()
    response.raw_headers.clear()
    if value is None:
        cookies.delete_cookie(response, name, **kw)  # type: ignore[arg-type]
    else:
        cookies.set_cookie(response, name, value, **kw)  # type: ignore[arg-type]
    return response.raw_headers


def _outcome(write: object, *args: object, **kw: object) -> object:
    try:
        return write(*args, **kw)  # type: ignore[operator]
    except Exception as exc:  # the same failure from both is the point
        return type(exc)


@given(name=_NAMES, value=st.one_of(st.none(), _TEXT), max_age=st.integers(0, 10**8),
       path=_ATTRIBUTES, domain=_DOMAINS, samesite=_SAMESITE, secure=st.booleans(),
       httponly=st.booleans())
def test_every_header_is_starlettes(name: str, value: str | None, max_age: int, path: str,
                                    domain: str | None, samesite: str, secure: bool,
                                    httponly: bool) -> None:
    kw: dict[str, object] = {"path": path, "domain": domain, "samesite": samesite,
                             "secure": secure, "httponly": httponly}
    if value is not None:
        kw["max_age"] = max_age
    with mock.patch.object(time, "time", return_value=_FROZEN):
        assert _outcome(_ours, name, value, **kw) == _outcome(_starlette, name, value, **kw)


@pytest.mark.parametrize(("value", "domain", "secure"), [
    ("gAAAAABk-token_value.123==", None, False), ("x" * 700, "example.org", True)])
def test_jitprovs_own_cookies_take_the_direct_path(value: str, domain: str | None,
                                                   secure: bool) -> None:
    with mock.patch.object(Response, "set_cookie", side_effect=AssertionError("slow path")):
        for delete in (False, True):
            written = (_ours("jitprov_login_0123abcd", None, path="/sso/", samesite="lax",
                             secure=secure, domain=domain) if delete else
                       _ours("jitprov_login_0123abcd", value, max_age=1200, path="/sso/",
                             samesite="lax", secure=secure, domain=domain))
            assert len(written) == 1


def test_a_deletion_expires_now_as_the_standard_library_writes_it() -> None:
    with mock.patch.object(time, "time", return_value=0.0):
        assert _ours("a", None, path="/", samesite="lax", secure=False) == [
            (b"set-cookie", b'a=""; expires=Thu, 01 Jan 1970 00:00:00 GMT; HttpOnly; '
                            b'Max-Age=0; Path=/; SameSite=lax')]


def test_a_login_sets_and_clears_its_cookies_without_starlettes_cookie_jar(
        client: TestClient) -> None:
    with mock.patch.object(Response, "set_cookie", side_effect=AssertionError("slow path")):
        state = start(client)
        r = client.post("/sso/idp/mock/callback", data=idp_response(client, state))
    assert r.status_code == 303
    written = r.headers.get_list("set-cookie")
    session = next(c for c in written if c.startswith("jitprov_session="))
    assert "; HttpOnly; Max-Age=" in session and "; Path=/; SameSite=lax" in session
    cleared = [c for c in written if c.startswith("jitprov_login_")]
    assert cleared and all('=""; expires=' in c and "Max-Age=0; Path=/sso/" in c
                           for c in cleared)
    assert client.get("/me").status_code == 200
