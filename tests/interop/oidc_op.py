"""A real, certified OpenID Provider (panva/oidc-provider on Node) on loopback, for interop tests.

Usage::

    with OpenIdProvider(clients=[{...}], accounts={"alice": {"email": ...}}) as op:
        op.issuer                      # "http://127.0.0.1:<port>"
        url = op.issuer + "/auth?" + ...  # or the RP under test builds it from discovery
        redirect = complete_login(url, "alice")  # -> "<redirect_uri>?code=...&state=...&iss=..."
        op.set_account("alice", {...})  # the next login/token/userinfo sees the new claims
        jar = httpx.Cookies(); complete_login(url, "alice", cookies=jar)  # keep the OP session
        complete_logout(op.issuer + "/session/end", cookies=jar)  # sign out at the OP itself

Client metadata is oidc-provider's (OpenID Connect Dynamic Client Registration names), e.g.::

    {"client_id": "rp", "client_secret": "...", "redirect_uris": ["http://127.0.0.1:1/cb"],
     "token_endpoint_auth_method": "client_secret_basic",  # or client_secret_post,
     "grant_types": ["authorization_code"],                # or private_key_jwt with "jwks"
     "response_types": ["code"]}

The OP requires PKCE (S256), signs ID tokens with RS256 (an ES256 key is published too), and puts
the claims of the requested scopes (``openid email profile groups``; ``groups`` carries ``groups``
and ``department``) into the ID token as well as into userinfo. Storage is in memory: each
``OpenIdProvider`` is a fresh OP with fresh keys. RP-Initiated Logout and Back-Channel Logout
are enabled: a client registered with ``backchannel_logout_uri`` (and
``backchannel_logout_session_required: true`` for a ``sid`` in its tokens) gets a logout
token POSTed when the OP session ends (see :func:`complete_logout`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx

OP_DIR = Path(__file__).resolve().parent / "oidc_op"
SERVER = OP_DIR / "server.mjs"
MIN_NODE = (20, 18)  # oidc-provider 9 uses URL.parse and crypto.hash
START_TIMEOUT = 30.0  # per try; a start takes ~0.4 s
START_ATTEMPTS = 2
STOP_TIMEOUT = 10.0
NPM_TIMEOUT = 120.0  # a cold `npm ci` downloads ~40 small packages
HTTP_TIMEOUT = 10.0
MAX_HOPS = 20


class OidcOpUnavailable(RuntimeError):
    """Node or npm is missing or too old: the interop tests cannot run here."""


class OidcOpError(RuntimeError):
    """The OP, its installation or a login through it did not behave as expected."""


class _SilentStart(OidcOpError):
    """The OP's process printed no READY line in time (the text: its logs so far)."""


def _node_version(node: str) -> tuple[int, ...]:
    out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=10,
                         check=True).stdout.strip()
    match = re.fullmatch(r"v(\d+)\.(\d+)\.(\d+)", out)
    if not match:
        raise OidcOpUnavailable(f"cannot parse `node --version` output {out!r}")
    return tuple(int(part) for part in match.groups())


def node_executable() -> str:
    node = shutil.which("node")
    if node is None:
        raise OidcOpUnavailable("`node` is not on PATH (Node.js >= 20.18 is needed)")
    version = _node_version(node)
    if version[:2] < MIN_NODE:
        raise OidcOpUnavailable(
            f"Node.js {'.'.join(map(str, version))} is too old; oidc-provider 9 needs >= 20.18")
    return node


def ensure_installed() -> None:
    """Install the OP's npm dependencies (from the committed lock file) unless present."""
    node_executable()
    if (OP_DIR / "node_modules" / "oidc-provider" / "package.json").is_file():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise OidcOpUnavailable("`npm` is not on PATH")
    verb = "ci" if (OP_DIR / "package-lock.json").is_file() else "install"
    command = [npm, verb, "--no-audit", "--no-fund", "--ignore-scripts"]
    try:
        result = subprocess.run(command, cwd=OP_DIR, capture_output=True, text=True,
                                timeout=NPM_TIMEOUT, check=False)
    except subprocess.TimeoutExpired as exc:
        raise OidcOpError(f"`npm {verb}` in {OP_DIR} took more than {NPM_TIMEOUT:.0f}s") from exc
    if result.returncode != 0:
        raise OidcOpError(
            f"`npm {verb}` in {OP_DIR} failed with exit code {result.returncode}:\n"
            f"{result.stdout[-2000:]}\n{result.stderr[-4000:]}")


def _write_json(path: Path, value: Any) -> None:
    """Replace the file atomically: the OP re-reads it on every account lookup."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, indent=2), encoding="utf-8")
    os.replace(tmp, path)


class OpenIdProvider:
    """Runs ``node server.mjs`` on a free loopback port for the duration of a ``with`` block."""

    def __init__(self, clients: Sequence[Mapping[str, Any]],
                 accounts: Mapping[str, Mapping[str, Any]] | None = None, *,
                 acr_values: Sequence[str] = ()) -> None:
        """``acr_values``: the acr values the OP supports (without any, its ID tokens carry
        no ``acr``; a login's acr and amr are given to :func:`complete_login`)."""
        self.acr_values = list(acr_values)
        self.clients = [dict(client) for client in clients]
        self.accounts: dict[str, dict[str, Any]] = {
            sub: dict(claims) for sub, claims in (accounts or {}).items()}
        self.issuer = ""
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._run: Path | None = None  # the current try's directory (its log files)

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    @property
    def _dir(self) -> Path:
        assert self._tmp is not None, "the OP is not started"
        return Path(self._tmp.name)

    def start(self) -> None:
        """Start the OP and wait for its READY line. A start that prints nothing in
        ``START_TIMEOUT`` (once seen on a loaded CI machine: a Node process silent for 30 s
        where a start takes 0.4 s) is killed and tried once more, its logs kept for the
        error if the second try fails too."""
        node = node_executable()
        if not (OP_DIR / "node_modules" / "oidc-provider").is_dir():
            raise OidcOpError("oidc-provider is not installed; call ensure_installed() first")
        self._tmp = tempfile.TemporaryDirectory(prefix="jitprov-oidc-op-")
        _write_json(self._dir / "accounts.json", self.accounts)
        _write_json(self._dir / "config.json", {
            "clients": self.clients,
            "accounts_file": str(self._dir / "accounts.json"),
            "acr_values": self.acr_values,
        })
        earlier = ""
        for attempt in range(1, START_ATTEMPTS + 1):
            try:
                self._start_process(node, attempt)
                return
            except _SilentStart as exc:
                self._signal(signal.SIGKILL)
                earlier += f"--- try {attempt}: no READY within {START_TIMEOUT:.0f}s\n{exc}\n"
            except OidcOpError as exc:
                raise OidcOpError(f"{earlier}{exc}") from None
        raise OidcOpError(f"the OP did not print READY in {START_ATTEMPTS} tries:\n{earlier}")

    def _start_process(self, node: str, attempt: int) -> None:
        # Each try its own log files: a killed try never writes into the next one's. Output
        # goes to files, not pipes: nothing to drain, nothing left open. A session of its
        # own: a `node` that is a wrapper script is signalled with the Node it started.
        self._run = self._dir / f"try-{attempt}"
        self._run.mkdir()
        with (open(self._run / "stdout.log", "wb") as stdout,
              open(self._run / "stderr.log", "wb") as stderr):
            self._process = subprocess.Popen(
                [node, str(SERVER), str(self._dir / "config.json"), "0"],
                cwd=OP_DIR, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
                env={**os.environ, "NODE_ENV": "test", "DEBUG": ""},
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            line = (self._run / "stdout.log").read_text(encoding="utf-8", errors="replace")
            match = re.search(r"^READY (\S+)\n", line, re.MULTILINE)
            if match:
                self.issuer = match.group(1)
                return
            if self._process.poll() is not None:
                raise OidcOpError(
                    f"the OP exited with code {self._process.returncode} before READY:\n"
                    f"{self.logs()}")
            if time.monotonic() > deadline:
                raise _SilentStart(self.logs())
            time.sleep(0.05)

    def _signal(self, signum: int) -> bool:
        """Send ``signum`` to the OP's process group and wait for the OP; False if it is
        still running after ``STOP_TIMEOUT``. The process is forgotten once it has ended."""
        process = self._process
        if process is None:
            return True
        if process.poll() is None:
            try:
                os.killpg(process.pid, signum)
            except ProcessLookupError:
                pass
            try:
                process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                return False
        self._process = None
        return True

    def stop(self) -> None:
        if not self._signal(signal.SIGTERM):
            self._signal(signal.SIGKILL)
        tmp, self._tmp = self._tmp, None
        if tmp is not None:
            tmp.cleanup()

    def logs(self) -> str:
        """The OP's stdout and stderr so far (for failure messages)."""
        if self._tmp is None or self._run is None:
            return ""
        parts = []
        for name in ("stdout.log", "stderr.log"):
            path = self._run / name
            if path.exists():
                parts.append(f"--- {name}\n" + path.read_text(encoding="utf-8", errors="replace"))
        return "\n".join(parts)

    # -- accounts --------------------------------------------------------------------------

    def set_account(self, sub: str, claims: Mapping[str, Any]) -> None:
        """Add or replace an account; takes effect at the OP's next account lookup."""
        self.accounts[sub] = dict(claims)
        _write_json(self._dir / "accounts.json", self.accounts)

    def remove_account(self, sub: str) -> None:
        self.accounts.pop(sub, None)
        _write_json(self._dir / "accounts.json", self.accounts)

    # -- convenience -----------------------------------------------------------------------

    def discovery(self) -> dict[str, Any]:
        response = httpx.get(f"{self.issuer}/.well-known/openid-configuration",
                             timeout=HTTP_TIMEOUT)
        response.raise_for_status()
        document: dict[str, Any] = response.json()
        return document


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc.lower()


def _is_redirect_uri(url: str, redirect_uri: str | None) -> bool:
    if redirect_uri is None:
        return False
    a, b = urlsplit(url), urlsplit(redirect_uri)
    return (a.scheme, a.netloc.lower(), a.path) == (b.scheme, b.netloc.lower(), b.path)


def complete_login(authorize_url: str, username: str, *,
                   cookies: httpx.Cookies | None = None, acr: str | None = None,
                   amr: Sequence[str] = ()) -> str:
    """Do what the user's browser would, from the RP's authorization URL to the RP's callback.

    Follows the OP's redirects, logs in as ``username`` (an account id, i.e. the ``sub``),
    consents to everything requested, and returns the URL the OP redirects to at the RP's
    ``redirect_uri`` (with ``code``, ``state`` and ``iss``, or with ``error``) without requesting
    it. Only the OP (the authorization URL's origin) is ever contacted. Pass ``cookies`` to keep
    the OP session between calls (a second login then skips the login prompt); they are updated
    in place. An unknown ``username`` ends in ``error=access_denied`` at the redirect_uri.
    ``acr`` and ``amr`` say how the user authenticated: the OP puts them in the ID token
    (``acr`` only if the OP was started with that value in ``acr_values``).
    """
    op_origin = _origin(authorize_url)
    redirect_uri = parse_qs(urlsplit(authorize_url).query).get("redirect_uri", [None])[0]
    jar = cookies if cookies is not None else httpx.Cookies()
    with httpx.Client(cookies=jar, follow_redirects=False, timeout=HTTP_TIMEOUT,
                      trust_env=False) as client:
        try:
            return _drive(client, authorize_url, username, op_origin, redirect_uri,
                          how={**({"acr": acr} if acr else {}),
                               **({"amr": ",".join(amr)} if amr else {})})
        finally:
            jar.clear()
            jar.update(client.cookies)


def _drive(client: httpx.Client, authorize_url: str, username: str,
           op_origin: tuple[str, str], redirect_uri: str | None,
           how: Mapping[str, str] | None = None) -> str:
    response = client.get(authorize_url)
    for _ in range(MAX_HOPS):
        url = str(response.url)
        if response.is_redirect:
            location = urljoin(url, response.headers["location"])
            if _is_redirect_uri(location, redirect_uri) or _origin(location) != op_origin:
                return location
            response = client.get(location)
            continue
        if response.status_code == 200 and urlsplit(url).path.startswith("/interaction/"):
            prompt = response.json()["prompt"]
            if prompt == "login":
                form = {"prompt": "login", "login": username, **(how or {})}
            elif prompt == "consent":
                form = {"prompt": "consent"}
            else:
                raise OidcOpError(f"unsupported interaction prompt {prompt!r} at {url}")
            response = client.post(url, data=form)
            continue
        raise OidcOpError(
            f"the OP answered {response.status_code} at {url} instead of redirecting:\n"
            f"{response.text[:2000]}")
    raise OidcOpError(f"no redirect to the client after {MAX_HOPS} steps")


def complete_logout(logout_url: str, *, cookies: httpx.Cookies) -> str:
    """Do what the user's browser would at the OP's logout: GET ``logout_url`` (the RP's
    RP-initiated logout redirect, or ``<issuer>/session/end`` for a sign-out at the OP
    itself) with the OP session's ``cookies``, confirm, and return where the OP sends the
    browser afterwards (the RP's ``post_logout_redirect_uri`` with ``state``, not requested,
    or the OP's own success page). The OP has POSTed its back-channel logout tokens, and
    had their answers, before it answers the confirmation."""
    op_origin = _origin(logout_url)
    with httpx.Client(cookies=cookies, follow_redirects=False, timeout=HTTP_TIMEOUT,
                      trust_env=False) as client:
        try:
            response = client.get(logout_url)
            if response.status_code != 200 or response.json().get("prompt") != "logout":
                raise OidcOpError(f"the OP answered {response.status_code} at its logout:\n"
                                  f"{response.text[:2000]}")
            prompt = response.json()
            response = client.post(urljoin(logout_url, prompt["action"]),
                                   data={"xsrf": prompt["xsrf"], "logout": "yes"})
            for _ in range(MAX_HOPS):
                if not response.is_redirect:
                    return str(response.url)
                location = urljoin(str(response.url), response.headers["location"])
                if _origin(location) != op_origin:
                    return location
                response = client.get(location)
            raise OidcOpError(f"no end to the OP's logout after {MAX_HOPS} steps")
        finally:
            cookies.clear()
            cookies.update(client.cookies)
