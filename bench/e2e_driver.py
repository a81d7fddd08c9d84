"""The load generator of the end-to-end benchmark: browsers, played by httpx clients, each
signing people in through jitprov and the IdP as a browser would.

A login, per flow (every person's browser starts empty: no cookie of an earlier login):

- ``saml``: ``GET /sso/{c}/login`` (303 to the IdP with a signed AuthnRequest) → the IdP's
  auto-post form → ``POST /sso/{c}/saml/acs`` WITHOUT jitprov's cookies (the IdP's POST is
  cross-site, and the binding cookie is SameSite=Lax) → the bounce page → the same fields
  POSTed again, same-site, with the cookies → 303 to ``/me`` with the session cookie.
  ``bounce=False`` sends the cookie with the first POST (an IdP on the same site).
- ``oidc`` / ``oidc-userinfo``: ``GET /sso/{c}/login`` (303 to the authorization endpoint)
  → the IdP's 302 back with a code → ``GET /sso/{c}/oidc/callback`` (jitprov redeems the
  code, verifies the ID token, calls userinfo when the connection says so) → 303 to ``/me``.

The IdP requests are the browser's too (counted in latency, not in the server's CPU). Cookies
are kept by hand, per person, and only jitprov's are sent (by path): httpx's own jar is
disabled. One client per thread keeps its connections alive, as a browser does.

Run as ``python -m bench.e2e_driver SPEC_JSON`` by ``bench.e2e``: it warms up, prints
``ready``, waits for a line on stdin, runs, prints one JSON line (timings), waits for another
line, checks ``/me`` for a sample of the people it signed in, prints one JSON line (checks).
"""

from __future__ import annotations

import html
import json
import re
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench.plain_http import KeptAlive, PlainHTTPError

_INPUT = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')
_ACTION = re.compile(r'<form[^>]*action="([^"]*)"')


def new_client() -> httpx.Client:
    """A browser's connections (keep-alive); its cookies are kept by :class:`Browser` (the
    client's own jar is emptied after every answer)."""
    return httpx.Client(timeout=30, follow_redirects=False, trust_env=False)


@dataclass
class Browser:
    """One person's cookies for jitprov's origin: name -> (value, path)."""

    base: str
    jar: dict[str, tuple[str, str]] = field(default_factory=dict)

    def header(self, path: str) -> dict[str, str]:
        sent = "; ".join(f"{name}={value}" for name, (value, scope) in self.jar.items()
                         if path.startswith(scope))
        return {"cookie": sent} if sent else {}

    def keep(self, http: httpx.Client, response: httpx.Response) -> None:
        http.cookies.clear()
        for line in response.headers.get_list("set-cookie"):
            first, *attributes = line.split(";")
            name, _, value = first.strip().partition("=")
            attrs = {a.strip().split("=", 1)[0].lower(): a.strip().partition("=")[2]
                     for a in attributes}
            if attrs.get("max-age") == "0":
                self.jar.pop(name, None)
            else:
                self.jar[name] = (value.strip('"'), attrs.get("path", "/") or "/")

    def get(self, http: httpx.Client, path: str, **kwargs: Any) -> httpx.Response:
        response = http.get(self.base + path, headers=self.header(path), **kwargs)
        self.keep(http, response)
        return response

    def post(self, http: httpx.Client, path: str, data: dict[str, str], *,
             cookies: bool = True) -> httpx.Response:
        response = http.post(self.base + path, data=data,
                             headers=self.header(path) if cookies else {})
        self.keep(http, response)
        return response


class LoginFailed(RuntimeError):
    pass


def _expect(response: httpx.Response, status: int, what: str) -> None:
    if response.status_code != status:
        raise LoginFailed(f"{what}: HTTP {response.status_code} {response.text[:200]!r}")


def _path(url: str, base: str) -> str:
    if not url.startswith(base):
        raise LoginFailed(f"redirected away from jitprov: {url[:100]}")
    return url[len(base):]


#: single requests, measured alone to split a login's cost: flow -> what one operation is
PROBES = {"healthz": "GET /healthz", "start": "GET /sso/{c}/login (a login start)",
          "bounce": "POST /sso/{c}/saml/acs without the binding cookie (the bounce page)",
          "me": "GET /me, signed in",
          "verify": "GET /auth/verify, signed in (forward-auth: 200, identity headers, token)"}


class ProxyConnection:
    """What a reverse proxy's forward-auth subrequests look like to jitprov: one kept-alive
    connection, a short request with the browser's cookie and the proxy's headers, the answer
    read to its end. Plain sockets (:mod:`bench.plain_http`), so that the load generator, on
    the same cores, costs little beside the server it measures."""

    def __init__(self, base: str, cookie: str) -> None:
        self.connection = KeptAlive(base)
        self.headers = {"Cookie": cookie, "X-Forwarded-Method": "GET",
                        "X-Forwarded-Proto": "https",
                        "X-Forwarded-Host": "app.hospital.example",
                        "X-Forwarded-Uri": "/ward/3/patients"}

    def verify(self, email: str) -> None:
        """One subrequest; raises LoginFailed unless 200 with ``email``'s identity headers."""
        try:
            answer = self.connection.request("GET", "/auth/verify", self.headers)
        except (OSError, PlainHTTPError) as exc:
            raise LoginFailed(f"/auth/verify: {exc}") from exc
        if answer.status != 200:
            raise LoginFailed(f"/auth/verify: HTTP {answer.status}")
        if answer.header("x-jitprov-email") != email or not answer.header("x-jitprov-token"):
            raise LoginFailed("/auth/verify answered 200 without the identity headers")

    def close(self) -> None:
        self.connection.close()


class Probe:
    """One request of a kind in :data:`PROBES`, repeated; ``bounce``, ``me`` and ``verify``
    first make what they repeat (a signed SAMLResponse; a session) with one real login."""

    def __init__(self, http: httpx.Client, base: str, flow: str, slug: str) -> None:
        self.http, self.base, self.flow, self.slug = http, base, flow, slug
        self.browser = Browser(base)
        if flow == "bounce":
            start = self.browser.get(http, f"/sso/{slug}/login", params={"return_to": "/me"})
            idp = http.get(start.headers["location"] + "&login=probe")
            self.action = _path(html.unescape(_ACTION.search(idp.text).group(1)), base)  # type: ignore[union-attr]
            self.fields = {n: html.unescape(v) for n, v in _INPUT.findall(idp.text)}
        elif flow in ("me", "verify"):
            self.browser, _ = login(http, base, "oidc", slug, f"probe-{flow}")
        if flow == "verify":
            self.proxy = ProxyConnection(base, self.browser.header("/auth/verify")["cookie"])

    def __call__(self) -> None:
        http, browser = self.http, Browser(self.base)
        if self.flow == "healthz":
            _expect(browser.get(http, "/healthz"), 200, "healthz")
        elif self.flow == "start":
            _expect(browser.get(http, f"/sso/{self.slug}/login", params={"return_to": "/me"}),
                    303, "login start")
        elif self.flow == "bounce":
            _expect(browser.post(http, self.action, self.fields, cookies=False), 200, "bounce")
        elif self.flow == "verify":
            self.proxy.verify("probe-verify@hospital.example")
        else:
            _expect(self.browser.get(http, "/me"), 200, "/me")


def login(http: httpx.Client, base: str, flow: str, slug: str, user: str, *,
          bounce: bool = True) -> tuple[Browser, float]:
    """Sign ``user`` in through connection ``slug``; returns (their browser, seconds spent
    at the IdP). Raises LoginFailed or httpx.HTTPError."""
    browser = Browser(base)
    start = browser.get(http, f"/sso/{slug}/login", params={"return_to": "/me"})
    _expect(start, 303, "login start")
    at_idp = time.perf_counter()
    idp = http.get(start.headers["location"] + f"&login={user}")  # the person signs in
    if flow == "saml":
        _expect(idp, 200, "IdP SSO")
        action = html.unescape(_ACTION.search(idp.text).group(1))  # type: ignore[union-attr]
        fields = {n: html.unescape(v) for n, v in _INPUT.findall(idp.text)}
        at_idp = time.perf_counter() - at_idp
        acs = _path(action, base)
        done = browser.post(http, acs, fields, cookies=not bounce)  # cross-site: no cookie
        if bounce:
            _expect(done, 200, "ACS (bounce page expected)")
            again = {n: html.unescape(v) for n, v in _INPUT.findall(done.text)}
            if again.get("jitprov_bounce") != "1":
                raise LoginFailed("ACS answered 200 without the bounce form")
            done = browser.post(http, _path(base + html.unescape(
                _ACTION.search(done.text).group(1)), base), again)  # type: ignore[union-attr]
    else:
        _expect(idp, 302, "IdP authorization")
        at_idp = time.perf_counter() - at_idp
        done = browser.get(http, _path(idp.headers["location"], base))
    _expect(done, 303, "login callback")
    if done.headers.get("location") != "/me" or "jitprov_session" not in browser.jar:
        raise LoginFailed(f"no session: location {done.headers.get('location')!r}")
    return browser, at_idp


def check_me(http: httpx.Client, browser: Browser, user: str, slug: str) -> str | None:
    """None when ``/me`` names the person, their connection and the mapped nurse role."""
    me = browser.get(http, "/me")
    if me.status_code != 200:
        return f"{user}: /me HTTP {me.status_code}"
    body = me.json()
    got = (body.get("email"), body.get("external_id"), body.get("connection"),
           "nurse" in body.get("roles", []))
    want = (f"{user}@hospital.example", user, slug, True)
    return None if got == want else f"{user}: /me {got} != {want}"


def run(spec: dict[str, Any]) -> None:
    base, flow, slug = str(spec["url"]), str(spec["flow"]), str(spec["slug"])
    clients, n, tag = int(spec["clients"]), int(spec["n"]), str(spec["tag"])
    warm, sample, bounce = int(spec["warm"]), int(spec["sample"]), bool(spec["bounce"])
    https = [new_client() for _ in range(clients)]
    latencies: list[list[float]] = [[] for _ in range(clients)]
    idp_times: list[list[float]] = [[] for _ in range(clients)]
    errors: list[str] = []
    kept: dict[str, Browser] = {}
    every = max(1, n // sample) if sample else 0

    probes = [Probe(http, base, flow, slug) for http in https] if flow in PROBES else []

    def worker(i: int, users: list[str], record: bool) -> None:
        http = https[i]
        for user in users:
            t0 = time.perf_counter()
            try:
                if probes:
                    probes[i]()
                    browser, at_idp = None, 0.0
                else:
                    browser, at_idp = login(http, base, flow, slug, user, bounce=bounce)
            except (httpx.HTTPError, LoginFailed, AttributeError) as exc:
                errors.append(f"{user}: {type(exc).__name__}: {exc}")
                continue
            if record:
                latencies[i].append(time.perf_counter() - t0)
                idp_times[i].append(at_idp)
                if browser is not None and every and int(user.rsplit("-", 1)[1]) % every == 0:
                    kept[user] = browser

    def run_all(names: list[str], record: bool) -> None:
        threads = [threading.Thread(target=worker, args=(i, names[i::clients], record))
                   for i in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    run_all([f"{tag}-w-{k}" for k in range(warm)], record=False)  # warm-up, not counted
    warm_errors = list(errors)
    errors.clear()
    print(json.dumps({"ready": True, "warm_errors": warm_errors[:3]}), flush=True)
    sys.stdin.readline()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    run_all([f"{tag}-{k}" for k in range(n)], record=True)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    done = sorted(x for mine in latencies for x in mine)
    at_idp = sorted(x for mine in idp_times for x in mine)
    print(json.dumps({
        "wall": wall, "cpu": cpu, "ok": len(done), "errors": len(errors),
        "first_errors": errors[:3],
        "p50": statistics.median(done) if done else 0.0,
        "p99": done[max(0, int(len(done) * 0.99) - 1)] if done else 0.0,
        "idp_p50": statistics.median(at_idp) if at_idp else 0.0}), flush=True)
    sys.stdin.readline()
    problems = [p for user, browser in sorted(kept.items())
                if (p := check_me(https[0], browser, user, slug)) is not None]
    for http in https:
        http.close()
    for probe in probes:
        if probe.flow == "verify":
            probe.proxy.close()
    print(json.dumps({"me_checked": len(kept), "me_wrong": len(problems),
                      "me_problems": problems[:3]}), flush=True)


if __name__ == "__main__":
    run(json.loads(sys.argv[1]))
