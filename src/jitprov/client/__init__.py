"""``jitprov_client`` under its former name: the verifier, the middlewares and the FastAPI
dependency for applications behind jitprov. The one source is ``clients/python/src`` (the
``jitprov-client`` distribution, which an app installs alone); the server's distribution ships
the same package, so ``from jitprov.client import ...`` keeps working where jitprov is
installed."""

from jitprov_client import (
    AUDIENCE,
    HEADER,
    Identity,
    IdentityVerifier,
    InvalidIdentity,
    JitprovMiddleware,
    JitprovWsgiMiddleware,
)
from jitprov_client.fastapi import requires_role

__all__ = ["AUDIENCE", "HEADER", "Identity", "IdentityVerifier", "InvalidIdentity",
           "JitprovMiddleware", "JitprovWsgiMiddleware", "requires_role"]
