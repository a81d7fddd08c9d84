"""A real SAML 2.0 IdP for the interop tests: pysaml2's ``saml2.server.Server`` (a library
jitprov did not write; it signs with the ``xmlsec1`` binary) behind a small WSGI app with a
username/password login form.

    python server.py CONFIG.json      # prints "LISTENING <port>" once it accepts connections

CONFIG.json: {"host": "localhost", "key_file": ..., "cert_file": ..., "users_file": ...,
"sp_metadata_dir": ..., "want_authn_requests_signed": false, "sign_assertion": true,
"sign_response": false}. The IdP binds 127.0.0.1 on an ephemeral port and names itself
``http://{host}:{port}``. ``users_file`` ({"alice": {"password": ..., "attributes": {...}}})
is re-read at every login, so a test can change a user's attributes between logins. A user
with an ``"otp"`` who types it in the login form is authenticated with
``MobileTwoFactorContract``, anyone else with ``Password`` (the AuthnContextClassRef). Every
``*.xml`` file in ``sp_metadata_dir`` is loaded as SP metadata at the next request.

Endpoints: ``GET /metadata`` (IdP metadata), ``GET /sso/redirect`` (AuthnRequest over
HTTP-Redirect -> login form), ``POST /login`` (credentials -> signed Response over HTTP-POST,
the auto-submitting form of pysaml2), ``GET /healthz``.

Single Logout (pysaml2's LogoutRequest/LogoutResponse): ``GET /slo/redirect`` and
``POST /slo/post`` take an SP's LogoutRequest (the redirect signature verified against the SP
metadata's certificate when ``want_authn_requests_signed``; the session found by the exact
NameID, as pysaml2's session store keys it, and SessionIndex) and answer a signed
LogoutResponse, or take an SP's LogoutResponse (recorded, with whether its signature
verified); ``GET /initiate-logout?session_index=..&binding=redirect|post`` starts an
IdP-initiated logout of that session (a signed LogoutRequest to the SP's SingleLogoutService);
``GET /sessions`` lists the IdP sessions and ``GET /logout-responses`` what the SPs answered.
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
from saml2.s_utils import status_message_factory
from saml2.saml import NAMEID_FORMAT_PERSISTENT, NameID
from saml2.samlp import STATUS_UNKNOWN_PRINCIPAL, LogoutResponse
from saml2.server import Server
from saml2.sigver import SignatureError, verify_redirect_signature

Environ = dict[str, Any]
#: the AuthnContextClassRef of a password sign-in, and of one with the user's one-time code
PASSWORD = "urn:oasis:names:tc:SAML:2.0:ac:classes:Password"
TWO_FACTOR = "urn:oasis:names:tc:SAML:2.0:ac:classes:MobileTwoFactorContract"


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class App:
    def __init__(self, config: dict[str, Any], base: str) -> None:
        self.config = config
        self.base = base
        # what the IdP signs: the Assertion (the default), the Response, or both
        self.sign_assertion = bool(config.get("sign_assertion", True))
        self.sign_response = bool(config.get("sign_response", False))
        idp_config = IdPConfig()
        idp_config.load({
            "entityid": f"{base}/metadata",
            "service": {"idp": {
                "name": "pysaml2 test IdP",
                "endpoints": {"single_sign_on_service": [
                    (f"{base}/sso/redirect", BINDING_HTTP_REDIRECT)],
                    "single_logout_service": [
                        (f"{base}/slo/redirect", BINDING_HTTP_REDIRECT),
                        (f"{base}/slo/post", BINDING_HTTP_POST)]},
                "name_id_format": [NAMEID_FORMAT_PERSISTENT],
                # True: unsigned AuthnRequests are refused, signed ones verified against the
                # SP metadata's certificate (HTTP-Redirect, Bindings 3.4.4.1)
                "want_authn_requests_signed": bool(config.get("want_authn_requests_signed")),
                "sign_assertion": self.sign_assertion,
                "sign_response": self.sign_response,
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
        # SessionIndex -> {"user", "sp", "name_id" (a pysaml2 NameID), "active"}
        self.sessions: dict[str, dict[str, Any]] = {}
        self.logout_responses: list[dict[str, Any]] = []
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
                if path in ("/slo/redirect", "/slo/post"):
                    return self.single_logout(environ, start_response)
                if method == "GET" and path == "/initiate-logout":
                    return self.initiate_logout(environ, start_response)
                if method == "GET" and path == "/sessions":
                    body = {k: {"user": v["user"], "active": v["active"]}
                            for k, v in self.sessions.items()}
                    return self.reply(start_response, "200 OK", json.dumps(body),
                                      "application/json")
                if method == "GET" and path == "/logout-responses":
                    return self.reply(start_response, "200 OK",
                                      json.dumps(self.logout_responses), "application/json")
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
        return self.reply(start_response, "200 OK",
                          self.form(key, "", self.requested(parsed.message)), "text/html")

    @staticmethod
    def requested(request: Any) -> str:
        """The AuthnRequest's RequestedAuthnContext as pysaml2 parsed it: "exact: ref ref"
        (empty when there is none), shown on the login form for the tests to read."""
        context = request.requested_authn_context
        if context is None:
            return ""
        refs = " ".join(ref.text for ref in context.authn_context_class_ref)
        return f"{context.comparison or 'exact'}: {refs}"

    @staticmethod
    def form(key: str, error: str, requested: str = "") -> str:
        alert = f'<p id="error" role="alert">{html.escape(error)}</p>' if error else ""
        asked = (f'<p id="requested-authn-context">{html.escape(requested)}</p>'
                 if requested else "")
        return (
            "<!doctype html><html><head><title>Test IdP login</title></head><body>"
            f"<h1>pysaml2 test IdP</h1>{alert}{asked}"
            '<form method="post" action="/login">'
            f'<input type="hidden" name="key" value="{html.escape(key)}">'
            '<label>Username <input name="username" id="username" autocomplete="off"></label>'
            '<label>Password <input name="password" id="password" type="password"></label>'
            '<label>One-time code <input name="otp" id="otp" autocomplete="off"></label>'
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
        # a second factor: the user's "otp" (when it has one) typed in the form
        second = bool(user.get("otp")) and secrets.compare_digest(user["otp"],
                                                                  form.get("otp", ""))
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
            authn={"class_ref": TWO_FACTOR if second else PASSWORD},
            sign_assertion=self.sign_assertion, sign_response=self.sign_response,
            # pysaml2 signs with rsa-sha1 unless told otherwise (jitprov refuses SHA-1)
            sign_alg="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
            digest_alg="http://www.w3.org/2001/04/xmlenc#sha256")
        info = self.idp.apply_binding(BINDING_HTTP_POST, response, acs_url, relay_state,
                                      response=True)
        statements = self.idp.session_db.get_authn_statements(name_id)
        session_index = statements[-1][0].session_index
        self.sessions[session_index] = {"user": form["username"], "sp": sp_entity_id,
                                        "name_id": name_id, "active": True}
        return self.reply(start_response, "200 OK", info["data"], "text/html")

    # -- Single Logout ---------------------------------------------------------------------

    @staticmethod
    def same_name_id(a: Any, b: Any) -> bool:
        return all(getattr(a, k) == getattr(b, k)
                   for k in ("text", "format", "name_qualifier", "sp_name_qualifier"))

    def single_logout(self, environ: Environ, start_response: Any) -> list[bytes]:
        if environ["REQUEST_METHOD"] == "POST":
            size = int(environ.get("CONTENT_LENGTH") or 0)
            raw = environ["wsgi.input"].read(size).decode()
            binding = BINDING_HTTP_POST
        else:
            raw = environ.get("QUERY_STRING", "")
            binding = BINDING_HTTP_REDIRECT
        fields = {k: v[0] for k, v in parse_qs(raw).items()}
        if "SAMLResponse" in fields:
            return self.logout_response(fields, binding, start_response)
        try:
            if binding == BINDING_HTTP_REDIRECT and not fields.get("Signature"):
                raise ValueError("the LogoutRequest is not signed")
            parsed = self.idp.parse_logout_request(
                fields.get("SAMLRequest", ""), binding, relay_state=fields.get("RelayState"),
                sigalg=fields.get("SigAlg"), signature=fields.get("Signature"))
            if parsed is None:
                raise ValueError("the LogoutRequest did not verify")
        except (SignatureError, IncorrectlySigned, ValueError, TypeError) as exc:
            return self.reply(start_response, "400 Bad Request", f"bad request: {exc}",
                              "text/plain")
        request = parsed.message
        indexes = [i.text for i in request.session_index or []]
        ended = [k for k, v in self.sessions.items()
                 if v["active"] and self.same_name_id(v["name_id"], request.name_id)
                 and (not indexes or k in indexes)]
        status = None  # Success
        if ended:
            for key in ended:
                self.sessions[key]["active"] = False
            try:
                self.idp.session_db.remove_authn_statements(request.name_id)
            except KeyError:
                pass
        else:
            status = status_message_factory("unknown principal or session",
                                            STATUS_UNKNOWN_PRINCIPAL)
        response = self.idp.create_logout_response(
            request, [binding], status=status, sign=binding == BINDING_HTTP_POST,
            sign_alg="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
            digest_alg="http://www.w3.org/2001/04/xmlenc#sha256")
        destination = self.idp.response_args(request, [binding])["destination"]
        return self.send(start_response, binding, str(response), destination,
                         fields.get("RelayState", ""), response=True)

    def send(self, start_response: Any, binding: str, message: str, destination: str,
             relay_state: str, *, response: bool) -> list[bytes]:
        info = self.idp.apply_binding(
            binding, message, destination, relay_state, response=response,
            sign=binding == BINDING_HTTP_REDIRECT,
            sigalg="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256")
        if binding == BINDING_HTTP_REDIRECT:
            location = dict(info["headers"])["Location"]
            start_response("303 See Other", [("Location", location),
                                             ("Cache-Control", "no-store"),
                                             ("Content-Length", "0")])
            return [b""]
        return self.reply(start_response, "200 OK", info["data"], "text/html")

    def logout_response(self, fields: dict[str, str], binding: str,
                        start_response: Any) -> list[bytes]:
        """An SP's answer to our LogoutRequest: verified and recorded."""
        record: dict[str, Any] = {"binding": binding.rsplit(":", 1)[1]}
        try:
            parsed = self.idp.parse_logout_request_response(fields["SAMLResponse"], binding)
            message = parsed.response
            assert isinstance(message, LogoutResponse)
            sp = message.issuer.text
            certs = [c for _, c in self.idp.metadata.certs(sp, "spsso", "signing")]
            if binding == BINDING_HTTP_REDIRECT:
                record["signature_ok"] = any(
                    verify_redirect_signature(fields, self.idp.sec.sec_backend, cert)
                    for cert in certs)
            else:
                record["signature_ok"] = message.signature is not None  # pysaml2 verified it
            record.update(in_response_to=message.in_response_to,
                          status=message.status.status_code.value,
                          destination=message.destination)
        except Exception as exc:  # recorded for the test to see
            record["error"] = f"{type(exc).__name__}: {exc}"
        self.logout_responses.append(record)
        return self.reply(start_response, "200 OK", "logged out", "text/plain")

    def initiate_logout(self, environ: Environ, start_response: Any) -> list[bytes]:
        query = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
        session = self.sessions.get(query.get("session_index", ""))
        if session is None:
            return self.reply(start_response, "404 Not Found", "no such session", "text/plain")
        binding = BINDING_HTTP_POST if query.get("binding") == "post" else BINDING_HTTP_REDIRECT
        _, destination = self.idp.pick_binding("single_logout_service", [binding], "spsso",
                                               entity_id=session["sp"])
        session["active"] = False
        _, request = self.idp.create_logout_request(
            destination, session["sp"], name_id=session["name_id"],
            session_indexes=[query["session_index"]], sign=binding == BINDING_HTTP_POST,
            sign_alg="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
            digest_alg="http://www.w3.org/2001/04/xmlenc#sha256")
        return self.send(start_response, binding, str(request), destination,
                         query.get("relay_state", ""), response=False)


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
