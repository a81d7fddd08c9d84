"""Session revocation by an IdP's logout (``revoke_idp_sessions``, shared by OIDC back-channel
logout and SAML Single Logout): what it matches, what it writes (audit and webhook in the
same unit of work), and what it leaves alone when it refuses."""

from __future__ import annotations

import dataclasses

import pytest
import sqlalchemy as sa

from jitprov.core.errors import InvalidInput
from jitprov.services import audit_export
from jitprov.services.context import ServiceContext
from jitprov.services.login.flow import provision_on_login
from jitprov.services.sessions import (
    UnknownIdpSession,
    current_session,
    revoke_idp_sessions,
    sign_out,
)
from jitprov.store import tables as t
from jitprov.store.unit_of_work import UnitOfWork
from jitprov.testing.builders import nurse, setup_connection
from tests.conftest import Clock


@pytest.fixture
def idp(ctx: ServiceContext) -> ServiceContext:
    setup_connection(ctx)
    return ctx


def session(ctx: ServiceContext, subject: str, sid: str | None,
            id_token_sealed: str | None = None) -> str:
    identity = dataclasses.replace(nurse(subject, email=f"{subject}@hospital.example"),
                                   idp_session_id=sid)
    token = provision_on_login(ctx, "idp", identity, id_token_sealed=id_token_sealed
                               ).session_token
    assert token is not None
    return token


def alive(ctx: ServiceContext, *tokens: str) -> list[bool]:
    return [current_session(ctx, token) is not None for token in tokens]


def outbox(ctx: ServiceContext) -> list[dict[str, object]]:
    with ctx.db.engine.connect() as conn:
        return [dict(row.payload) for row in conn.execute(
            sa.select(t.outbox_event.c.payload).where(t.outbox_event.c.type == "session.revoked"))]


def test_revokes_the_sessions_of_the_idp_session_id_only(idp: ServiceContext) -> None:
    a, b, c = session(idp, "u-1", "s-1"), session(idp, "u-1", "s-2"), session(idp, "u-2", "s-1")

    match = revoke_idp_sessions(idp, "idp", sid="s-1", reason="test")

    assert alive(idp, a, b, c) == [False, True, False]
    assert (match.known, len(match.revoked)) == (True, 2)
    assert sorted(e["sessions"] for e in outbox(idp)) == [1, 1]
    assert {e["reason"] for e in outbox(idp)} == {"test"}
    assert {e["connection"] for e in outbox(idp)} == {"idp"}


def test_revokes_every_session_of_the_subject(idp: ServiceContext) -> None:
    a, b, c = session(idp, "u-1", "s-1"), session(idp, "u-1", None), session(idp, "u-2", "s-3")

    match = revoke_idp_sessions(idp, "idp", sub="u-1", reason="test")

    assert alive(idp, a, b, c) == [False, False, True]
    [(account_id, count)] = match.revoked
    assert count == 2
    [event] = [e for e in audit_export.iter_events(idp, "hospital")
               if e.type == "session.revoked"]
    assert (event.actor, event.account_id, event.data) == (
        "idp:idp", account_id, {"connection": "idp", "reason": "test", "sessions": 2})
    assert outbox(idp) == [{"tenant": "hospital", "account_id": account_id,
                            "connection": "idp", "reason": "test", "sessions": 2}]


def test_an_unknown_session_id_revokes_nothing_and_raises(idp: ServiceContext) -> None:
    a = session(idp, "u-1", "s-1")

    with pytest.raises(UnknownIdpSession):
        revoke_idp_sessions(idp, "idp", sid="s-9", reason="test")

    assert alive(idp, a) == [True]
    assert revoke_idp_sessions(idp, "idp", sid="s-9", reason="test",
                               require_known=False).known is False


def test_sessions_already_ended_are_known_and_not_announced_again(idp: ServiceContext,
                                                                   clock: Clock) -> None:
    session(idp, "u-1", "s-1")
    revoke_idp_sessions(idp, "idp", sid="s-1", reason="test")

    again = revoke_idp_sessions(idp, "idp", sid="s-1", reason="test")
    clock.advance(days=2)  # expired, not yet purged: still known
    expired = revoke_idp_sessions(idp, "idp", sid="s-1", reason="test")

    assert (again.known, again.revoked, expired.known) == (True, (), True)
    assert len(outbox(idp)) == 1


def test_a_refusing_guard_rolls_the_revocation_back(idp: ServiceContext) -> None:
    a = session(idp, "u-1", "s-1")

    def refuse(uow: UnitOfWork) -> None:
        raise InvalidInput("replayed")

    with pytest.raises(InvalidInput):
        revoke_idp_sessions(idp, "idp", sid="s-1", reason="test", guard=refuse)

    assert alive(idp, a) == [True]
    assert outbox(idp) == []


def test_the_guard_and_the_revocation_commit_together(idp: ServiceContext,
                                                      clock: Clock) -> None:
    session(idp, "u-1", "s-1")
    connection_id = idp.connections.get("idp").id

    def spend(uow: UnitOfWork) -> None:
        assert uow.logins.token_replay.remember(connection_id, "jti-1", clock())

    revoke_idp_sessions(idp, "idp", sid="s-1", reason="test", guard=spend)

    with UnitOfWork(idp.db) as uow:
        assert uow.logins.token_replay.remember(connection_id, "jti-1", clock()) is False


def test_a_logout_names_a_session_id_or_a_subject(idp: ServiceContext) -> None:
    with pytest.raises(ValueError, match="session id or a subject"):
        revoke_idp_sessions(idp, "idp", reason="test")


def test_sign_out_returns_what_the_idp_logout_needs(idp: ServiceContext) -> None:
    token = session(idp, "u-1", "s-1", id_token_sealed="sealed-value")

    ended = sign_out(idp, token)

    assert ended is not None
    assert (ended.connection_slug, ended.connection_kind, ended.id_token_sealed) == (
        "idp", "mock", "sealed-value")
    assert "sealed-value" not in repr(ended)
    assert sign_out(idp, token) is None  # already ended
    assert alive(idp, token) == [False]
