"""OIDC logout: RP-initiated logout (after our own sign-out, the browser goes to the
provider's ``end_session_endpoint`` and comes back to a signed-out page) and the
back-channel logout receiver (the provider's logout token ends our sessions of that ``sid``
or ``sub``).

The ID token for ``id_token_hint`` is kept on the session sealed with the secret key, and
only when the provider has an ``end_session_endpoint``: it carries the person's claims, and
some relying parties wrongly accept ID tokens as credentials, so the database never holds it
in clear. A refused logout token is audited as ``logout.refused``; it revokes nothing and
does not spend its ``jti``.
"""

from __future__ import annotations

import logging
import secrets
from datetime import UTC, datetime

from jitprov.core.errors import JitprovError
from jitprov.protocols.oidc import (
    OidcError,
    build_end_session_url,
    precheck_logout_token,
    validate_logout_token,
)
from jitprov.services.context import ServiceContext
from jitprov.services.login.oidc import (
    connection_config,
    post_logout_redirect_uri,
    provider_metadata,
)
from jitprov.services.sessions import record_logout_refusal, revoke_idp_sessions
from jitprov.store.records import EndedSession
from jitprov.store.unit_of_work import UnitOfWork

log = logging.getLogger("jitprov.logout")

#: the audit ``reason`` of sessions ended by a logout token
BACKCHANNEL_REASON = "oidc_backchannel_logout"


def idp_logout_url(ctx: ServiceContext, ended: EndedSession, *, base_url: str) -> str | None:
    """Where to send the browser whose jitprov session just ended so that its session at the
    provider ends too; None when the connection is gone, has ``idp_logout`` off, or its
    provider has no ``end_session_endpoint`` or cannot be reached (the jitprov sign-out
    stands either way, and is logged)."""
    if ended.connection_slug is None:
        return None
    try:
        conn = ctx.connections.get(ended.connection_slug)
        config = connection_config(conn)
        if not config.idp_logout:
            return None
        metadata = provider_metadata(ctx, config)
    except JitprovError as exc:
        log.warning("no logout at the provider of connection %s: %s", ended.connection_slug,
                    getattr(exc, "code", type(exc).__name__))
        return None
    hint: str | None = None
    if ended.id_token_sealed:
        try:
            hint = ctx.secretbox.open(ended.id_token_sealed).get("id_token")
        except JitprovError:  # a retired secret key: the provider still gets client_id
            hint = None
    return build_end_session_url(
        metadata, client_id=config.client_id, id_token_hint=hint,
        post_logout_redirect_uri=post_logout_redirect_uri(base_url, conn.slug),
        # the signed-out page changes nothing, so the state is not checked; it is sent
        # because the specification recommends it and some providers require it
        state=secrets.token_urlsafe(16))


def receive_backchannel_logout(ctx: ServiceContext, connection: str,
                               logout_token: str | None, *, request_id: str | None) -> int:
    """Validate a logout token (Back-Channel Logout 1.0 section 2.6), spend its ``jti`` and
    revoke the sessions it names, in one transaction; returns how many sessions ended.
    Raises NotFound (unknown connection), or (audited as ``logout.refused``) InvalidInput
    for a connection that is not OIDC, OidcError (``logout_token_invalid``,
    ``logout_token_expired``, ``logout_token_replayed``, ``idp_unreachable``...) and
    UnknownIdpSession. Nothing is revoked when it raises."""
    conn = ctx.connections.get(connection)
    try:
        config = connection_config(conn)
        if not logout_token:
            raise OidcError("invalid_request", "the request has no logout_token")
        precheck_logout_token(logout_token, config)  # junk never makes us call the IdP
        metadata = provider_metadata(ctx, config)
        token = validate_logout_token(logout_token, ctx.oidc, metadata, config,
                                      now=ctx.clock().timestamp())

        def spend_jti(uow: UnitOfWork) -> None:
            until = datetime.fromtimestamp(token.replay_until, UTC)
            if not uow.logins.token_replay.remember(conn.id, token.jti, until):
                raise OidcError("logout_token_replayed", "this logout token was already used")

        match = revoke_idp_sessions(ctx, conn.slug, sid=token.sid, sub=token.sub,
                                    reason=BACKCHANNEL_REASON, request_id=request_id,
                                    guard=spend_jti)
    except JitprovError as exc:
        record_logout_refusal(ctx, conn.slug, exc.code, str(exc), request_id=request_id)
        raise
    return sum(count for _, count in match.revoked)
