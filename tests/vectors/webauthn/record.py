# ruff: noqa: E501 (the browser-side JavaScript reads best on long lines)
"""Record WebAuthn ceremonies from Chromium's virtual authenticator (CTAP2, internal,
resident key, user verification) into
``webauthn3-7.1-7.2-chromium-virtual-authenticator.json`` (§7.1 registration, §7.2 assertion).

    .venv/bin/python tests/vectors/webauthn/record.py

Serves an empty page on http://localhost:PORT (a secure context), registers a discoverable
credential with a fixed challenge, then signs in twice (counter 1, 2). The file keeps the
challenges, origin and RP ID used, so tests/protocols/test_webauthn.py can verify the answers
offline and tamper with them. It also records whether Chromium accepts an IP address as RP ID
(WebAuthn §5.1.3 says an RP ID is a domain; Chromium refuses ``127.0.0.1``).
"""

from __future__ import annotations

import base64
import http.server
import json
import shutil
import socket
import threading
from pathlib import Path

from playwright.sync_api import sync_playwright

OUT = Path(__file__).with_name("webauthn3-7.1-7.2-chromium-virtual-authenticator.json")
CHALLENGES = {"registration": b"jitprov-vector-registration-0001",
              "authentication-1": b"jitprov-vector-authentication-01",
              "authentication-2": b"jitprov-vector-authentication-02"}
USER_ID = b"0b5e4d7a-7c1e-4a54-9d7e-3f1a2b3c4d5e"

JS_HELPERS = """
const toB = s => Uint8Array.from(atob(s.replace(/-/g,'+').replace(/_/g,'/') + '==='.slice((s.length+3)%4)), c => c.charCodeAt(0));
const b64 = buf => btoa(String.fromCharCode(...new Uint8Array(buf))).replace(/\\+/g,'-').replace(/\\//g,'_').replace(/=+$/,'');
const asJSON = c => ({id: c.id, rawId: b64(c.rawId), type: c.type,
  response: Object.fromEntries(Object.entries({
    clientDataJSON: c.response.clientDataJSON, attestationObject: c.response.attestationObject,
    authenticatorData: c.response.authenticatorData, signature: c.response.signature,
    userHandle: c.response.userHandle}).filter(([k, v]) => v).map(([k, v]) => [k, b64(v)])),
  clientExtensionResults: {}, authenticatorAttachment: c.authenticatorAttachment});
"""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def main() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port),
                                             http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    origin, rp_id = f"http://localhost:{port}", "localhost"
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True,
                                     args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page()
        cdp = page.context.new_cdp_session(page)
        cdp.send("WebAuthn.enable")
        cdp.send("WebAuthn.addVirtualAuthenticator", {"options": {
            "protocol": "ctap2", "transport": "internal", "hasResidentKey": True,
            "hasUserVerification": True, "isUserVerified": True}})
        page.goto(f"http://127.0.0.1:{port}/")
        ip_rp = page.evaluate(JS_HELPERS + """async ([ch, uid]) => {
          try { await navigator.credentials.create({publicKey: {challenge: toB(ch),
            rp: {id: '127.0.0.1', name: 'jitprov'}, user: {id: toB(uid), name: 'x', displayName: 'x'},
            pubKeyCredParams: [{type: 'public-key', alg: -7}]}}); return 'accepted'; }
          catch (e) { return e.name + ': ' + e.message; } }""",
                              [b64url(CHALLENGES["registration"]), b64url(USER_ID)])
        page.goto(origin + "/")
        registration = page.evaluate(JS_HELPERS + """async ([ch, uid]) => asJSON(
          await navigator.credentials.create({publicKey: {challenge: toB(ch),
            rp: {id: 'localhost', name: 'jitprov'},
            user: {id: toB(uid), name: 'ana@demo.hospital', displayName: 'Ana Lima'},
            pubKeyCredParams: [{type: 'public-key', alg: -7}, {type: 'public-key', alg: -257}],
            authenticatorSelection: {residentKey: 'required', userVerification: 'required'},
            attestation: 'none'}}))""",
                                     [b64url(CHALLENGES["registration"]), b64url(USER_ID)])
        authentications = [page.evaluate(JS_HELPERS + """async ch => asJSON(
          await navigator.credentials.get({publicKey: {challenge: toB(ch), rpId: 'localhost',
            userVerification: 'required'}}))""", b64url(CHALLENGES[name]))
                           for name in ("authentication-1", "authentication-2")]
        version = browser.version
        browser.close()
    server.shutdown()
    OUT.write_text(json.dumps({
        "recorded_with": f"Chromium {version} virtual authenticator (ctap2, internal, "
                         "resident key, user verified)",
        "origin": origin, "rp_id": rp_id, "user_id": b64url(USER_ID),
        "ip_address_as_rp_id": ip_rp,
        "registration": {"challenge": b64url(CHALLENGES["registration"]),
                         "credential": registration},
        "authentications": [
            {"challenge": b64url(CHALLENGES[name]), "credential": cred}
            for name, cred in zip(("authentication-1", "authentication-2"), authentications,
                                  strict=True)],
    }, indent=2) + "\n")
    print(f"wrote {OUT}; IP address as RP ID: {ip_rp}")


if __name__ == "__main__":
    main()
