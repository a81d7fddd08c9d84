"""The input rule of ``core.text`` at every other edge: the admin API, HTML forms, a login's
claims, mapping files and the CLI each refuse a lone surrogate, a NUL or another control
character with their own kind of error, and store nothing."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import httpx
import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st
from starlette.testclient import TestClient

from jitprov.cli.main import main
from jitprov.core.errors import MappingError
from jitprov.core.mapping import load_policy
from jitprov.services import admin
from jitprov.services.common import LoginRefused
from jitprov.services.context import ServiceContext
from jitprov.services.login.flow import provision_on_login
from jitprov.testing.builders import HOSPITAL, nurse, setup_connection
from jitprov.web.text_guard import _maybe_bad_body
from tests.conftest import TEST_SECRET_KEY
from tests.web.helpers import make_client

SURROGATE = "\ud800"


@pytest.fixture
def api(ctx: ServiceContext) -> Iterator[tuple[TestClient, dict[str, str]]]:
    setup_connection(ctx)
    _, token = admin.create_admin_token(ctx, "ops")
    with make_client(ctx) as client:
        yield client, {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


@pytest.mark.parametrize("bad", [SURROGATE, "a\x00", "a\x07"])
def test_admin_api_refuses_bad_text_with_a_json_400(api: tuple[TestClient, dict[str, str]],
                                                    bad: str) -> None:
    client, auth = api
    body = {"slug": "clinic", "name": "Clinic" + bad}
    r = client.post("/api/tenants", headers=auth, content=json.dumps(body).encode("ascii"))
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "invalid_text" and "name" in r.json()["message"]
    listed = client.get("/api/tenants", headers=auth)
    assert listed.status_code == 200 and "clinic" not in listed.text
    r = client.get("/api/tenants", headers=auth, params={"name": "x\x00"})
    assert r.status_code == 400, r.text


def test_html_forms_refuse_bad_text_with_a_readable_page(api: tuple[TestClient,
                                                                    dict[str, str]]) -> None:
    client, _ = api
    r = client.post("/break-glass", data={"code": "t\x00"})
    assert r.status_code == 400
    assert r.headers["content-type"].startswith("text/html")
    assert "code" in r.text and "NUL" in r.text


@pytest.mark.parametrize(("body", "query", "named"), [
    (b"code=t%1b", b"", "code"),  # percent-encoded, lower-case hex
    (b"code=t\x07", b"", "code"),  # a control byte as is
    (b"co%09de=t", b"", "a field name"),  # a tab: free text may hold one, a name may not
    (b"code=t", b"next=%1F", "next"),  # the query string too
    # at the end of a SAMLResponse-sized body full of percent-encoded characters
    (b"code=" + b"a%2Bb%2F%3D" * 1000 + b"%0A%1b", b"", "code"),
    (b"code=" + b"a%2Bb%2F%3D" * 1000 + b"\x1f", b"", "code"),
])
def test_url_encoded_text_is_refused_however_it_is_spelled(
        api: tuple[TestClient, dict[str, str]], body: bytes, query: bytes, named: str) -> None:
    client, _ = api
    r = client.post("/break-glass?" + query.decode(), content=body,
                    headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 400, r.text
    assert "invalid input" in r.text and named in r.text


#: the plain statement of what a body may decode to: a C0 control, as is or percent-encoded
_MAYBE_BAD_PLAIN = re.compile(rb"[\x00-\x1f]|%[01][0-9A-Fa-f]")


@given(st.lists(st.sampled_from([b"%", b"0", b"1", b"2", b"a", b"F", b"g", b"=", b"&", b"+",
                                 b"\x00", b"\x1f", b" ", b"\x7f", b"\xc3\xa9"]),
                max_size=40).map(b"".join))
def test_the_body_prefilter_agrees_with_the_plain_pattern(body: bytes) -> None:
    """The two-scan prefilter that lets a clean form body through unparsed says "maybe bad"
    exactly when the one-pattern statement of the rule does."""
    assert _maybe_bad_body(body) == (_MAYBE_BAD_PLAIN.search(body) is not None)


def test_url_encoded_free_text_keeps_tabs_and_line_breaks(
        api: tuple[TestClient, dict[str, str]]) -> None:
    client, _ = api
    r = client.post("/break-glass?q=a%09b", content=b"code=a%09b%0D%0Ac+d%E2%82%AC",
                    headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code != 400 or "invalid input" not in r.text, r.text


def _multipart(*parts: tuple[bytes, bytes]) -> bytes:
    """A ``multipart/form-data`` body (boundary ``X``) of (Content-Disposition, content)."""
    return b"".join(b"--X\r\nContent-Disposition: form-data; " + disposition +
                    b"\r\n\r\n" + content + b"\r\n" for disposition, content in parts
                    ) + b"--X--\r\n"


@pytest.mark.parametrize(("body", "named", "said"), [
    (_multipart((b'name="code"', b"ab\x00cd")), "code", "NUL"),
    (_multipart((b'name="code"', b"t\x1b")), "code", "control character"),
    (_multipart((b'name="co\x07de"', b"t")), "a field name", "control character"),
    # a refused character after a file part: the text fields are all checked
    (_multipart((b'name="upload"; filename="a.bin"', b"\x00\x01\x02"),
                (b'name="code"', b"t\x00")), "code", "NUL"),
], ids=["nul", "escape", "name", "after-a-file"])
def test_multipart_form_fields_are_checked_like_url_encoded_ones(
        api: tuple[TestClient, dict[str, str]], body: bytes, named: str, said: str) -> None:
    client, _ = api
    r = client.post("/break-glass", content=body,
                    headers={"Content-Type": "multipart/form-data; boundary=X"})
    assert r.status_code == 400, r.text
    assert r.headers["content-type"].startswith("text/html")
    assert "invalid input" in r.text and named in r.text and said in r.text


def test_a_multipart_file_is_not_text_and_clean_fields_reach_the_route(
        api: tuple[TestClient, dict[str, str]]) -> None:
    client, _ = api
    multipart = {"Content-Type": "multipart/form-data; boundary=X"}
    text = _multipart((b'name="code"', b"a\tb\r\nc \xe2\x82\xac"))
    r = client.post("/break-glass", content=text, headers=multipart)
    assert "invalid input" not in r.text, r.text
    assert "emergency code" in r.text  # the route's own answer
    # a file's bytes are not text (a path no route serves: the guard passes it on, to a 404)
    with_file = _multipart((b'name="upload"; filename="a.bin"', b"\x00\x01\xff"),
                           (b'name="note"', b"clean"))
    r = client.post("/no-such-page", content=with_file, headers=multipart)
    assert r.status_code == 404, r.text


def test_a_repeated_content_type_is_read_as_starlette_reads_it_the_first(
        api: tuple[TestClient, dict[str, str]]) -> None:
    client, _ = api
    form = (b"content-type", b"application/x-www-form-urlencoded")
    text = (b"content-type", b"text/plain")

    def post(*content_types: tuple[bytes, bytes]) -> httpx.Response:
        request = client.build_request("POST", "/break-glass", content=b"code=t%00")
        # the header twice, not joined into one as a client's headers merge them
        request.headers = httpx.Headers([(k, v) for k, v in request.headers.raw
                                         if k.lower() != b"content-type"] + list(content_types))
        return client.send(request)

    r = post(form, text)
    assert r.status_code == 400, r.text
    assert "invalid input" in r.text and "code" in r.text and "NUL" in r.text
    # the first says plain text: the route reads no form, so there is nothing to refuse
    r = post(text, form)
    assert "invalid input" not in r.text, r.text


@pytest.mark.parametrize("claim", [{"name": "Ana" + SURROGATE}, {"department": "W\x00"},
                                   {"groups": ["Nurses", "x\x1b"]}])
def test_a_login_with_bad_claims_is_refused_readably(ctx: ServiceContext,
                                                     claim: dict[str, object]) -> None:
    setup_connection(ctx)
    with pytest.raises(LoginRefused) as refused:
        provision_on_login(ctx, "idp", nurse(**claim))
    assert refused.value.code == "invalid_identity"
    assert "cannot be stored" in refused.value.reason
    provision_on_login(ctx, "idp", nurse())  # the tenant is unharmed


@pytest.mark.parametrize("escape", ["\\0", "\\ud800", "\\e"])
def test_mapping_files_refuse_escaped_control_text(escape: str) -> None:
    good = HOSPITAL.format(linking="never")
    bad = good.replace("reason: email not verified", f'reason: "email{escape} not verified"')
    assert bad != good
    load_policy(good.replace("reason: email not verified", 'reason: "email\\tnot verified"'))
    with pytest.raises(MappingError) as refused:
        load_policy(bad, "m.yaml")
    assert str(refused.value).startswith("m.yaml: ")


def test_cli_refuses_bad_arguments_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["tenant", "create", "clinic\x00"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "argument 3" in err and "NUL" in err


def test_stored_bad_text_still_reads_in_the_api_and_the_cli(
        api: tuple[TestClient, dict[str, str]], ctx: ServiceContext,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A profile written before the rule (a lone surrogate in its JSON) is answered with
    U+FFFD by the access review, over HTTP and in the CLI."""
    client, auth = api
    account = provision_on_login(ctx, "idp", nurse()).account_id
    with ctx.db.engine.begin() as conn:
        conn.execute(sa.text("update account set profile = :p where id = :i"),
                     {"p": json.dumps({"name": "Ana" + SURROGATE, "email":
                                       "ana@hospital.example"}), "i": account})
    r = client.get("/api/tenants/hospital/access-review", headers=auth,
                   params={"format": "json"})
    assert r.status_code == 200, r.text
    monkeypatch.setenv("JITPROV_SECRET_KEY", TEST_SECRET_KEY)
    with pytest.raises(SystemExit) as exited:
        main(["access-review", "--tenant", "hospital", "--format", "json",
              "--database-url", str(ctx.db.engine.url.render_as_string(hide_password=False))])
    assert exited.value.code in (0, None)
    assert "ana@hospital.example" in capsys.readouterr().out
