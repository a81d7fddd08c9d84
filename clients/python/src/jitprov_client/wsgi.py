"""A WSGI middleware (Flask, any WSGI app): the verified identity of a request."""

from __future__ import annotations

from collections.abc import Callable, Iterable, MutableMapping
from typing import Any

from jitprov_client.verify import (
    HEADER,
    Identity,
    IdentityVerifier,
    InvalidIdentity,
    single_token,
)


class JitprovWsgiMiddleware:
    """Verifies the token header (``X-Jitprov-Token``) and puts the Identity (or None) in
    ``environ["jitprov.identity"]``; with ``required=True`` answers 401 without a valid one.
    A header given twice (which WSGI servers merge with a comma) is no token. Plain
    ``X-Jitprov-*`` headers are never read."""

    def __init__(self, app: Callable[..., Any], verifier: IdentityVerifier, *,
                 required: bool = False, header: str = HEADER) -> None:
        self.app = app
        self.verifier = verifier
        self.required = required
        self.environ_key = "HTTP_" + header.upper().replace("-", "_")

    def __call__(self, environ: MutableMapping[str, Any],
                 start_response: Callable[..., Any]) -> Iterable[bytes]:
        try:
            value = environ.get(self.environ_key)
            token = single_token([value]) if value is not None else None
            identity: Identity | None = self.verifier.verify(token)
        except InvalidIdentity:
            identity = None
        if identity is None and self.required:
            start_response("401 Unauthorized", [("Content-Type", "text/plain")])
            return [b"unauthenticated"]
        environ["jitprov.identity"] = identity
        result: Iterable[bytes] = self.app(environ, start_response)
        return result
