"""A real SAML IdP (pysaml2's, see ``saml_idp/server.py``) on loopback, for interop tests.

Usage::

    with SamlIdp(users={"alice": {"password": "pw", "attributes": {"mail": [...]}}}) as idp:
        idp.metadata_url                     # "http://localhost:<port>/metadata"
        idp.add_sp_metadata(xml)             # our SP metadata, before the first login
        acs_url, fields = idp.sign_in(sso_redirect_url, "alice", "pw")   # an HTTP client
        idp.set_user("alice", "pw", {...})   # the next login sees the new attributes

The IdP names itself ``http://localhost:<port>`` by default (``host=``), a different site from
``http://127.0.0.1:<port>``. It signs the Assertion only by default; ``sign_response=True,
sign_assertion=False`` makes it sign only the Response (Keycloak's default shape). It needs
pysaml2 (the ``dev`` extra) and Debian's ``xmlsec1``; without them :class:`SamlIdpUnavailable`
is raised.
"""

from __future__ import annotations

import datetime as dt
import html
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

SERVER = Path(__file__).resolve().parent / "saml_idp" / "server.py"
START_TIMEOUT = 30.0
HTTP_TIMEOUT = 10.0


class SamlIdpUnavailable(RuntimeError):
    """pysaml2 or xmlsec1 is missing: the SAML interop tests cannot run here."""


class SamlIdpError(RuntimeError):
    """The IdP or a login through it did not behave as expected."""


def check_available() -> str:
    """The xmlsec1 path; raises SamlIdpUnavailable when the IdP cannot run here."""
    xmlsec1 = shutil.which("xmlsec1")
    if xmlsec1 is None:
        raise SamlIdpUnavailable("`xmlsec1` is not on PATH (Debian package xmlsec1)")
    # not imported here: pysaml2 warns at import, and the suite turns warnings into errors
    if importlib.util.find_spec("saml2") is None:
        raise SamlIdpUnavailable("pysaml2 is not installed (pip install -e '.[dev]')")
    return xmlsec1


def _write_keypair(directory: Path) -> tuple[Path, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pysaml2 test IdP")])
    start = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(start + dt.timedelta(days=30))
            .sign(key, hashes.SHA256()))
    key_file, cert_file = directory / "idp.key", directory / "idp.crt"
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.TraditionalOpenSSL,
                                           serialization.NoEncryption()))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_file, cert_file


def _write_json(path: Path, value: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, indent=2), encoding="utf-8")
    os.replace(tmp, path)


def hidden_fields(page: str) -> dict[str, str]:
    """The hidden inputs of an HTML form (either attribute order)."""
    fields: dict[str, str] = {}
    for tag in re.findall(r"<input\b[^>]*>", page):
        if 'type="hidden"' not in tag:
            continue
        name = re.search(r'name="([^"]*)"', tag)
        value = re.search(r'value="([^"]*)"', tag)
        if name:
            fields[html.unescape(name.group(1))] = html.unescape(value.group(1) if value
                                                                 else "")
    return fields


def form_action(page: str) -> str:
    match = re.search(r'<form[^>]*action="([^"]*)"', page)
    if match is None:
        raise SamlIdpError(f"no form in the page: {page[:300]}")
    return html.unescape(match.group(1))


class SamlIdp:
    def __init__(self, users: Mapping[str, Mapping[str, Any]] | None = None, *,
                 host: str = "localhost", want_authn_requests_signed: bool = False,
                 sign_assertion: bool = True, sign_response: bool = False) -> None:
        self.host = host
        self.want_authn_requests_signed = want_authn_requests_signed
        self.sign_assertion = sign_assertion
        self.sign_response = sign_response
        self.users: dict[str, dict[str, Any]] = {k: dict(v) for k, v in (users or {}).items()}
        self.base_url = ""
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._process: subprocess.Popen[str] | None = None
        self._sp_files = 0
        self.requested_authn_context = ""  # of the last sign_in

    @property
    def metadata_url(self) -> str:
        return f"{self.base_url}/metadata"

    def __enter__(self) -> Self:
        xmlsec1 = check_available()
        self._tmp = tempfile.TemporaryDirectory(prefix="jitprov-saml-idp-")
        work = Path(self._tmp.name)
        key_file, cert_file = _write_keypair(work)
        (work / "sp").mkdir()
        _write_json(work / "users.json", self.users)
        _write_json(work / "config.json", {
            "host": self.host, "key_file": str(key_file), "cert_file": str(cert_file),
            "users_file": str(work / "users.json"), "sp_metadata_dir": str(work / "sp"),
            "xmlsec_binary": xmlsec1,
            "want_authn_requests_signed": self.want_authn_requests_signed,
            "sign_assertion": self.sign_assertion, "sign_response": self.sign_response})
        self._log = (work / "idp.log").open("w")
        self._process = subprocess.Popen(
            [sys.executable, "-W", "ignore", str(SERVER), str(work / "config.json")],
            cwd=work, stdout=subprocess.PIPE, stderr=self._log, text=True)
        port = self._await_port()
        self.base_url = f"http://{self.host}:{port}"
        return self

    def _await_port(self) -> int:
        assert self._process is not None and self._process.stdout is not None
        found: list[str] = []
        stdout = self._process.stdout
        reader = threading.Thread(target=lambda: found.append(stdout.readline()), daemon=True)
        reader.start()
        reader.join(START_TIMEOUT)
        line = found[0] if found else ""
        if not line.startswith("LISTENING "):
            log = self.log()
            self.close()
            raise SamlIdpError(f"the test IdP did not start: {line!r}\n{log[-3000:]}")
        return int(line.split()[1])

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def log(self) -> str:
        """What the IdP wrote on stderr (for failure messages)."""
        if self._tmp is None:
            return ""
        return (Path(self._tmp.name) / "idp.log").read_text("utf-8", errors="replace")

    def close(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            if self._process.stdout is not None:
                self._process.stdout.close()
            self._process = None
            self._log.close()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    # -- test controls ---------------------------------------------------------------------

    def set_user(self, username: str, password: str, attributes: Mapping[str, list[str]],
                 *, subject: str | None = None) -> None:
        """Create or replace a user; the IdP re-reads its users at every login."""
        assert self._tmp is not None, "start the IdP first"
        self.users[username] = {"password": password, "attributes": dict(attributes),
                                **({"subject": subject} if subject else {})}
        _write_json(Path(self._tmp.name) / "users.json", self.users)

    def add_sp_metadata(self, xml: bytes) -> None:
        """Trust an SP (its ACS URL and entity id), from its metadata."""
        assert self._tmp is not None, "start the IdP first"
        self._sp_files += 1
        (Path(self._tmp.name) / "sp" / f"sp-{self._sp_files}.xml").write_bytes(xml)

    def sessions(self) -> dict[str, dict[str, Any]]:
        """The IdP's sessions: {SessionIndex: {"user", "active"}}."""
        answer = httpx.get(f"{self.base_url}/sessions", timeout=HTTP_TIMEOUT)
        answer.raise_for_status()
        result: dict[str, dict[str, Any]] = answer.json()
        return result

    def logout_responses(self) -> list[dict[str, Any]]:
        """The LogoutResponses SPs sent back to the IdP's logout requests, as it read them:
        {"binding", "in_response_to", "status", "destination", "signature_ok"} (or
        {"error"})."""
        answer = httpx.get(f"{self.base_url}/logout-responses", timeout=HTTP_TIMEOUT)
        answer.raise_for_status()
        result: list[dict[str, Any]] = answer.json()
        return result

    def initiate_logout(self, session_index: str, *, binding: str = "redirect",
                        relay_state: str = "") -> httpx.Response:
        """Start an IdP-initiated logout of one IdP session: the IdP's answer is a 303 to
        the SP's SingleLogoutService with a signed LogoutRequest (``redirect``), or an
        auto-submitting form that posts it there (``post``)."""
        return httpx.get(f"{self.base_url}/initiate-logout", timeout=HTTP_TIMEOUT,
                         params={"session_index": session_index, "binding": binding,
                                 "relay_state": relay_state})

    # -- a browser, played by an HTTP client -------------------------------------------------

    def sign_in(self, sso_redirect_url: str, username: str,
                password: str, *, otp: str | None = None) -> tuple[str, dict[str, str]]:
        """Follow the AuthnRequest to the IdP's login form, submit the credentials and return
        the auto-post form the IdP answers: (ACS URL, {SAMLResponse, RelayState}). Raises
        SamlIdpError with the IdP's message when it refuses (a wrong password, say). ``otp``:
        the one-time code typed too (the user's ``otp`` makes it a two-factor sign-in).
        ``requested_authn_context`` is then what the AuthnRequest asked for, as pysaml2
        read it ("exact: <class refs>", or "")."""
        with httpx.Client(timeout=HTTP_TIMEOUT, follow_redirects=False) as client:
            page = client.get(sso_redirect_url)
            if page.status_code != 200:
                raise SamlIdpError(f"IdP SSO answered {page.status_code}: {page.text[:300]}")
            key = hidden_fields(page.text)["key"]
            asked = re.search(r'<p id="requested-authn-context">([^<]*)</p>', page.text)
            self.requested_authn_context = html.unescape(asked.group(1)) if asked else ""
            answer = client.post(f"{self.base_url}/login",
                                 data={"key": key, "username": username, "password": password,
                                       **({"otp": otp} if otp else {})})
        if answer.status_code != 200:
            error = re.search(r'<p id="error"[^>]*>([^<]*)</p>', answer.text)
            raise SamlIdpError(f"IdP refused the login ({answer.status_code}): "
                               f"{html.unescape(error.group(1)) if error else answer.text[:300]}")
        return form_action(answer.text), hidden_fields(answer.text)
