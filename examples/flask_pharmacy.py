"""A Flask app behind jitprov: the WSGI middleware verifies X-Jitprov-Token (passed by the
proxy, docs/forward-auth/) and the views read who is there.

    pip install ./clients/python flask   # jitprov-client, from a checkout
    JITPROV_ISSUER=https://sso.hospital.example JITPROV_TENANT=st-marys \
        flask --app examples.flask_pharmacy run
"""

from __future__ import annotations

import os

from flask import Flask, abort, request

from jitprov_client import Identity, IdentityVerifier, JitprovWsgiMiddleware

verifier = IdentityVerifier(os.environ.get("JITPROV_ISSUER", "http://127.0.0.1:8000"),
                            tenant=os.environ.get("JITPROV_TENANT", "demo"))
app = Flask(__name__)
app.wsgi_app = JitprovWsgiMiddleware(app.wsgi_app, verifier, required=True)  # type: ignore[method-assign]


def current_user() -> Identity:
    identity: Identity = request.environ["jitprov.identity"]
    return identity


@app.get("/stock")
def stock() -> dict[str, object]:
    who = current_user()
    if not who.has_role("pharmacist"):
        abort(403)
    return {"pharmacist": who.email, "items": ["amoxicillin 500 mg: 120"]}
