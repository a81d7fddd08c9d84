"""A real SAML 2.0 IdP for the interop tests: pysaml2's ``saml2.server.Server`` (a library
jitprov did not write; it signs with the ``xmlsec1`` binary) behind a small WSGI app with a
username/password login form.

    python server.py CONFIG.json      # prints "LISTENING <port>" once it accepts connections

CONFIG.json: {"host": "localhost", "key_file": ..., "cert_file": ..., "users_file": ...,
"sp_metadata_dir": ..., "want_authn_requests_signed": false}. The IdP binds 127.0.0.1 on an
ephemeral port and names itself ``http://{host}:{port}``. ``users_file`` ({"alice":
{"password": ..., "attributes": {...}}}) is re-read at every login, so a test can change a
user's attributes between logins. Every ``*.xml`` file in ``sp_metadata_dir`` is loaded as SP
metadata at the next request.

Endpoints: ``GET /metadata`` (IdP metadata), ``GET /sso/redirect`` (AuthnRequest over
HTTP-Redirect -> login form), ``POST /login`` (credentials -> signed Response over HTTP-POST,
the auto-submitting form of pysaml2), ``GET /healthz``.
"""

from __future__ import annotations

import html
import json
import secrets
import sys
import threading
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.config import IdPConfig
from saml2.metadata import create_metadata_string
from saml2.response import IncorrectlySigned
from saml2.saml import NAMEID_FORMAT_PERSISTENT, NameID
from saml2.server import Server
from saml2.sigver import SignatureError

Environ = dict[str, Any]


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class App:
    def __init__(self, config: dict[str, Any], base: str) -> None:
        self.config = config
        self.base = base
        idp_config = IdPConfig()
        idp_config.load({
            "entityid": f"{base}/metadata",
            "service": {"idp": {
                "name": "pysaml2 test IdP",
                "endpoints": {"single_sign_on_service": [
                    (f"{base}/sso/redirect", BINDING_HTTP_REDIRECT)]},
                "name_id_format": [NAMEID_FORMAT_PERSISTENT],
                # True: unsigned AuthnRequests are refused, signed ones verified against the
                # SP metadata's certificate (HTTP-Redirect, Bindings 3.4.4.1)
                "want_authn_requests_signed": bool(config.get("want_authn_requests_signed")),
                "sign_assertion": True,
                "sign_response": False,
                "policy": {"default": {"lifetime": {"minutes": 5},
                                       "attribute_restrictions": None}},
            }},
            "key_file": config["key_file"],
            "cert_file": config["cert_file"],
            "xmlsec_binary": config.get("xmlsec_binary", "/usr/bin/xmlsec1"),
            "metadata": {},
            "signing_algorithm": "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
            "digest_algorithm": "http://www.w3.org/2001/04/xmlenc#sha256",
        })
        self.idp = Server(config=idp_config)
        self.loaded: set[str] = set()
        self.pending: dict[str, tuple[Any, str]] = {}  # login form key -> (request, relay)
        self.lock = threading.Lock()

    def load_sp_metadata(self) -> None:
        for path in sorted(Path(self.config["sp_metadata_dir"]).glob("*.xml")):
            if str(path) not in self.loaded:
                self.idp.metadata.load("inline", path.read_text("utf-8"))
                self.loaded.add(str(path))

    def __call__(self, environ: Environ, start_response: Any) -> list[bytes]:
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")
        try:
            with self.lock:
                self.load_sp_metadata()
                if method == "GET" and path == "/healthz":
                    return self.reply(start_response, "200 OK", b"ok", "text/plain")
                if method == "GET" and path == "/metadata":
                    xml = create_metadata_string(None, self.idp.config, sign=False)
                    return self.reply(start_response, "200 OK", xml,
                                      "application/samlmetadata+xml")
                if method == "GET" and path == "/sso/redirect":
                    return self.sso(environ, start_response)
                if method == "POST" and path == "/login":
                    return self.login(environ, start_response)
            return self.reply(start_response, "404 Not Found", b"not found", "text/plain")
        except Exception as exc:  # a test peer: show the error rather than hang
            message = f"{type(exc).__name__}: {exc}".encode()
            return self.reply(start_response, "500 Internal Server Error", message,
                              "text/plain")

    @staticmethod
    def reply(start_response: Any, status: str, body: bytes | str,
              content_type: str) -> list[bytes]:
        data = body.encode() if isinstance(body, str) else body
        start_response(status, [("Content-Type", content_type),
                                ("Content-Length", str(len(data))),
                                ("Cache-Control", "no-store")])
        return [data]

    def sso(self, environ: Environ, start_response: Any) -> list[bytes]:
        query = parse_qs(environ.get("QUERY_STRING", ""))
        saml_request = query.get("SAMLRequest", [""])[0]
        relay_state = query.get("RelayState", [""])[0]
        sigalg = query.get("SigAlg", [None])[0]
        signature = query.get("Signature", [None])[0]
        try:
            parsed = self.idp.parse_authn_request(saml_request, BINDING_HTTP_REDIRECT,
                                                  relay_state=relay_state or None,
                                                  sigalg=sigalg, signature=signature)
            if parsed is None:
                raise ValueError("the AuthnRequest did not verify")
        except (SignatureError, IncorrectlySigned, ValueError, TypeError) as exc:
            return self.reply(start_response, "400 Bad Request", f"bad request: {exc}",
                              "text/plain")
        key = secrets.token_urlsafe(16)
        self.pending[key] = (parsed.message, relay_state)
        return self.reply(start_response, "200 OK", self.form(key, ""), "text/html")

    @staticmethod
    def form(key: str, error: str) -> str:
        alert = f'<p id="error" role="alert">{html.escape(error)}</p>' if error else ""
        return (
            "<!doctype html><html><head><title>Test IdP login</title></head><body>"
            f"<h1>pysaml2 test IdP</h1>{alert}"
            '<form method="post" action="/login">'
            f'<input type="hidden" name="key" value="{html.escape(key)}">'
            '<label>Username <input name="username" id="username" autocomplete="off"></label>'
            '<label>Password <input name="password" id="password" type="password"></label>'
            '<button type="submit" id="submit">Sign in</button></form></body></html>')

    def login(self, environ: Environ, start_response: Any) -> list[bytes]:
        size = int(environ.get("CONTENT_LENGTH") or 0)
        form = {k: v[0] for k, v in parse_qs(environ["wsgi.input"].read(size).decode()).items()}
        key = form.get("key", "")
        if key not in self.pending:
            return self.reply(start_response, "400 Bad Request", "unknown login", "text/plain")
        users = json.loads(Path(self.config["users_file"]).read_text("utf-8"))
        user = users.get(form.get("username", ""))
        if user is None or not secrets.compare_digest(user["password"],
                                                      form.get("password", "")):
            return self.reply(start_response, "401 Unauthorized",
                              self.form(key, "wrong username or password"), "text/html")
        request, relay_state = self.pending.pop(key)
        sp_entity_id = request.issuer.text
        acs_url = request.assertion_consumer_service_url
        if not acs_url:
            acs_url, _ = self.idp.pick_binding("assertion_consumer_service",
                                               bindings=[BINDING_HTTP_POST],
                                               entity_id=sp_entity_id)
        name_id = NameID(format=NAMEID_FORMAT_PERSISTENT, sp_name_qualifier=sp_entity_id,
                         name_qualifier=self.idp.config.entityid,
                         text=user.get("subject", form["username"]))
        response = self.idp.create_authn_response(
            identity=user["attributes"], in_response_to=request.id, destination=acs_url,
            sp_entity_id=sp_entity_id, name_id=name_id, userid=form["username"],
            authn={"class_ref": "urn:oasis:names:tc:SAML:2.0:ac:classes:Password"},
            sign_assertion=True, sign_response=False,
            # pysaml2 signs with rsa-sha1 unless told otherwise (jitprov refuses SHA-1)
            sign_alg="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
            digest_alg="http://www.w3.org/2001/04/xmlenc#sha256")
        info = self.idp.apply_binding(BINDING_HTTP_POST, response, acs_url, relay_state,
                                      response=True)
        return self.reply(start_response, "200 OK", info["data"], "text/html")


def main() -> None:
    config = json.loads(Path(sys.argv[1]).read_text("utf-8"))
    server: WSGIServer = make_server("127.0.0.1", 0, lambda e, s: [b""],
                                     handler_class=QuietHandler)
    port = server.server_address[1]
    server.set_app(App(config, f"http://{config.get('host', 'localhost')}:{port}"))
    print(f"LISTENING {port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
