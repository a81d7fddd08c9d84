"""OIDC sign-in over HTTP (in-process ASGI), against a small fake provider served through
httpx.MockTransport: the browser leg, PKCE, the code exchange, ID token validation, then the
same provisioning path as every protocol. The real-provider interop test is in tests/interop."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
import threading
from collections.abc import Iterator
from datetime import timedelta
from urllib.parse import parse_qs, quote_plus, urlsplit

import httpx
import pytest
import sqlalchemy as sa
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey
from starlette.testclient import TestClient

from jitprov.protocols.oidc.provider import Providers
from jitprov.services import admin, audit_export
from jitprov.services.context import ConnectionCache, ServiceContext
from jitprov.services.login.oidc import OFFLINE_MARGIN, OidcConnection
from jitprov.services.secretbox import SecretBox
from jitprov.settings import Settings
from jitprov.store.database import Database
from jitprov.testing.builders import HOSPITAL
from jitprov.web.app import create_app
from tests.conftest import TEST_SECRET_KEY, Clock
from tests.web.helpers import HandOffs, OtherProcess

ISSUER = "https://idp.example"
CLIENT_ID = "jitprov-test"
CLIENT_SECRET = "s3cret:with+odd=chars"


class FakeProvider:
    """Just enough of an OpenID Provider: discovery, JWKS, token endpoint with PKCE."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.key = RSAKey.generate_key(2048, parameters={"kid": "k1"}, private=True)
        self.users: dict[str, dict[str, object]] = {}
        self.codes: dict[str, tuple[str, str, str]] = {}  # code -> (sub, nonce, challenge)

    def authorize(self, url: str, sub: str) -> str:
        """What the user's login at the provider ends in: the redirect back, with a code."""
        q = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
        assert q["code_challenge_method"] == "S256"
        code = secrets.token_urlsafe(16)
        self.codes[code] = (sub, q["nonce"], q["code_challenge"])
        return f"{q['redirect_uri']}?code={code}&state={q['state']}"

    def handler(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/.well-known/openid-configuration":
            return httpx.Response(200, json={
                "issuer": ISSUER, "authorization_endpoint": f"{ISSUER}/authorize",
                "token_endpoint": f"{ISSUER}/token", "jwks_uri": f"{ISSUER}/jwks",
                "code_challenge_methods_supported": ["S256"]})
        if path == "/jwks":
            return httpx.Response(200, json=KeySet([self.key]).as_dict(private=False))
        if path == "/token":
            return self.token(request)
        return httpx.Response(404)

    def token(self, request: httpx.Request) -> httpx.Response:
        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
        # RFC 6749 section 2.3.1: Basic over the form-urlencoded id and secret
        want = "Basic " + base64.b64encode(
            f"{quote_plus(CLIENT_ID)}:{quote_plus(CLIENT_SECRET)}".encode()).decode()
        if request.headers.get("authorization") != want:
            return httpx.Response(401, json={"error": "invalid_client"})
        found = self.codes.pop(form.get("code", ""), None)
        if found is None:
            return httpx.Response(400, json={"error": "invalid_grant"})
        sub, nonce, challenge = found
        verifier = form.get("code_verifier", "")
        digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
        if digest.rstrip(b"=").decode() != challenge:
            return httpx.Response(400, json={"error": "invalid_grant"})
        now = int(self.clock().timestamp())
        claims = {"iss": ISSUER, "aud": CLIENT_ID, "sub": sub, "nonce": nonce, "iat": now,
                  "exp": now + 300, **self.users[sub]}
        token = jwt.encode({"alg": "RS256", "kid": "k1"}, claims, self.key)
        return httpx.Response(200, json={"id_token": token, "access_token": "at",
                                         "token_type": "Bearer"})


@pytest.fixture
def provider(clock: Clock) -> FakeProvider:
    return FakeProvider(clock)


@pytest.fixture
def oidc_ctx(database_url: str, clock: Clock,
             provider: FakeProvider) -> Iterator[ServiceContext]:
    http = httpx.Client(transport=httpx.MockTransport(provider.handler))
    ctx = ServiceContext(db=Database.connect(database_url, pool_size=4),
                         secretbox=SecretBox(TEST_SECRET_KEY), clock=clock, http=http)
    admin.create_tenant(ctx, "hospital")
    admin.add_oidc_connection(
        ctx, tenant="hospital", slug="okta",
        config={"issuer": ISSUER, "client_id": CLIENT_ID,
                "scopes": ["openid", "email", "profile", "groups"]},
        client_secret=CLIENT_SECRET, mapping=HOSPITAL.format(linking="never"),
        mapping_source="hospital.yaml")
    yield ctx
    http.close()
    ctx.db.dispose()


@pytest.fixture
def browser(oidc_ctx: ServiceContext) -> Iterator[TestClient]:
    settings = Settings(base_url="http://testserver", secret_key=TEST_SECRET_KEY)
    with TestClient(create_app(settings, ctx=oidc_ctx), base_url="http://testserver",
                    raise_server_exceptions=False, follow_redirects=False) as client:
        yield client


NURSE = {"email": "ana@hospital.example", "email_verified": True, "name": "Ana Lima",
         "department": "Ward 3", "groups": ["Nurses"]}


def sign_in(browser: TestClient, provider: FakeProvider, sub: str) -> httpx.Response:
    r = browser.get("/sso/okta/login", params={"return_to": "/me"})
    assert r.status_code == 303
    assert r.headers["location"].startswith(f"{ISSUER}/authorize?")
    back = provider.authorize(r.headers["location"], sub)
    return browser.get(back.replace("http://testserver", ""))


def test_first_oidc_login_provisions_with_mapped_roles(browser: TestClient,
                                                       provider: FakeProvider) -> None:
    provider.users["00u1"] = dict(NURSE)
    r = sign_in(browser, provider, "00u1")
    assert (r.status_code, r.headers["location"]) == (303, "/me")
    me = browser.get("/me").json()
    assert (me["email"], me["roles"], me["connection"], me["external_id"]) == (
        "ana@hospital.example", ["nurse", "staff"], "okta", "00u1")


def test_a_login_start_with_the_discovery_document_in_memory_needs_no_worker_thread(
        browser: TestClient, provider: FakeProvider, oidc_ctx: ServiceContext,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The first start fetches the provider's discovery document in a worker thread; later
    ones are built on the event loop from memory, until the document is nearly due again
    (then a thread fetches it once more): no blocking fetch on the event loop, ever (the
    code exchange is awaited there, through the client's async transport)."""
    fetched: list[str] = []
    handler = provider.handler

    def counting(request: httpx.Request) -> httpx.Response:
        fetched.append(request.url.path)
        if request.url.path != "/token":
            with pytest.raises(RuntimeError):  # never on the event loop's thread
                asyncio.get_running_loop()
        return handler(request)

    now = [1000.0]
    # the connection stays cached however slow this machine (else a start hands off)
    monkeypatch.setattr(oidc_ctx, "connections",
                        ConnectionCache(oidc_ctx.db, ttl=timedelta(hours=1)))
    http = httpx.Client(transport=httpx.MockTransport(counting))
    monkeypatch.setattr(oidc_ctx, "http", http)
    monkeypatch.setattr(oidc_ctx, "oidc", Providers(http, clock=lambda: now[0]))
    hand_offs = HandOffs(monkeypatch)
    provider.users["00u1"] = dict(NURSE)

    assert sign_in(browser, provider, "00u1").headers["location"] == "/me"
    assert hand_offs.calls[0] == "start"  # the document fetched, in a worker thread
    assert fetched.count("/.well-known/openid-configuration") == 1
    hand_offs.calls.clear()
    for _ in range(3):
        r = browser.get("/sso/okta/login", params={"return_to": "/me"})
        assert r.status_code == 303 and r.headers["location"].startswith(f"{ISSUER}/authorize?")
    assert hand_offs.calls == []
    assert fetched.count("/.well-known/openid-configuration") == 1
    now[0] += 3600 - OFFLINE_MARGIN  # the document's hour nearly over
    r = browser.get("/sso/okta/login", params={"return_to": "/me"})
    assert r.status_code == 303
    assert hand_offs.calls == ["start"]
    assert fetched.count("/.well-known/openid-configuration") == 1  # not due yet: kept
    now[0] += OFFLINE_MARGIN
    assert browser.get("/sso/okta/login").status_code == 303
    assert hand_offs.calls == ["start", "start"]
    assert fetched.count("/.well-known/openid-configuration") == 2  # due: fetched again
    # however the check and the start disagree (the document gone between them), the start on
    # the event loop builds from memory only, and a thread fetches
    monkeypatch.setattr(OidcConnection, "starts_offline", lambda *_: True)
    now[0] += 3600
    hand_offs.calls.clear()
    assert browser.get("/sso/okta/login").status_code == 303
    assert hand_offs.calls == ["start"]
    assert fetched.count("/.well-known/openid-configuration") == 3
    http.close()


def test_the_callback_awaits_the_provider_on_the_event_loop_and_signs_in_there_on_sqlite(
        browser: TestClient, provider: FakeProvider, oidc_ctx: ServiceContext,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """On SQLite the code exchange is awaited on the event loop (the server's client sends
    for it without blocking), and with the provider's keys in memory the ID token is verified
    there too: a callback needs no worker thread at all. The first callback of a process
    fetches the keys: that part, and only it, goes to a thread. On PostgreSQL, whose
    provisioning goes to a thread, the whole callback runs in that one thread."""
    provider.users["00u1"] = dict(NURSE)
    provider.users["00u2"] = {**NURSE, "email": "bo@hospital.example"}
    exchanged_on_loop: list[bool] = []
    keys_on_loop: list[bool] = []
    handler = provider.handler

    def watching(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/token":
            exchanged_on_loop.append(_on_event_loop())
        if request.url.path == "/jwks":
            keys_on_loop.append(_on_event_loop())
        return handler(request)

    http = httpx.Client(transport=httpx.MockTransport(watching))
    monkeypatch.setattr(oidc_ctx, "http", http)
    monkeypatch.setattr(oidc_ctx, "oidc", Providers(http))
    # the connection stays cached however slow this machine (else the callback reads it)
    monkeypatch.setattr(oidc_ctx, "connections",
                        ConnectionCache(oidc_ctx.db, ttl=timedelta(hours=1)))
    begins: list[bool] = []

    def on_begin(conn: sa.Connection) -> None:
        if not conn.get_execution_options().get("readonly"):
            begins.append(_on_event_loop())

    on_loop = oidc_ctx.db.dialect == "sqlite"
    hand_offs = HandOffs(monkeypatch)
    for sub, hand_offs_expected in (("00u1", ["drive_steps"] if on_loop else ["both"]),
                                    ("00u2", [] if on_loop else ["both"])):
        started = browser.get("/sso/okta/login", params={"return_to": "/me"})
        back = provider.authorize(started.headers["location"], sub)
        hand_offs.calls.clear()
        sa.event.listen(oidc_ctx.db.engine, "begin", on_begin)
        try:
            r = browser.get(back.replace("http://testserver", ""))
        finally:
            sa.event.remove(oidc_ctx.db.engine, "begin", on_begin)
        assert (r.status_code, r.headers["location"]) == (303, "/me")
        assert hand_offs.calls == hand_offs_expected
    assert exchanged_on_loop == [on_loop, on_loop]
    assert keys_on_loop == [False]  # fetched once, in a thread
    assert begins == [on_loop, on_loop]
    assert browser.get("/me").json()["email"] == "bo@hospital.example"
    http.close()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_callback_whose_provisioning_meets_another_writer_redeems_the_code_once(
        browser: TestClient, provider: FakeProvider, oidc_ctx: ServiceContext,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Another process (a second worker) takes the write turn while the code is redeemed: the
    provisioning waits for it on the event loop and runs alone there once the turn is free;
    the code is not redeemed a second time (the provider would refuse it)."""
    provider.users["00u1"] = dict(NURSE)
    redeemed: list[str] = []
    handler = provider.handler
    others: list[OtherProcess] = []

    def writer_meanwhile(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/token":
            redeemed.append(request.url.path)
            others.append(OtherProcess(oidc_ctx.db))  # for 0.3 s
            threading.Timer(0.3, others[-1].release).start()
        return handler(request)

    http = httpx.Client(transport=httpx.MockTransport(writer_meanwhile))
    monkeypatch.setattr(oidc_ctx, "http", http)
    started = browser.get("/sso/okta/login", params={"return_to": "/me"})
    back = provider.authorize(started.headers["location"], "00u1")
    hand_offs = HandOffs(monkeypatch)
    r = browser.get(back.replace("http://testserver", ""))
    assert (r.status_code, r.headers["location"]) == (303, "/me"), r.text
    assert redeemed == ["/token"]
    assert hand_offs.calls == ["drive_steps"]  # the keys; the turn waited for on the loop
    types = [e.type for e in audit_export.iter_events(oidc_ctx, "hospital")]
    assert types.count("account.created") == 1 and "login.failed" not in types
    assert browser.get("/me").json()["email"] == "ana@hospital.example"
    http.close()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("answer", ["unreachable", "broken", "refused", "forged"])
def test_a_refusal_after_the_provider_answered_on_the_event_loop_is_audited_off_it(
        browser: TestClient, provider: FakeProvider, oidc_ctx: ServiceContext,
        monkeypatch: pytest.MonkeyPatch, answer: str) -> None:
    """A warm process on SQLite (keys in memory) awaits the provider on the loop. When the
    answer is refused (the token endpoint unreachable or failing in a way httpx does not
    wrap, a code refused, an ID token signed by another key) the person gets the readable
    page, ``login.failed`` says why, and its write goes to a worker thread, not the event
    loop; nothing is provisioned."""
    provider.users["00u1"] = dict(NURSE)
    provider.users["00u2"] = {**NURSE, "email": "bo@hospital.example"}
    monkeypatch.setattr(oidc_ctx, "connections",
                        ConnectionCache(oidc_ctx.db, ttl=timedelta(hours=1)))
    assert sign_in(browser, provider, "00u1").headers["location"] == "/me"  # keys in memory
    handler = provider.handler

    def failing(request: httpx.Request) -> httpx.Response:
        if request.url.path != "/token":
            return handler(request)
        if answer == "unreachable":
            raise httpx.ConnectError("connection refused", request=request)
        if answer == "broken":  # what no caller expects from under httpx (anyio's groups)
            raise ExceptionGroup("connect", [OverflowError("port must be 0-65535")])
        if answer == "refused":
            return httpx.Response(400, json={"error": "invalid_grant"})
        key, provider.key = provider.key, RSAKey.generate_key(
            2048, parameters={"kid": "k1"}, private=True)  # the same kid, another key
        try:
            return handler(request)
        finally:
            provider.key = key

    http = httpx.Client(transport=httpx.MockTransport(failing))
    monkeypatch.setattr(oidc_ctx, "http", http)
    audits_on_loop: list[bool] = []

    def on_begin(conn: sa.Connection) -> None:
        if not conn.get_execution_options().get("readonly"):
            audits_on_loop.append(_on_event_loop())

    started = browser.get("/sso/okta/login", params={"return_to": "/me"})
    back = provider.authorize(started.headers["location"], "00u2")
    hand_offs = HandOffs(monkeypatch)
    sa.event.listen(oidc_ctx.db.engine, "begin", on_begin)
    try:
        r = browser.get(back.replace("http://testserver", ""))
    finally:
        sa.event.remove(oidc_ctx.db.engine, "begin", on_begin)
    code = {"unreachable": "idp_unreachable", "broken": "idp_unreachable",
            "refused": "token_error", "forged": "id_token_invalid"}[answer]
    assert r.status_code in (400, 502) and "request id" in r.text
    assert hand_offs.calls == ["drive_steps"] and audits_on_loop == [False]
    failed = [e.data["code"] for e in audit_export.iter_events(oidc_ctx, "hospital")
              if e.type == "login.failed"]
    assert failed == [code]
    assert [v.account.email for v in admin.list_accounts(oidc_ctx, "hospital")] == [
        "ana@hospital.example"]
    http.close()


def _on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def test_changed_groups_at_the_provider_revoke_the_rule_role(
        browser: TestClient, provider: FakeProvider, oidc_ctx: ServiceContext) -> None:
    provider.users["00u1"] = dict(NURSE)
    sign_in(browser, provider, "00u1")
    provider.users["00u1"] = {**NURSE, "groups": ["Porters"], "department": "Transport"}
    sign_in(browser, provider, "00u1")
    [view] = admin.list_accounts(oidc_ctx, "hospital")
    assert (sorted(view.account.roles), view.account.profile["department"]) == (
        ["staff"], "Transport")


def test_idp_error_response_is_a_readable_page_and_audited(
        browser: TestClient, oidc_ctx: ServiceContext) -> None:
    r = browser.get("/sso/okta/login")
    state = parse_qs(urlsplit(r.headers["location"]).query)["state"][0]
    r = browser.get("/sso/okta/oidc/callback", params={
        "error": "access_denied", "error_description": "user cancelled", "state": state})
    assert r.status_code == 400
    assert "access_denied" in r.text
    assert "request id" in r.text
    failed = [e for e in audit_export.iter_events(oidc_ctx, "hospital")
              if e.type == "login.failed"]
    assert [e.data["code"] for e in failed] == ["idp_error"]
    assert admin.list_accounts(oidc_ctx, "hospital") == []


def test_wrong_client_secret_is_a_clear_error_and_creates_nothing(
        browser: TestClient, provider: FakeProvider, oidc_ctx: ServiceContext) -> None:
    provider.users["00u1"] = dict(NURSE)
    admin_db = oidc_ctx.db.engine
    sealed = oidc_ctx.secretbox.seal({"client_secret": "wrong"})
    with admin_db.begin() as conn:
        conn.exec_driver_sql("UPDATE connection SET secrets = '" + sealed + "', "
                             "version = version + 1")
    oidc_ctx.connections.forget("okta")
    r = sign_in(browser, provider, "00u1")
    assert r.status_code == 400
    assert "invalid_client" in r.text
    assert CLIENT_SECRET not in r.text
    assert admin.list_accounts(oidc_ctx, "hospital") == []


def test_callback_replayed_or_from_another_browser_is_refused(
        browser: TestClient, provider: FakeProvider, oidc_ctx: ServiceContext) -> None:
    provider.users["00u1"] = dict(NURSE)
    r = browser.get("/sso/okta/login")
    back = provider.authorize(r.headers["location"], "00u1").replace("http://testserver", "")
    settings = Settings(base_url="http://testserver", secret_key=TEST_SECRET_KEY)
    with TestClient(create_app(settings, ctx=oidc_ctx), base_url="http://testserver",
                    raise_server_exceptions=False, follow_redirects=False) as other:
        assert other.get(back).status_code == 400
    assert admin.list_accounts(oidc_ctx, "hospital") == []
    cookies = {k: v for k, v in browser.cookies.items() if k.startswith("jitprov_login_")}
    # the refusal spent nothing: the browser that started the login completes it
    assert browser.get(back).status_code == 303
    assert browser.get(back).status_code == 400  # the state is spent (its cookie is gone)
    # the same callback with its binding cookie: the provider redeems a code once
    for name, value in cookies.items():
        browser.cookies.set(name, value, path="/sso/")
    assert browser.get(back).status_code == 400
    failed = [e.data["code"] for e in audit_export.iter_events(oidc_ctx, "hospital")
              if e.type == "login.failed"]
    assert failed[:2] == ["login_foreign", "login_expired"] and len(failed) == 3
    assert len(admin.list_accounts(oidc_ctx, "hospital")) == 1


def test_expired_id_token_is_refused(browser: TestClient, provider: FakeProvider,
                                     oidc_ctx: ServiceContext, clock: Clock) -> None:
    provider.users["00u1"] = dict(NURSE)
    real = provider.clock
    provider.clock = Clock(real().replace(year=2025))  # the provider's clock is a year behind
    r = sign_in(browser, provider, "00u1")
    assert r.status_code == 400
    assert "expired" in r.text
    assert admin.list_accounts(oidc_ctx, "hospital") == []



def test_private_key_jwt_connection_publishes_only_its_public_key(
        oidc_ctx: ServiceContext, browser: TestClient) -> None:
    admin.add_oidc_connection(
        oidc_ctx, tenant="hospital", slug="pkjwt",
        config={"issuer": ISSUER, "client_id": "c2", "token_auth_method": "private_key_jwt"},
        client_secret=None, mapping=None, mapping_source=None, check_provider=False)
    [key] = browser.get("/sso/pkjwt/oidc/jwks.json").json()["keys"]
    assert (key["kty"], key["crv"], key["alg"]) == ("EC", "P-256", "ES256")
    assert "d" not in key
    created = [e for e in audit_export.iter_events(oidc_ctx, "hospital")
               if e.type == "connection.created" and e.data["connection"] == "pkjwt"]
    assert '"d"' not in str(created[0].data)


def test_add_oidc_from_the_cli_keeps_the_secret_out_of_output_and_audit(
        capsys: pytest.CaptureFixture[str], tmp_path: object, database_url: str,
        monkeypatch: pytest.MonkeyPatch, oidc_ctx: ServiceContext,
        provider: FakeProvider) -> None:
    from jitprov.cli import main as cli
    from jitprov.services import context as context_module

    monkeypatch.chdir(str(tmp_path))
    monkeypatch.setenv("JITPROV_SECRET_KEY", TEST_SECRET_KEY)
    monkeypatch.setenv("JITPROV_OIDC_CLIENT_SECRET", CLIENT_SECRET)
    real_context = context_module.ServiceContext

    def with_fake_provider(**kw: object) -> ServiceContext:
        http = httpx.Client(transport=httpx.MockTransport(provider.handler))
        return real_context(**{**kw, "http": http})  # type: ignore[arg-type]

    monkeypatch.setattr(context_module, "ServiceContext", with_fake_provider)
    with pytest.raises(SystemExit) as exited:
        cli.main(["connection", "add-oidc", "--tenant", "hospital", "--slug", "okta2",
                  "--issuer", ISSUER, "--client-id", CLIENT_ID,
                  "--database-url", database_url])
    out, err = capsys.readouterr()
    assert exited.value.code == 0, err
    assert "/sso/okta2/oidc/callback" in out
    assert CLIENT_SECRET not in out + err
    events = list(audit_export.iter_events(oidc_ctx, "hospital"))
    assert CLIENT_SECRET not in str([e.data for e in events])
    with oidc_ctx.db.engine.connect() as conn:
        stored = conn.exec_driver_sql(
            "SELECT secrets FROM connection WHERE slug = 'okta2'").scalar_one()
    assert CLIENT_SECRET not in stored
    assert oidc_ctx.secretbox.open(stored) == {"client_secret": CLIENT_SECRET}
