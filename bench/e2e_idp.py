"""A lean identity provider for the end-to-end benchmark: an OpenID Provider (code flow with
PKCE, RS256 ID tokens, userinfo) and a SAML IdP (HTTP-Redirect AuthnRequest in, a signed
Response out through an auto-post form), in ONE process apart from the measured server.

It does the IdP's real work per login (an RS256 signature per ID token, an XML-DSig RSA-SHA256
signature per SAML Assertion, PKCE and client authentication checks) and nothing else: no
login form and no consent. The person's choice of account is a ``login`` query parameter the
load generator adds to the authorization or SSO URL, where a person would type a username.
Every user ``u`` exists: ``u@hospital.example``, verified, 20 groups including ``Nurses``.

``python -m bench.e2e_idp`` prints ``LISTENING <port>`` once it serves on 127.0.0.1 and runs
until SIGTERM. Its issuer, and the SAML entity id and SSO URL, are derived from that address:
``http://127.0.0.1:<port>`` (``/saml/metadata`` is the SAML IdP's metadata). OIDC clients are
``--client ID:SECRET:REDIRECT_URI_PREFIX`` (repeatable).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import hashlib
import hmac
import html
import json
import re
import secrets
import socket
import sys
import time
import zlib
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs, urlencode

import xmlsec
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey
from lxml import etree  # type: ignore[import-untyped]

from jitprov.testing.saml_idp import FakeSamlIdp

GROUPS = ["Nurses", "Ward 3", "All Staff"] + [f"Group {i}" for i in range(17)]  # 20 groups
CODE_TTL = 60.0
SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def claims_of(user: str) -> dict[str, object]:
    """The person's claims (OIDC) for the user name the load generator chose."""
    return {"email": f"{user}@hospital.example", "email_verified": True,
            "name": f"User {user}", "department": "Ward 3", "groups": GROUPS}


def attributes_of(user: str) -> dict[str, list[str]]:
    """The same person's SAML attributes."""
    return {"mail": [f"{user}@hospital.example"], "displayName": [f"User {user}"],
            "ou": ["Ward 3"], "isMemberOf": GROUPS}


class _SamlSigner(FakeSamlIdp):
    """The test IdP's Response builder, with its key parsed once (a real IdP does not re-read
    its key per login)."""

    def __init__(self, entity_id: str, sso_url: str) -> None:
        super().__init__(entity_id, sso_url)
        self._key = xmlsec.Key.from_memory(self.key_pem.encode(),
                                           xmlsec.constants.KeyDataFormatPem)
        self._key.load_cert_from_memory(self.cert_pem.encode(),
                                        xmlsec.constants.KeyDataFormatPem)

    def _sign(self, element: etree._Element, *, after: etree._Element,
              key_pem: str | None = None) -> None:
        t = xmlsec.constants
        signature = xmlsec.template.create(element, t.TransformExclC14N, t.TransformRsaSha256)
        after.addnext(signature)
        ref = xmlsec.template.add_reference(signature, t.TransformSha256,
                                            uri="#" + element.get("ID"))
        xmlsec.template.add_transform(ref, t.TransformEnveloped)
        xmlsec.template.add_transform(ref, t.TransformExclC14N)
        info = xmlsec.template.ensure_key_info(signature)
        xmlsec.template.add_x509_data(info)
        ctx = xmlsec.SignatureContext()
        ctx.key = self._key
        ctx.register_id(element, "ID")
        ctx.sign(signature)


class Provider:
    """The state of the IdP: its keys, its registered clients, codes and access tokens."""

    def __init__(self, base_url: str, clients: dict[str, tuple[str, str]]) -> None:
        self.issuer = base_url
        self.clients = clients  # client_id -> (secret, redirect_uri prefix)
        self.key = RSAKey.generate_key(2048, parameters={"kid": "e2e-1", "use": "sig",
                                                         "alg": "RS256"}, private=True)
        self.jwks = json.dumps(KeySet([self.key]).as_dict(private=False)).encode()
        self.codes: dict[str, dict[str, Any]] = {}
        self.access: dict[str, tuple[str, float]] = {}
        self.saml = _SamlSigner(f"{base_url}/saml", f"{base_url}/saml/sso")
        self.saml_metadata = self.saml.metadata()
        self.discovery = json.dumps({
            "issuer": base_url, "authorization_endpoint": f"{base_url}/authorize",
            "token_endpoint": f"{base_url}/token", "jwks_uri": f"{base_url}/jwks",
            "userinfo_endpoint": f"{base_url}/userinfo",
            "end_session_endpoint": f"{base_url}/session/end",
            "response_types_supported": ["code"], "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic",
                                                      "client_secret_post"],
            "code_challenge_methods_supported": ["S256"],
            "scopes_supported": ["openid", "email", "profile", "groups"],
            "claims_supported": ["sub", "email", "email_verified", "name", "department",
                                 "groups"],
            "authorization_response_iss_parameter_supported": True}).encode()

    # -- OIDC ------------------------------------------------------------------------------

    def authorize(self, query: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        client = self.clients.get(query.get("client_id", ""))
        redirect = query.get("redirect_uri", "")
        if client is None or not redirect.startswith(client[1]):
            return 400, {}, b"unknown client or redirect_uri"
        if (query.get("response_type") != "code" or query.get("code_challenge_method") != "S256"
                or "openid" not in query.get("scope", "").split()):
            return _redirect(redirect, {"error": "invalid_request",
                                        "state": query.get("state", ""), "iss": self.issuer})
        code = secrets.token_urlsafe(32)
        self.codes[code] = {"client_id": query["client_id"], "redirect_uri": redirect,
                            "nonce": query.get("nonce"), "sub": query.get("login", "anon"),
                            "challenge": query.get("code_challenge", ""),
                            "expires": time.monotonic() + CODE_TTL}
        return _redirect(redirect, {"code": code, "state": query.get("state", ""),
                                    "iss": self.issuer})

    def token(self, form: dict[str, str], authorization: str) -> tuple[int, bytes]:
        client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
        if authorization.lower().startswith("basic "):
            decoded = base64.b64decode(authorization[6:]).decode()
            client_id, _, secret = decoded.partition(":")
        client = self.clients.get(client_id)
        if client is None or not hmac.compare_digest(client[0], secret):
            return 401, b'{"error": "invalid_client"}'
        grant = self.codes.pop(form.get("code", ""), None)
        verifier = form.get("code_verifier", "").encode()
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier).digest()).rstrip(b"=")
        if (grant is None or grant["expires"] < time.monotonic()
                or grant["client_id"] != client_id
                or grant["redirect_uri"] != form.get("redirect_uri")
                or challenge.decode() != grant["challenge"]):
            return 400, b'{"error": "invalid_grant"}'
        now = int(time.time())
        sub = grant["sub"]
        claims = {"iss": self.issuer, "aud": client_id, "sub": sub, "iat": now,
                  "exp": now + 300, "auth_time": now, "sid": secrets.token_hex(8),
                  **({"nonce": grant["nonce"]} if grant["nonce"] else {}), **claims_of(sub)}
        id_token = jwt.encode({"alg": "RS256", "kid": "e2e-1", "typ": "JWT"}, claims, self.key)
        access = secrets.token_urlsafe(32)
        self.access[access] = (sub, time.monotonic() + 300)
        if len(self.access) > 50_000:  # the bench runs long: forget the oldest half
            for stale in list(self.access)[:25_000]:
                del self.access[stale]
        return 200, json.dumps({"access_token": access, "token_type": "Bearer",
                                "expires_in": 300, "id_token": id_token,
                                "scope": "openid email profile groups"}).encode()

    def userinfo(self, authorization: str) -> tuple[int, bytes]:
        token = authorization[7:] if authorization.lower().startswith("bearer ") else ""
        found = self.access.get(token)
        if found is None or found[1] < time.monotonic():
            return 401, b'{"error": "invalid_token"}'
        return 200, json.dumps({"sub": found[0], **claims_of(found[0])}).encode()

    # -- SAML ------------------------------------------------------------------------------

    def saml_sso(self, query: dict[str, str]) -> tuple[int, bytes]:
        try:
            xml = zlib.decompress(base64.b64decode(query["SAMLRequest"]), -15)
            request = etree.fromstring(xml, etree.XMLParser(resolve_entities=False,
                                                            no_network=True))
        except (KeyError, ValueError, zlib.error, etree.XMLSyntaxError):
            return 400, b"not an AuthnRequest"
        acs = request.get("AssertionConsumerServiceURL", "")
        audience = request.findtext(f"{{{SAML}}}Issuer") or ""
        user = query.get("login", "anon")
        response = self.saml.response(
            acs_url=acs, audience=audience, subject=user, attributes=attributes_of(user),
            in_response_to=request.get("ID"), now=dt.datetime.now(dt.UTC))
        fields = {"SAMLResponse": response, "RelayState": query.get("RelayState", "")}
        inputs = "".join(f'<input type="hidden" name="{name}" value="{html.escape(value)}">'
                         for name, value in fields.items())
        page = (f'<!doctype html><html><body onload="document.forms[0].submit()">'
                f'<form method="post" action="{html.escape(acs)}">{inputs}'
                f'<noscript><button>Continue</button></noscript></form></body></html>')
        return 200, page.encode()


def _redirect(location: str, params: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    separator = "&" if "?" in location else "?"
    return 302, {"location": f"{location}{separator}{urlencode(params)}"}, b""


def make_app(provider: Provider) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """A bare ASGI app: the stub's own HTTP overhead is kept small (it shares the machine)."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        path = scope["path"]
        query = {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        extra: dict[str, str] = {}
        content_type = "application/json"
        if path == "/authorize":
            status, extra, payload = provider.authorize(query)
            content_type = "text/plain"
        elif path == "/token":
            form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
            status, payload = provider.token(form, headers.get("authorization", ""))
            extra = {"cache-control": "no-store"}
        elif path == "/userinfo":
            status, payload = provider.userinfo(headers.get("authorization", ""))
        elif path == "/.well-known/openid-configuration":
            status, payload = 200, provider.discovery
        elif path == "/jwks":
            status, payload = 200, provider.jwks
        elif path == "/saml/sso":
            status, payload = provider.saml_sso(query)
            content_type = "text/html; charset=utf-8"
        elif path == "/saml/metadata":
            status, payload = 200, provider.saml_metadata
            content_type = "application/samlmetadata+xml"
        else:
            status, payload, content_type = 404, b"not found", "text/plain"
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", content_type.encode()),
                                (b"content-length", str(len(payload)).encode()),
                                *((k.encode(), v.encode()) for k, v in extra.items())]})
        await send({"type": "http.response.body", "body": payload})

    return app


def parse_client(text: str) -> tuple[str, tuple[str, str]]:
    match = re.fullmatch(r"([^:]+):([^:]+):(.+)", text)
    if match is None:
        raise argparse.ArgumentTypeError("a client is ID:SECRET:REDIRECT_URI_PREFIX")
    return match.group(1), (match.group(2), match.group(3))


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--client", action="append", type=parse_client, default=[])
    args = parser.parse_args(argv)
    sock = socket.socket()
    # accepted connections inherit it: without it, a response written as two segments
    # (headers, then body) waits for the client's delayed ACK (40 ms on Linux)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    provider = Provider(f"http://127.0.0.1:{port}", dict(args.client))
    config = uvicorn.Config(make_app(provider), loop="uvloop", http="httptools",
                            log_level="warning", access_log=False, lifespan="off",
                            backlog=1024)
    server = uvicorn.Server(config)
    print(f"LISTENING {port}", flush=True)
    asyncio.run(server.serve(sockets=[sock]))
    sys.exit(0)


if __name__ == "__main__":
    main()
