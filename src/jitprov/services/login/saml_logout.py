"""SAML Single Logout (Profiles 4.4), both ways, at ``/sso/{connection}/saml/slo``.

SP-initiated: ``POST /logout`` ends the jitprov session first, then sends the browser to the
IdP's HTTP-Redirect SingleLogoutService with a signed LogoutRequest naming the NameID (as the
IdP wrote it) and SessionIndex of that sign-in; the request's ID is kept as a short-lived,
single-use login request row, and the IdP's LogoutResponse must answer it (InResponseTo).

IdP-initiated: a LogoutRequest signed by the IdP (HTTP-Redirect or HTTP-POST) ends the sessions
of that SessionIndex (and NameID), or of that NameID when it names no SessionIndex, through
``revoke_idp_sessions`` (audited ``session.revoked``, webhook); its ID is spent in the
``token_replay`` table in the same transaction. The answer is a signed LogoutResponse by the
same binding: Success, also when no session matched (the state the IdP asks for holds), or
Requester for a verified request that is refused (wrong Destination, stale, replayed). A
message that is malformed, unsigned or not signed by the IdP gets no SAML answer (its sender
is unknown): a readable page. Every refusal is audited as ``logout.refused``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta

from jitprov.core.errors import JitprovError
from jitprov.protocols.saml.config import SamlConfig
from jitprov.protocols.saml.errors import SamlError
from jitprov.protocols.saml.logout import (
    STATUS_REQUESTER,
    IncomingMessage,
    LogoutNameId,
    build_logout_request,
    build_logout_response,
    check_logout_request,
    check_logout_response,
    read_post_message,
    read_redirect_message,
)
from jitprov.protocols.saml.parsing import BINDING_POST, BINDING_REDIRECT, STATUS_SUCCESS
from jitprov.protocols.saml.sp import SpSettings
from jitprov.services.common import hash_token
from jitprov.services.context import ServiceContext
from jitprov.services.login.saml import (
    NAME_ID_FORMAT,
    NAME_QUALIFIER,
    SP_NAME_QUALIFIER,
    connection_config,
    sp_for,
)
from jitprov.services.sessions import record_logout_refusal, revoke_idp_sessions
from jitprov.store.records import EndedSession
from jitprov.store.unit_of_work import UnitOfWork

log = logging.getLogger("jitprov.logout")

#: the audit ``reason`` of sessions ended by a SAML LogoutRequest
SLO_REASON = "saml_single_logout"
#: how long the IdP has to answer our LogoutRequest
REQUEST_LIFETIME = timedelta(minutes=10)
#: the ``data`` key of the login request row that records a LogoutRequest we sent
_LOGOUT_REQUEST = "saml_logout_request"


@dataclass(frozen=True, slots=True)
class SloAnswer:
    """What the SLO endpoint answers: send the browser to ``redirect_url``; or post
    ``fields`` to ``post_url`` (an auto-submitting form); or, with neither, show the
    signed-out page. ``idp_confirmed`` is False when the IdP's LogoutResponse was not
    Success (the jitprov session ended all the same). ``signed_out`` says the browser's
    session cookie may go: False when the IdP's request was refused (a stray or replayed
    message must not sign the browser out)."""

    redirect_url: str | None = None
    post_url: str | None = None
    fields: dict[str, str] = field(default_factory=dict)
    idp_confirmed: bool = True
    signed_out: bool = True


def saml_idp_logout_url(ctx: ServiceContext, ended: EndedSession, *,
                        base_url: str) -> str | None:
    """Where to send the browser whose SAML session just ended: the IdP's HTTP-Redirect
    SingleLogoutService with a signed LogoutRequest; None when the IdP has none, the session
    names no NameID, or the connection cannot build one (the jitprov sign-out stands
    either way, and is logged)."""
    if ended.connection_slug is None or not ended.subject:
        return None
    try:
        conn = ctx.connections.get(ended.connection_slug)
        config = connection_config(conn)
        if not config.idp_slo_url:
            return None
        try:
            details = ctx.secretbox.open(ended.id_token_sealed)
        except JitprovError:  # a retired secret key: the NameID goes without its Format
            details = {}
        name_id = LogoutNameId(value=ended.subject,
                               format=details.get(NAME_ID_FORMAT) or None,
                               name_qualifier=details.get(NAME_QUALIFIER) or None,
                               sp_name_qualifier=details.get(SP_NAME_QUALIFIER) or None)
        now = ctx.clock()
        message = build_logout_request(sp_for(ctx, conn, config, base_url), config.idp_slo_url,
                                       name_id, ended.idp_session_id, now=now)
        with UnitOfWork(ctx.db) as uow:
            uow.logins.requests.create(
                state_id=hash_token(message.id), connection_id=conn.id, return_to="/",
                data={_LOGOUT_REQUEST: message.id}, now=now,
                expires_at=now + REQUEST_LIFETIME)
            uow.commit()
    except JitprovError as exc:
        log.warning("no Single Logout at the IdP of connection %s: %s", ended.connection_slug,
                    getattr(exc, "code", type(exc).__name__))
        return None
    return message.url


def receive_slo(ctx: ServiceContext, connection: str, *, raw_query: str | None = None,
                form: dict[str, str] | None = None, base_url: str,
                request_id: str | None) -> SloAnswer:
    """Handle what arrives at the SLO endpoint: a LogoutRequest or LogoutResponse by
    HTTP-Redirect (``raw_query``, exactly as received) or HTTP-POST (``form``). Raises
    NotFound for an unknown connection, and (audited as ``logout.refused``) SamlError or
    InvalidInput for a message that cannot be verified, or a LogoutResponse that answers no
    request of ours: nothing is revoked then."""
    conn = ctx.connections.get(connection)
    try:
        config = connection_config(conn)
        sp = sp_for(ctx, conn, config, base_url)
        message = _read(raw_query, form, config)
        if not message.is_request:
            return _logout_response(ctx, conn.id, message, sp, config)
    except JitprovError as exc:
        record_logout_refusal(ctx, conn.slug, exc.code, str(exc), request_id=request_id)
        raise
    # a verified LogoutRequest: from here on, the IdP gets a signed LogoutResponse
    try:
        request = check_logout_request(message, sp, config, now=ctx.clock())

        def spend_id(uow: UnitOfWork) -> None:
            if not uow.logins.token_replay.remember(conn.id, f"saml:{request.id}"[:256],
                                                    request.replay_until):
                raise SamlError("message_replayed", "this logout request was already used")

        indexes: tuple[str | None, ...] = request.session_indexes or (None,)
        for number, index in enumerate(indexes):
            revoke_idp_sessions(ctx, conn.slug, sid=index, sub=request.name_id.value,
                                reason=SLO_REASON, request_id=request_id,
                                guard=spend_id if number == 0 else None, require_known=False)
        status, text = STATUS_SUCCESS, None
    except JitprovError as exc:
        record_logout_refusal(ctx, conn.slug, exc.code, str(exc), request_id=request_id)
        status, text = STATUS_REQUESTER, str(exc)
    return _answer(ctx, message, sp, config, status, text)


def _read(raw_query: str | None, form: dict[str, str] | None,
          config: SamlConfig) -> IncomingMessage:
    if raw_query is not None:
        return read_redirect_message(raw_query, config)
    form = form or {}
    fields = [name for name in ("SAMLRequest", "SAMLResponse") if form.get(name)]
    if len(fields) != 1:
        raise SamlError("invalid_response", "the form carries no SAMLRequest or SAMLResponse "
                                            "(or both)")
    return read_post_message(fields[0], form[fields[0]], form.get("RelayState"), config)


def _answer(ctx: ServiceContext, message: IncomingMessage, sp: SpSettings, config: SamlConfig,
            status: str, text: str | None) -> SloAnswer:
    """The signed LogoutResponse to the IdP, by the binding the request came by (the other
    one if the IdP's metadata has only that)."""
    endpoints = {
        BINDING_REDIRECT: config.idp_slo_response_url or config.idp_slo_url,
        BINDING_POST: config.idp_slo_post_response_url or config.idp_slo_post_url}
    binding = message.binding
    if not endpoints[binding]:
        binding = BINDING_POST if binding == BINDING_REDIRECT else BINDING_REDIRECT
    destination = endpoints[binding]
    if not destination:
        raise SamlError("invalid_metadata", "the IdP's metadata has no SingleLogoutService "
                                            "to answer to; the sessions ended here")
    response = build_logout_response(sp, destination, binding=binding,
                                     in_response_to=message.id, status=status, message=text,
                                     relay_state=message.relay_state, now=ctx.clock())
    done = status == STATUS_SUCCESS
    if response.binding == BINDING_REDIRECT:
        return SloAnswer(redirect_url=response.url, signed_out=done)
    return SloAnswer(post_url=response.url, fields=response.fields, signed_out=done)


def _logout_response(ctx: ServiceContext, connection_id: int, message: IncomingMessage,
                     sp: SpSettings, config: SamlConfig) -> SloAnswer:
    """The IdP's answer to our LogoutRequest: it must answer one we sent (kept single use);
    then the signed-out page, saying whether the IdP confirmed."""
    now = ctx.clock()
    in_response_to, status = check_logout_response(message, sp, config, now=now)
    if not in_response_to:
        raise SamlError("in_response_to_mismatch", "the logout response answers no request")
    with UnitOfWork(ctx.db) as uow:
        record = uow.logins.requests.consume(hash_token(in_response_to), now)
        uow.commit()
    if (record is None or record.connection_id != connection_id
            or record.data.get(_LOGOUT_REQUEST) != in_response_to):
        raise SamlError("in_response_to_mismatch", "the logout response does not answer a "
                        "logout request of this site, or was already used")
    if status != STATUS_SUCCESS:
        log.info("the IdP answered our LogoutRequest with status %s", status)
    return SloAnswer(idp_confirmed=status == STATUS_SUCCESS)
