"""For applications behind jitprov: verify the signed identity token and read who is there.

The token is an ES256 JWT jitprov passes upstream on forward-auth (``X-Jitprov-Token``) and
serves at ``/me/token``; its keys are at ``{issuer}/.well-known/jwks.json``. This package only
needs joserfc and httpx, and never trusts plain ``X-Jitprov-*`` headers.

    verifier = IdentityVerifier(issuer="https://sso.hospital.example", tenant="st-marys")
    app = JitprovMiddleware(app, verifier)          # any ASGI app
    app.wsgi_app = JitprovWsgiMiddleware(app.wsgi_app, verifier)   # Flask (WSGI)
    @app.get("/rota")                                # FastAPI
    def rota(who: Identity = Depends(requires_role("nurse", verifier=verifier))): ...
"""

from jitprov.client.verify import (
    Identity,
    IdentityVerifier,
    InvalidIdentity,
    JitprovMiddleware,
    JitprovWsgiMiddleware,
    requires_role,
)

__all__ = ["Identity", "IdentityVerifier", "InvalidIdentity", "JitprovMiddleware",
           "JitprovWsgiMiddleware", "requires_role"]
