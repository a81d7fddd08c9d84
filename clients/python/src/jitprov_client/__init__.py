"""For applications behind jitprov: verify the signed identity token and read who is there.

The token is an ES256 JWT jitprov passes upstream on forward-auth (``X-Jitprov-Token``) and
serves at ``/me/token``; its keys are at ``{issuer}/.well-known/jwks.json``. This package
needs only joserfc and httpx (FastAPI and Django only for their integrations), and never
trusts plain ``X-Jitprov-*`` headers.

    verifier = IdentityVerifier(issuer="https://sso.hospital.example", tenant="st-marys")
    app = JitprovMiddleware(app, verifier)          # any ASGI app
    app.wsgi_app = JitprovWsgiMiddleware(app.wsgi_app, verifier)   # Flask (WSGI)
    @app.get("/rota")                                # FastAPI
    def rota(who: Identity = Depends(requires_role("nurse", verifier=verifier))): ...

Django: ``jitprov_client.django`` (an authentication backend and a middleware).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from jitprov_client.asgi import JitprovMiddleware
from jitprov_client.verify import AUDIENCE, HEADER, Identity, IdentityVerifier, InvalidIdentity
from jitprov_client.wsgi import JitprovWsgiMiddleware

if TYPE_CHECKING:
    from jitprov_client.fastapi import requires_role

__all__ = ["AUDIENCE", "HEADER", "Identity", "IdentityVerifier", "InvalidIdentity",
           "JitprovMiddleware", "JitprovWsgiMiddleware", "requires_role"]


def __getattr__(name: str) -> object:
    """``requires_role`` comes from ``jitprov_client.fastapi`` on first use: FastAPI is
    imported only by an app that asks for the dependency."""
    if name == "requires_role":
        from jitprov_client.fastapi import requires_role

        return requires_role
    raise AttributeError(f"module 'jitprov_client' has no attribute {name!r}")
