"""What a request costs in the app alone, and what a worker-thread hand-off costs.

The requests of a SAML login (the start, the ACS bounce, the ACS; the start also with
``sign_authn_requests: false``, the AuthnRequest unsigned) and a SCIM ``POST /Users``
go through the whole ASGI app (middleware, routing, the service, its SQLite transaction,
cookies, the log line at INFO) in this process: no socket, no HTTP server, no load generator
on the cores, one request at a time, so the CPU is the app's own. ``bench.e2e`` measures the
same requests over HTTP; the difference is uvicorn, the kernel and the load generator's share
of the machine.

On SQLite the ACS and the create run their service on the event loop when the write turn is
free (``Database.run_inline``), as here, one request at a time. They run again with the
service forced into a worker thread (``run_in_threadpool``), as on PostgreSQL or behind
another writer: the difference is what the hand-off costs, and an empty hand-off is timed
alone. Each set runs in its own process twice: free on every CPU, and pinned to one, where
the worker thread shares the event loop's core and caches.

``python -m bench --only handoff`` (report.md), or ``python -m bench.handoff [N]``.
"""

from __future__ import annotations

import asyncio
import html
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey
from starlette.concurrency import run_in_threadpool

from bench.provision import MAPPING as OIDC_MAPPING
from bench.saml import MAPPING, _attributes
from bench.scim import InProcess, _measure, asgi_call, user_body
from jitprov.protocols.oidc.provider import Providers
from jitprov.services import admin, logs
from jitprov.services.context import ServiceContext
from jitprov.services.scim import tokens as scim_tokens
from jitprov.services.secretbox import SecretBox
from jitprov.settings import Settings
from jitprov.store.database import Database
from jitprov.testing.saml_idp import FakeSamlIdp, request_id_of
from jitprov.web.app import create_app

BASE_URL = "http://bench.example"
ACS = f"{BASE_URL}/sso/bench/saml/acs"
AUDIENCE = f"{BASE_URL}/sso/bench/saml/metadata"
_HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')
_FORM = [(b"content-type", b"application/x-www-form-urlencoded")]

Request = tuple[int, dict[str, list[str]], bytes]


async def call(app: Any, method: str, target: str, headers: list[tuple[bytes, bytes]],
               body: bytes = b"") -> Request:
    """One request through the ASGI app: (status, headers by lower-case name, body)."""
    status, sent, out = await asgi_call(app, method, target,
                                        [(b"host", b"bench.example"), *headers], body)
    found: dict[str, list[str]] = {}
    for name, value in sent:
        found.setdefault(name.decode(), []).append(value.decode())
    return status, found, out


def _cookies(headers: dict[str, list[str]]) -> str:
    return "; ".join(line.split(";", 1)[0] for line in headers.get("set-cookie", []))


@contextmanager
def in_a_thread() -> Iterator[None]:
    """Services run in a worker thread, as on PostgreSQL: the database says it runs nothing
    on the event loop, so a service in two steps (the ACS, the OIDC callback) runs both in
    one thread."""
    runs_inline = Database.runs_inline
    Database.runs_inline = property(lambda _db: False)  # type: ignore[assignment,method-assign]
    try:
        yield
    finally:
        Database.runs_inline = runs_inline  # type: ignore[method-assign]


class SamlLogins:
    """People signing in through the connection ``bench``, each request one call of the app."""

    def __init__(self, app: Any, ctx: ServiceContext, idp: FakeSamlIdp) -> None:
        self.app, self.ctx, self.idp = app, ctx, idp
        self.next = 0
        self.started: list[tuple[str, str]] = []  # (IdP redirect, binding cookie)
        self.posted: list[bytes] = []  # the IdP's form, as the browser posts it
        self.pages: dict[int, bytes] = {}  # the bounce pages, as answered
        self.bounced: list[tuple[bytes, str]] = []  # the bounce page's form, the cookie

    def reset(self) -> None:
        self.started, self.posted, self.pages, self.bounced = [], [], {}, []

    async def start(self, _i: int) -> None:
        status, headers, _ = await call(self.app, "GET", "/sso/bench/login?return_to=/me", [])
        if status != 303:
            raise RuntimeError(f"login start: HTTP {status}")
        self.started.append((headers["location"][0], _cookies(headers)))

    def sign(self) -> None:
        """The IdP's signed answers to every login started (not measured)."""
        for location, _ in self.started:
            self.next += 1
            relay = parse_qs(urlsplit(location).query)["RelayState"][0]
            response = self.idp.response(
                acs_url=ACS, audience=AUDIENCE, subject=f"person-{self.next}",
                attributes=_attributes(self.next), in_response_to=request_id_of(location),
                now=self.ctx.clock())
            self.posted.append(urlencode({"SAMLResponse": response,
                                          "RelayState": relay}).encode())

    async def bounce(self, i: int) -> None:
        status, _, page = await call(self.app, "POST", "/sso/bench/saml/acs", _FORM,
                                     self.posted[i])
        if status != 200:
            raise RuntimeError(f"ACS without the cookie: HTTP {status}")
        self.pages[i] = page

    def read_bounces(self) -> None:
        """The browser's re-POST of each bounce page (not measured: a 10 KB form encoded
        costs the bench more than the page costs the app)."""
        for i, (_, cookie) in enumerate(self.started):
            page = self.pages[i]
            fields = {k: html.unescape(v) for k, v in _HIDDEN.findall(page.decode())}
            if "SAMLResponse" not in fields:
                raise RuntimeError("ACS without the cookie: no bounce form")
            self.bounced.append((urlencode(fields).encode(), cookie))

    async def acs(self, i: int) -> None:
        form, cookie = self.bounced[i]
        status, headers, page = await call(self.app, "POST", "/sso/bench/saml/acs",
                                           [*_FORM, (b"cookie", cookie.encode())], form)
        if status != 303 or "jitprov_session=" not in _cookies(headers):
            raise RuntimeError(f"ACS: HTTP {status} {page[:200]!r}")


class OidcLogins:
    """People signing in through the OIDC connection ``oidc``: the start, then the callback
    (the code redeemed at a token endpoint served in this process by ``httpx.MockTransport``,
    its ID token signed beforehand, not measured; the ID token verified; the provisioning)."""

    ISSUER = "https://idp.bench"

    def __init__(self, app: Any, ctx: ServiceContext) -> None:
        self.app, self.ctx = app, ctx
        self.key = RSAKey.generate_key(2048, parameters={"kid": "k1"}, private=True)
        self.next = 0
        self.started: list[tuple[dict[str, str], str]] = []  # (authorization query, cookie)
        self.answers: dict[str, bytes] = {}  # code -> the token endpoint's answer
        issuer = self.ISSUER
        discovery = {"issuer": issuer, "authorization_endpoint": f"{issuer}/authorize",
                     "token_endpoint": f"{issuer}/token", "jwks_uri": f"{issuer}/jwks",
                     "code_challenge_methods_supported": ["S256"]}
        jwks = KeySet([self.key]).as_dict(private=False)

        def provider(request: httpx.Request) -> httpx.Response:
            if request.url.path == "/token":
                code = parse_qs(request.content.decode())["code"][0]
                return httpx.Response(200, content=self.answers.pop(code),
                                      headers={"content-type": "application/json"})
            return httpx.Response(200, json=jwks if request.url.path == "/jwks"
                                  else discovery)

        ctx.http = httpx.Client(transport=httpx.MockTransport(provider))
        ctx.oidc = Providers(ctx.http)
        admin.add_oidc_connection(
            ctx, tenant="bench", slug="oidc", client_secret="bench-secret",
            config={"issuer": issuer, "client_id": "bench",
                    "scopes": ["openid", "email", "profile"]},
            mapping=OIDC_MAPPING, mapping_source="bench-oidc.yaml")

    def reset(self) -> None:
        self.started = []

    async def start(self, _i: int) -> None:
        status, headers, _ = await call(self.app, "GET", "/sso/oidc/login?return_to=/me", [])
        if status != 303:
            raise RuntimeError(f"OIDC login start: HTTP {status}")
        query = {k: v[0] for k, v in parse_qs(urlsplit(headers["location"][0]).query).items()}
        self.started.append((query, _cookies(headers)))

    def sign(self) -> None:
        """The provider's answers to every login started (not measured)."""
        now = int(time.time())
        for query, _ in self.started:
            self.next += 1
            n = self.next
            claims = {"iss": self.ISSUER, "aud": "bench", "sub": f"oidc-{n}",
                      "nonce": query["nonce"], "iat": now, "exp": now + 3600,
                      "email": f"oidc{n}@hospital.example", "email_verified": True,
                      "name": f"Person {n}", "department": "Ward 3",
                      "groups": ["Nurses", "All Staff"]}
            token = jwt.encode({"alg": "RS256", "kid": "k1"}, claims, self.key)
            self.answers[f"code-{n}"] = json.dumps(
                {"id_token": token, "access_token": "a" * 43, "token_type": "Bearer"}).encode()
            query["code"] = f"code-{n}"

    async def callback(self, i: int) -> None:
        query, cookie = self.started[i]
        answer = urlencode({"code": query["code"], "state": query["state"]})
        target = f"/sso/oidc/oidc/callback?{answer}"
        status, headers, page = await call(self.app, "GET", target,
                                           [(b"cookie", cookie.encode())])
        if status != 303 or "jitprov_session=" not in _cookies(headers):
            raise RuntimeError(f"OIDC callback: HTTP {status} {page[:200]!r}")


async def _rows(n: int) -> list[dict[str, Any]]:
    workdir = tempfile.mkdtemp(prefix="jitprov-bench-")
    db = Database.connect(f"sqlite:///{workdir}/handoff.db", pool_size=4)
    db.upgrade()
    ctx = ServiceContext(db=db, secretbox=SecretBox("bench"))
    app = create_app(Settings(base_url=BASE_URL, secret_key="bench"), ctx=ctx)
    idp = FakeSamlIdp()
    admin.create_tenant(ctx, "bench")
    admin.add_saml_connection(ctx, tenant="bench", slug="bench", metadata_xml=idp.metadata(),
                              metadata_url=None, mapping=MAPPING, mapping_source="bench.yaml")
    admin.add_saml_connection(ctx, tenant="bench", slug="lean", metadata_xml=idp.metadata(),
                              metadata_url=None, mapping=MAPPING, mapping_source="bench.yaml",
                              options={"sign_authn_requests": False})
    scim = InProcess(app, scim_tokens.create_token(ctx, "bench", "bench")[1])
    logins = SamlLogins(app, ctx, idp)
    rows: list[dict[str, Any]] = []

    async def timed(scenario: str | None, fn: Callable[[int], Awaitable[None]],
                    ops: int) -> None:
        figures = await _measure(fn, ops, 1)
        if scenario is not None:
            rows.append({"scenario": scenario, "db": "sqlite", "clients": 1, **figures})

    def created(start: int) -> Callable[[int], Awaitable[None]]:
        async def post(i: int) -> None:
            status, out = await scim("POST", "/Users", user_body(start + i))
            if status != 201:
                raise RuntimeError(f"POST /Users: HTTP {status} {out[:200]!r}")
        return post

    async def empty(_i: int) -> None:
        await run_in_threadpool(lambda: None)

    async def unsigned_start(_i: int) -> None:
        status, _, _ = await call(app, "GET", "/sso/lean/login?return_to=/me", [])
        if status != 303:
            raise RuntimeError(f"login start: HTTP {status}")

    async def login_round(ops: int, acs: str | None, *, parts: bool) -> None:
        """``ops`` first logins; the start and the bounce recorded when ``parts``, the ACS
        as ``acs``."""
        logins.reset()
        await timed("SAML login start (AuthnRequest signed)" if parts else None,
                    logins.start, ops)
        logins.sign()
        await timed("SAML ACS without the cookie (the bounce page)" if parts else None,
                    logins.bounce, ops)
        logins.read_bounces()
        await timed(acs, logins.acs, ops)

    oidc = OidcLogins(app, ctx)

    async def oidc_round(ops: int, scenario: str | None) -> None:
        oidc.reset()
        await timed(None, oidc.start, ops)
        oidc.sign()
        await timed(scenario, oidc.callback, ops)

    await oidc_round(20, None)  # warm: the discovery document, the keys
    await login_round(20, None, parts=False)  # warm: caches, pool, statements
    await timed(None, created(0), 50)
    await timed(None, empty, 200)
    await login_round(n, "SAML ACS, first login (on the event loop, as served on SQLite)",
                      parts=True)
    await timed(None, unsigned_start, 20)
    await timed("SAML login start, AuthnRequest unsigned (sign_authn_requests: false)",
                unsigned_start, n)
    with in_a_thread():
        await login_round(n, "SAML ACS, first login, service in a worker thread",
                          parts=False)
    await timed("SCIM POST /Users (on the event loop, as served on SQLite)", created(10**6),
                4 * n)
    with in_a_thread():
        await timed("SCIM POST /Users, service in a worker thread", created(2 * 10**6),
                    4 * n)
    await oidc_round(n, "OIDC callback, first login (the token endpoint's answer awaited and "
                        "the provisioning run on the event loop, as served on SQLite)")
    with in_a_thread():
        await oidc_round(n, "OIDC callback, first login, all of it in one worker thread "
                            "(as served on PostgreSQL)")
    await timed("an empty hand-off (run_in_threadpool of a no-op)", empty, 10 * n)
    db.dispose()
    return rows


def _child(n: int, cpu: int | None) -> None:
    if cpu is not None:  # before any thread exists: every thread inherits it
        os.sched_setaffinity(0, {cpu})
    logs.configure("json", "INFO")  # as `jitprov serve`: the request line at INFO (to stderr)
    print(json.dumps(asyncio.run(_rows(n))))


def run(*, ops: int, postgres_url: str = "") -> list[dict[str, Any]]:
    """Both sets (free, pinned to one CPU), each in a child process; SQLite only."""
    n = max(50, min(ops, 2000) // 4)
    rows: list[dict[str, Any]] = []
    cpus = sorted(os.sched_getaffinity(0))
    for label, cpu in (("", None), (", pinned to one CPU", cpus[-1])):
        done = subprocess.run([sys.executable, "-m", "bench.handoff", "--child",
                               json.dumps([n, cpu])], check=True, capture_output=True,
                              text=True)
        for row in json.loads(done.stdout.strip().splitlines()[-1]):
            row["scenario"] += label
            rows.append(row)
    return rows


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        _child(*json.loads(sys.argv[2]))
    else:
        for row in run(ops=int(sys.argv[1]) if len(sys.argv) > 1 else 2000):
            print(f"{row['scenario']:<75} {row['cpu_ms_per_op']:.3f} ms CPU  "
                  f"p50 {row['p50_ms']:.3f} ms")
