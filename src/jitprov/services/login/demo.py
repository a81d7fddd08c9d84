"""Sign-in through the built-in demo IdP (connection kind ``mock``, ``jitprov dev`` only).

The demo IdP runs in this process (``/dev/idp/{connection}``): starting a login is only its
URL with the ``state``. Its callback goes the way of the OIDC and SAML ones: the connection
must be of this kind and usable here, the signed assertion is verified (a failure is audited
as ``login.failed``, code ``invalid_response``), then ``provision_on_login`` spends the login
request and decides.
"""

from __future__ import annotations

from urllib.parse import urlencode

from jitprov.core.errors import InvalidInput
from jitprov.protocols import mock
from jitprov.protocols.mock import MockKind
from jitprov.services.context import ServiceContext
from jitprov.services.login.failures import record_login_failure
from jitprov.services.login.flow import LoginResult, provision_on_login
from jitprov.services.login.state import LoginState, check_usable
from jitprov.store.records import ConnectionRecord

#: the sealed secret holding the connection's HS256 key (shared with the in-process IdP)
SIGNING_KEY_SECRET = "signing_key"  # noqa: S105 - a field name


class DemoConnection(MockKind):
    """Kind ``mock``: no configuration, dev-only, and a login starts at the demo IdP's page."""

    def starts_offline(self, ctx: ServiceContext, conn: ConnectionRecord) -> bool:
        """Always: the demo IdP's page is a local URL."""
        return True

    #: the demo IdP's page is ours: its form posts back from this very site
    answers_cross_site_post = False

    def login_request(self, ctx: ServiceContext, conn: ConnectionRecord, state: str, *,
                      base_url: str, login_hint: str | None = None, offline: bool = False
                      ) -> tuple[dict[str, object], str]:
        """(nothing more for the login request to keep; the demo IdP's page, which takes no
        login hint)."""
        return {}, f"/dev/idp/{conn.slug}?{urlencode({'state': state})}"


_KIND = DemoConnection()


def complete_demo_login(ctx: ServiceContext, connection_slug: str, assertion: str, state: str,
                        *, browser: str | None, base_url: str, dev_mode: bool,
                        request_id: str | None, user_agent: str | None = None,
                        previous_session: str | None = None) -> LoginResult:
    """The demo IdP's callback: verify its signed assertion (issuer, audience, expiry, and the
    ``state`` it was issued for), then provision, spending the login request of ``state``
    (bound to ``browser``). Raises InvalidInput (a connection of another kind or an invalid
    assertion, audited; disabled, or outside dev mode) and LoginRefused."""
    conn = ctx.connections.get(connection_slug)
    if conn.kind != _KIND.name:
        refused = InvalidInput(f"connection {conn.slug} is not a demo connection")
        record_login_failure(ctx, conn.slug, "invalid_response", str(refused),
                             request_id=request_id)
        raise refused
    check_usable(conn, _KIND, dev_mode=dev_mode)
    key = ctx.secretbox.open(conn.secrets).get(SIGNING_KEY_SECRET, "")
    try:
        identity = mock.verify_assertion(
            assertion, key=key, issuer=mock.issuer_for(base_url, conn.slug),
            audience=conn.slug, state=state)
    except InvalidInput as exc:
        record_login_failure(ctx, conn.slug, "invalid_response", str(exc),
                             request_id=request_id)
        raise
    return provision_on_login(ctx, conn.slug, identity, login=LoginState(state, browser),
                              request_id=request_id, user_agent=user_agent,
                              previous_session=previous_session)
