"""SimpleSAMLphp (Debian's ``simplesamlphp`` package, a SAML IdP jitprov did not write) on
loopback, served by PHP's built-in web server, for interop tests.

Usage::

    with SimpleSamlPhpIdp(users={"ana": {"password": "pw", "subject": "ana-1",
                                         "attributes": {"mail": [...]}}}) as idp:
        idp.metadata_url                     # "http://localhost:<port>/saml2/idp/metadata.php"
        idp.add_sp_metadata(xml)             # our SP metadata, before the first login
        acs_url, fields = idp.sign_in(sso_redirect_url, "ana", "pw")   # an HTTP client
        idp.set_user("ana", "pw", {...})     # the next login sees the new attributes

The configuration is ``simplesamlphp/`` (config.php, authsources.php and the metadata sources),
copied into a temporary directory with a ``settings.json`` naming this run's URL, key pair and
users (``exampleauth:UserPass``, re-read at every request). The trusted SP comes from our SP
metadata, read by SimpleSAMLphp's own metadata parser: ``AuthnRequestsSigned="true"`` there
makes it refuse an AuthnRequest without a valid signature (``validate.authnrequest``), and
``WantAssertionsSigned`` decides whether it signs the Assertion (it always signs the Response).
Without PHP or the package, :class:`SimpleSamlPhpUnavailable` is raised.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping
from html import unescape
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from tests.interop.saml_idp import SamlIdpError, form_action, hidden_fields

CONFIG_TEMPLATE = Path(__file__).resolve().parent / "simplesamlphp"
#: where Debian's package puts SimpleSAMLphp (its document root is ``www``)
INSTALL_DIR = Path("/usr/share/simplesamlphp")
#: PHP extensions SimpleSAMLphp 1.19 needs to sign and to parse SAML
PHP_EXTENSIONS = ("dom", "openssl", "xml", "session", "mbstring")
START_TIMEOUT = 20.0
HTTP_TIMEOUT = 15.0


class SimpleSamlPhpUnavailable(RuntimeError):
    """PHP or Debian's simplesamlphp package is missing: these interop tests cannot run."""


def check_available() -> str:
    """The ``php`` path; raises SimpleSamlPhpUnavailable saying what is missing."""
    php = shutil.which("php")
    if php is None:
        raise SimpleSamlPhpUnavailable("`php` is not on PATH (Debian package php-cli)")
    if not (INSTALL_DIR / "www" / "saml2" / "idp" / "SSOService.php").is_file():
        raise SimpleSamlPhpUnavailable(f"SimpleSAMLphp is not installed in {INSTALL_DIR} "
                                       "(Debian package simplesamlphp)")
    modules = subprocess.run([php, "-m"], capture_output=True, text=True, timeout=30,
                             check=False).stdout.lower().split()
    missing = [name for name in PHP_EXTENSIONS if name not in modules]
    if missing:
        raise SimpleSamlPhpUnavailable(f"PHP lacks the extension(s) {', '.join(missing)} "
                                       "(Debian packages php-xml, php-mbstring)")
    return php


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _write_keypair(directory: Path) -> tuple[Path, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "SimpleSAMLphp test IdP")])
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


class SimpleSamlPhpIdp:
    def __init__(self, users: Mapping[str, Mapping[str, Any]] | None = None, *,
                 host: str = "localhost", sign_logout: bool = False) -> None:
        self.host = host
        #: ``sign.logout``: sign logout messages (SimpleSAMLphp's default is not to)
        self.sign_logout = sign_logout
        self.users: dict[str, dict[str, Any]] = {k: dict(v) for k, v in (users or {}).items()}
        self.base_url = ""
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._sp_files = 0

    @property
    def entity_id(self) -> str:
        return f"{self.base_url}/saml2/idp/metadata.php"

    @property
    def metadata_url(self) -> str:
        return self.entity_id

    @property
    def sso_url(self) -> str:
        return f"{self.base_url}/saml2/idp/SSOService.php"

    def __enter__(self) -> Self:
        php = check_available()
        self._tmp = tempfile.TemporaryDirectory(prefix="jitprov-simplesamlphp-")
        root = Path(self._tmp.name)
        work, config = root / "work", root / "config"
        shutil.copytree(CONFIG_TEMPLATE, config)
        (config / "sp").mkdir()
        for name in ("cert", "log", "data", "tmp", "sessions"):
            (work / name).mkdir(parents=True)
        key_file, cert_file = _write_keypair(work)
        _write_json(work / "users.json", self.users)
        self._users_file = work / "users.json"
        self._sp_dir = config / "sp"
        self._log_dir = work / "log"
        port = _free_port()
        self.base_url = f"http://{self.host}:{port}"
        _write_json(config / "settings.json", {
            "work": str(work), "base_url": self.base_url,
            "secret_salt": secrets.token_hex(16), "admin_password": secrets.token_hex(16),
            "key_file": str(key_file), "cert_file": str(cert_file),
            "users_file": str(work / "users.json"), "sign_logout": self.sign_logout})
        self._server_log = (work / "server.log").open("wb")
        self._process = subprocess.Popen(
            [php, "-d", "opcache.enable_cli=0", "-d", "display_errors=stderr",
             "-S", f"127.0.0.1:{port}", "-t", str(INSTALL_DIR / "www")],
            cwd=work, env={**os.environ, "SIMPLESAMLPHP_CONFIG_DIR": str(config)},
            stdout=self._server_log, stderr=subprocess.STDOUT)
        self._await_ready()
        return self

    def _await_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                break
            try:
                if httpx.get(self.metadata_url, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        log = self.log()
        self.close()
        raise SamlIdpError(f"SimpleSAMLphp did not start:\n{log[-3000:]}")

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def log(self) -> str:
        """The PHP server's output and SimpleSAMLphp's log (for failure messages)."""
        if self._tmp is None:
            return ""
        work = Path(self._tmp.name) / "work"
        parts = []
        for path in (work / "server.log", work / "log" / "simplesamlphp.log"):
            if path.exists():
                parts.append(path.read_text("utf-8", errors="replace"))
        return "\n".join(parts)

    def close(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
            self._server_log.close()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    # -- test controls ---------------------------------------------------------------------

    def set_user(self, username: str, password: str, attributes: Mapping[str, list[str]],
                 *, subject: str | None = None) -> None:
        """Create or replace a user; SimpleSAMLphp re-reads its users at every request."""
        assert self._tmp is not None, "start the IdP first"
        self.users[username] = {"password": password, "attributes": dict(attributes),
                                **({"subject": subject} if subject else {})}
        _write_json(self._users_file, self.users)

    def add_sp_metadata(self, xml: bytes) -> None:
        """Trust an SP, from its metadata (SimpleSAMLphp parses it at every request)."""
        assert self._tmp is not None, "start the IdP first"
        self._sp_files += 1
        (self._sp_dir / f"sp-{self._sp_files}.xml").write_bytes(xml)

    # -- a browser, played by an HTTP client -------------------------------------------------

    def sign_in(self, sso_redirect_url: str, username: str, password: str, *,
                client: httpx.Client | None = None) -> tuple[str, dict[str, str]]:
        """Follow the AuthnRequest to SimpleSAMLphp's login form (``loginuserpass.php``),
        submit the credentials and return the auto-post form it answers: (ACS URL,
        {SAMLResponse, RelayState}). Raises SamlIdpError with SimpleSAMLphp's message when it
        refuses (an AuthnRequest without signature, a wrong password). ``client`` is the
        browser's side at the IdP (its cookies keep the IdP session, for Single Logout); a
        fresh one by default."""
        if client is None:
            with httpx.Client(timeout=HTTP_TIMEOUT) as fresh:
                return self._sign_in(fresh, sso_redirect_url, username, password)
        return self._sign_in(client, sso_redirect_url, username, password)

    @staticmethod
    def _sign_in(client: httpx.Client, sso_redirect_url: str, username: str,
                 password: str) -> tuple[str, dict[str, str]]:
        page = client.get(sso_redirect_url, follow_redirects=True)
        if page.status_code != 200 or "AuthState" not in page.text:
            raise SamlIdpError(f"SimpleSAMLphp SSO answered {page.status_code}: "
                               f"{_message(page.text)}")
        fields = hidden_fields(page.text)
        answer = client.post(str(page.url).split("?")[0],
                             data={**fields, "username": username, "password": password},
                             follow_redirects=True)
        if answer.status_code != 200 or "SAMLResponse" not in answer.text:
            raise SamlIdpError(f"SimpleSAMLphp refused the login ({answer.status_code}): "
                               f"{_message(answer.text)}")
        return form_action(answer.text), hidden_fields(answer.text)


def _message(page: str) -> str:
    """The readable part of a SimpleSAMLphp page: the cause of an error page (shown in its
    debug section), the error of a login form, or the start of the text."""
    if "Caused by:" in page:
        cause = page.split("Caused by:", 1)[1]
        return unescape(" ".join(re.sub(r"<[^>]+>", " ", cause).split()))[:300]
    error = re.search(r"<h2>Error</h2>.*?<strong>(.*?)</strong>", page, re.DOTALL)
    if error:
        return unescape(" ".join(error.group(1).split()))
    return unescape(" ".join(re.sub(r"<[^>]+>", " ", page).split()))[:300]
