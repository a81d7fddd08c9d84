"""Signing out: the jitprov session ends, then, by the kind of its connection, the browser may
go on to end the session at the IdP too (a registry, like ``kinds.py``: a kind without an
entry signs out locally only)."""

from __future__ import annotations

from typing import Protocol

from jitprov.services.context import ServiceContext
from jitprov.services.login.oidc_logout import idp_logout_url
from jitprov.services.login.saml_logout import saml_idp_logout_url
from jitprov.services.sessions import sign_out
from jitprov.store.records import EndedSession


class IdpLogout(Protocol):
    def __call__(self, ctx: ServiceContext, ended: EndedSession, *,
                 base_url: str) -> str | None:
        """Where to send the browser after ``ended`` ended here (None: nowhere)."""


#: connection kind -> its IdP logout
IDP_LOGOUTS: dict[str, IdpLogout] = {
    "oidc": idp_logout_url,
    "saml": saml_idp_logout_url,
}


def sign_out_everywhere(ctx: ServiceContext, token: str | None, *, base_url: str) -> str | None:
    """End the session of this cookie value; where the browser goes next to end its session
    at the IdP, or None (no session, no IdP logout for its connection: go home)."""
    ended: EndedSession | None = sign_out(ctx, token)
    if ended is None or ended.connection_kind is None or ended.method != "sso":
        return None  # a passkey, offline or break-glass session has no IdP session
    logout = IDP_LOGOUTS.get(ended.connection_kind)
    return None if logout is None else logout(ctx, ended, base_url=base_url)
